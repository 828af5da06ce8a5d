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


def pages_at_once(*, policy: dict, severity: int) -> bool:
    """Whether this frozen policy pages level 1 at once, without its delay, for this severity.

    ``page_at_once_max_severity`` (frozen from the playbook): this severity or worse
    (a lower number); missing or None, never.
    """
    cutoff = (policy or {}).get("page_at_once_max_severity")
    return cutoff is not None and severity <= cutoff


def first_level_timer(*, incident: Incident, start: datetime) -> Timer | None:
    """Level 1 of a new round (opening, reopening): due at ``start`` plus its delay,
    or at ``start`` itself when the incident's severity pages at once."""
    levels = incident.escalation_policy.get("levels") or []
    if not levels:
        return None
    delay = levels[0]["delay_seconds"]
    if pages_at_once(policy=incident.escalation_policy, severity=incident.severity):
        delay = 0
    return Timer(
        incident=incident,
        kind=Timer.Kind.ESCALATION,
        due_at=start + timedelta(seconds=delay),
        round=incident.escalation_round,
        cycle=0,
        level=1,
    )


def first_level_bring_forward(*, incident: Incident, now: datetime) -> Timer | None:
    """Make a still-pending level 1 due now, if the incident's severity now pages at once.

    Called with the incident row locked (a fire takes the same lock, so it has
    either claimed level 1 already, and nothing is pending, or sees the new time).
    A message already sent for the old time finds the timer fired and does nothing.
    """
    if incident.status != Incident.Status.OPEN or not pages_at_once(
        policy=incident.escalation_policy, severity=incident.severity
    ):
        return None
    timer = Timer.objects.filter(
        incident=incident,
        kind=Timer.Kind.ESCALATION,
        state=Timer.State.PENDING,
        round=incident.escalation_round,
        cycle=0,
        level=1,
        due_at__gt=now,
    ).first()
    if timer is None:
        return None
    moved = Timer.objects.filter(pk=timer.pk, state=Timer.State.PENDING).update(
        due_at=now, enqueued_at=None
    )
    if moved != 1:
        return None
    timer.due_at, timer.enqueued_at = now, None
    enqueue_on_commit([timer])
    return timer


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


def enqueue_unsent(*, incident_ids: list[int], now: datetime | None = None) -> int:
    """Send these incidents' near timers that were never sent (the levels fires just wrote)."""
    now = now or timezone.now()
    due = list(
        Timer.objects.filter(
            incident_id__in=incident_ids,
            state=Timer.State.PENDING,
            enqueued_at__isnull=True,
            due_at__lte=now + HORIZON,
        ).values_list("pk", "due_at")
    )
    return send_timers(due, now=now)


# Timers falling due this close together go to the broker as one message, run when
# the last of them is due: a storm's thousand timers due within ten seconds are two
# hundred tasks, not a thousand of which most find their timer fired by another's
# batch (incidents/escalation.py, timer_fire_due). A timer waits at most this long for
# the others of its message; timers a steady load brings further apart go one by one.
GROUP_SPAN = timedelta(milliseconds=50)
# The most timers one message carries (escalation.FIRE_BATCH fire in one transaction).
GROUP_MAX = 25


def send_timers(due: list[tuple[int, datetime]], *, now: datetime) -> int:
    """Send these (timer id, due time) to the broker, grouped (``GROUP_SPAN``); a
    group of one is sent as the bare id, as every version before grouping did."""
    if not due:
        return 0
    Timer.objects.filter(pk__in=[pk for pk, _d in due]).update(enqueued_at=now)
    for group in timer_groups(due, now=now):
        ids = [pk for pk, _at in group]
        dispatch.send(dispatch.FIRE_TIMER, ids if len(ids) > 1 else ids[0], eta=group[-1][1])
    return len(due)


def timer_groups(
    due: list[tuple[int, datetime]], *, now: datetime
) -> list[list[tuple[int, datetime]]]:
    """(timer id, when to run it) in groups: in order of time, a group ends before a
    timer more than ``GROUP_SPAN`` after its first, or at ``GROUP_MAX``. A timer due
    already is run now, with the others due already."""
    groups: list[list[tuple[int, datetime]]] = []
    for pk, due_at in sorted(((pk, max(at, now)) for pk, at in due), key=lambda d: (d[1], d[0])):
        if groups and len(groups[-1]) < GROUP_MAX and due_at - groups[-1][0][1] <= GROUP_SPAN:
            groups[-1].append((pk, due_at))
        else:
            groups.append([(pk, due_at)])
    return groups


def cancel_pending(*, incident: Incident, kinds: list[str] | None, now: datetime) -> int:
    qs = Timer.objects.filter(incident=incident, state=Timer.State.PENDING)
    if kinds is not None:
        qs = qs.filter(kind__in=kinds)
    return qs.update(
        state=Timer.State.CANCELLED, fired_at=None, outcome=f"cancelled {now:%H:%M:%S}"
    )
