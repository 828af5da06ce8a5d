"""Queueing Celery tasks by name, so the modules that decide work never import the tasks.

``incidents/tasks.py`` imports the services it runs; the services queue work
through here by task name. Nothing is queued inside a transaction: callers use
the ``*_on_commit`` helpers (or run after commit), so a worker never sees a row
that is not committed yet. A failure to reach the broker is logged and left to
the sweep (incidents/escalation.py), which re-sends whatever was not delivered.
"""

from __future__ import annotations

import logging
from datetime import datetime

from celery import current_app
from django.db import transaction

log = logging.getLogger(__name__)

FIRE_TIMER = "incidents.tasks.fire_timer"
DELIVER_NOTIFICATION = "incidents.tasks.deliver_notification"
DELIVER_CHUNK = "incidents.tasks.deliver_chunk"
MESSAGE_FANOUT = "incidents.tasks.message_fanout"
# How many outbox rows one deliver_chunk task sends over one SMTP connection.
CHUNK = 100


def send(task: str, pk: int | list[int], *, eta: datetime | None = None) -> bool:
    """Send one task for one row id (or one list of ids); False (logged) if the broker
    could not take it."""
    try:
        current_app.send_task(task, args=(pk,), eta=eta)
    except Exception:  # noqa: BLE001 - the broker is down: the sweep sends it again
        log.exception("could not queue %s(%s); the sweep will retry", task, pk)
        return False
    return True


def chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


def deliver_chunks_on_commit(ids: list[int]) -> None:
    """Queue these notifications' delivery in chunks of ``CHUNK`` after commit: each
    chunk is one task sending its e-mails over one SMTP connection."""
    ids = list(ids)
    if ids:
        transaction.on_commit(lambda: [send(DELIVER_CHUNK, c) for c in chunks(ids)])


def fanout_on_commit(message_id: int) -> None:
    """Queue the writing of a sent message's remaining outbox rows after commit."""
    transaction.on_commit(lambda: send(MESSAGE_FANOUT, message_id))


def deliver_on_commit(ids: list[int]) -> None:
    """Queue the delivery of these notifications once the transaction commits."""
    ids = list(ids)
    if ids:
        transaction.on_commit(lambda: [send(DELIVER_NOTIFICATION, pk) for pk in ids])
