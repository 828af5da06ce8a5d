"""Listening: mentions flow in (webhooks, feeds, by hand) and spikes open incidents.

Modules import each other in one direction only (a lower line never imports a
higher one); ``incidents`` itself never imports this package:

1. ``models``: sources, mentions, rules and their hits, detections, seen signatures.
2. ``text`` (normalising, keyword matching), ``sentiment`` (the lexicon files in
   ``lexicon/``) and ``signing`` (webhook signatures, replays).
3. ``selectors``: every read, permission-filtered through ``incidents_visible_to``.
4. ``rules``: incremental rule evaluation and firing (opens or attaches incidents
   through ``incidents.services``, cites mentions through ``incidents.timeline``).
5. ``services``: the writes: sources, mentions (webhook, by hand); ``inbox``: the
   triage inbox's writes (assign, needs a reply, no reply, dismiss; the reply drafted
   and published through ``incidents.comms``) and the reply timers' handler, which
   ``apps.ListeningConfig.ready`` registers with the engine (incidents/escalation.py).
6. ``feeds`` (polling RSS / Atom), ``mention_import`` (CSV) and ``demo`` (the demo
   desk's inbox, seeded by the ``seed_inbox_demo`` command that ``seed_demo`` calls by
   name).
7. ``tasks`` (Celery), then the doors: ``api``, ``forms`` and ``views`` (the war
   room's Mentions page and a mention's page), ``admin``, and ``templatetags`` (the
   dashboard's panel of failing sources and the incident page's comments to answer, so
   that ``incidents`` itself needs no import of this package).

Following a mention from the request to the incident: ``POST
/api/v1/intake/<slug>/`` (``api.IntakeView``) checks the size, the signature and the
timestamp, then calls ``services.mentions_receive``, which writes each mention
and runs ``rules.rules_evaluate`` on it in the same transaction: a hit row per
matching rule, one indexed count over the rule's window, and on the crossing
``incidents.services.incident_open`` (or the risk's open incident) with a
timeline entry citing the mentions. The incident is open when the 202 answers.
"""
