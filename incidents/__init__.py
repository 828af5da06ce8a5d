"""Response: incidents, their timeline, messages, the escalation engine and post-mortems.

Modules import each other in one direction only (a lower line never imports a
higher one; ``python3 ../shared/tools/import_cycles.py`` checks it):

1. ``models``: the tables and every rule the database can hold.
2. ``permissions`` (groups, object permissions) and ``selectors`` (every read,
   permission-filtered: ``incidents_visible_to`` and one selector per model).
3. ``timeline`` (``timeline_add``), ``dispatch`` (tasks queued by name after
   commit), ``acklinks`` (the signed acknowledge links), ``rollcall`` (the signed
   joining / can't links of activation e-mails, signed the same way).
4. ``notify``: the e-mail outbox; writing notifications and delivering them.
5. ``timers``: writing timers and sending the near ones to the broker.
6. ``comms``: messages (draft, approve, send, publish, correct).
7. ``postmortem`` (a package: facts, chart, render, trends, services, reminders).
8. ``services``: the incident life cycle (open, acknowledge, contain, resolve...).
9. ``escalation``: the sweep and ``timer_fire`` with one handler per timer kind.
10. ``tasks`` (Celery), then the doors: ``api``, ``views``, ``admin``, commands, and
    the war room (``warroom`` imports ``warroom_comms``, its communications panel and
    message pages; never the other way round).

Following an incident from the request to the e-mail: ``POST /api/v1/incidents/``
(``api.IncidentViewSet.create``) calls ``services.incident_open``, which writes
the incident, its tasks and its ``Timer`` rows and asks ``timers`` to send the
near ones after commit (``dispatch.send`` -> ``tasks.fire_timer``). The worker
runs ``escalation.timer_fire``: it claims the timer, decides whom to page and
writes ``Notification`` rows through ``notify``; after commit
``notify.notification_deliver`` sends each e-mail with its stable Message-ID.
Beat runs ``escalation.sweep`` every few seconds to recover anything lost.
"""
