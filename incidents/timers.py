"""Scheduling timers: writing them and sending the near ones to the broker.

The database is the source of truth; the broker only makes timers fast. After
commit, timers due within ``HORIZON`` are sent with an ETA; nothing further
ahead is sent, because a broker restart or a flushed Redis loses messages and a
worker keeps every ETA message it holds in memory. The sweep
(incidents/escalation.py) sends the rest as they come near, and re-sends any
whose message was lost. Firing is in incidents/escalation.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from incidents import dispatch
from incidents.models import Incident, Timer

HORIZON = timedelta(seconds=60)


def first_level_timer(*, incident: Incident, start: datetime) -> Timer | None:
    levels = incident.escalation_policy.get("levels") or []
    if not levels:
        return None
    return Timer(
        incident=incident,
        kind=Timer.Kind.ESCALATION,
        due_at=start + timedelta(seconds=levels[0]["delay_seconds"]),
        round=incident.escalation_round,
        cycle=0,
        level=1,
    )


def enqueue_on_commit(timers: Iterable[Timer]) -> None:
    """After the surrounding transaction commits, send the near ones to the broker."""
    ids = [t.pk for t in timers]
    if ids:
        transaction.on_commit(lambda: enqueue_timers(timer_ids=ids))


def enqueue_timers(*, timer_ids: list[int], now: datetime | None = None) -> int:
    now = now or timezone.now()
    due = list(
        Timer.objects.filter(
            pk__in=timer_ids, state=Timer.State.PENDING, due_at__lte=now + HORIZON
        ).values_list("pk", "due_at")
    )
    return send_timers(due, now=now)


def enqueue_unsent(*, incident_id: int, now: datetime | None = None) -> int:
    """Send an incident's near timers that were never sent (the level a fire just wrote)."""
    now = now or timezone.now()
    due = list(
        Timer.objects.filter(
            incident_id=incident_id,
            state=Timer.State.PENDING,
            enqueued_at__isnull=True,
            due_at__lte=now + HORIZON,
        ).values_list("pk", "due_at")
    )
    return send_timers(due, now=now)


def send_timers(due: list[tuple[int, datetime]], *, now: datetime) -> int:
    if not due:
        return 0
    Timer.objects.filter(pk__in=[pk for pk, _d in due]).update(enqueued_at=now)
    for pk, due_at in due:
        dispatch.send(dispatch.FIRE_TIMER, pk, eta=max(due_at, now))
    return len(due)


def cancel_pending(*, incident: Incident, kinds: list[str] | None, now: datetime) -> int:
    qs = Timer.objects.filter(incident=incident, state=Timer.State.PENDING)
    if kinds is not None:
        qs = qs.filter(kind__in=kinds)
    return qs.update(
        state=Timer.State.CANCELLED, fired_at=None, outcome=f"cancelled {now:%H:%M:%S}"
    )
