"""Response: incidents, their timeline, messages, the escalation engine and post-mortems.

Modules import each other in one direction only (a lower line never imports a
higher one; ``python3 ../shared/tools/import_cycles.py`` checks it):

1. ``models``: the tables and every rule the database can hold.
2. ``permissions`` (groups, object permissions) and ``selectors`` (every read,
   permission-filtered: ``incidents_visible_to`` and one selector per model).
3. ``statuscache`` (the public status page's version and rendered pages), ``timeline``
   (``timeline_add``), ``dispatch`` (tasks queued by name after commit), ``acklinks``
   (the signed acknowledge links), ``rollcall`` (the signed joining / can't links of
   activation e-mails, signed the same way), ``sublinks`` (the signed confirm and
   unsubscribe links of status-page subscribers, signed the same way).
4. ``notify``: the e-mail outbox; writing notifications and delivering them; then
   ``subscribers`` (status-page subscriptions: request, confirm, cancel) and
   ``watchdog``: each sweep's record (``SweepRun``) and the workers' dead man's switch.
5. ``timers``: writing timers and sending the near ones to the broker.
6. ``comms``: messages (draft, approve, send, publish, correct).
7. ``postmortem`` (a package: facts, chart, render, trends, services, reminders).
8. ``services``: the incident life cycle (open, acknowledge, contain, resolve...).
9. ``escalation``: the sweep, ``timer_fire`` with one handler per timer kind, and
   ``timer_fire_due``, the worker's entry, which fires escalations due together in one batch.
10. ``exercises``: planning and running exercises (their injects fire through the engine).
11. ``tasks`` (Celery; it also starts each worker's watchdog thread), then the doors:
    ``api``, ``views``, ``admin``, commands, ``health`` (/healthz, /readyz) and
    ``metrics`` (/metrics), and
    the war room (``warroom`` imports ``warroom_comms``, its communications panel and
    message pages; never the other way round), and the public status page
    (``statuspage``, and ``status_subscribe`` for its subscription pages).

Following an incident from the request to the e-mail: ``POST /api/v1/incidents/``
(``api.IncidentViewSet.create``) calls ``services.incident_open``, which writes
the incident, its tasks and its ``Timer`` rows and asks ``timers`` to send the
near ones after commit (``dispatch.send`` -> ``tasks.fire_timer``; timers falling
due within 50 ms of each other share one message, ``timers.send_timers``). The worker
runs ``escalation.timer_fire_due``: it claims the timer (and every other escalation
due by then, each claimed on its own), decides whom to page and writes
``Notification`` rows through ``notify``; after commit ``notify.chunk_deliver``
sends the e-mails over one SMTP connection, each with its stable Message-ID.
Beat runs ``escalation.sweep`` every few seconds to recover anything lost, and
records each run; if the runs stop, every worker's ``watchdog`` tells the crisis
managers.
"""
