"""The timer engine: escalations that are never lost and never doubled.

The database is the source of truth. A ``Timer`` row is written in the same
transaction as whatever makes it necessary (opening an incident, firing the
previous level). Celery only makes it fast:

1. After commit, timers due within ``HORIZON`` (incidents/timers.py) are sent to the broker with an
   ETA. Nothing further ahead is sent: a broker restart or a flushed Redis
   loses messages, and a worker keeps every ETA message it holds in memory.
2. Beat runs ``sweep`` every ``SWEEP_SECONDS``. It sends every pending timer
   that has come within the horizon and was never sent, and re-sends overdue
   ones whose message was evidently lost (still pending ``REENQUEUE_AFTER``
   after it was sent and past due). So a killed worker or a flushed broker
   delays a timer by at most about one sweep.
3. ``timer_fire`` is one transaction: lock the incident row, claim the timer
   with a conditional update (only the caller that changes exactly one row
   goes on), re-check the incident, decide whom to page *now*, write the
   notifications, the timeline entry and the next level's timer. A crash
   before commit rolls the claim back with everything else, and the sweep
   fires the timer again.
4. Acknowledging locks the same incident row and cancels pending escalation
   timers with a conditional update, so a fire and an acknowledgement that
   race are ordered: whichever commits first wins, the other changes nothing.
   It also cancels the incident's escalation e-mails still in the outbox.
5. Notifications are delivered after commit (incidents/notify.py); the sweep
   re-sends those left queued or whose sending lease ran out.

Lock order, everywhere: **incident, then message, then notification.** Every
transaction that locks more than one of these rows takes them in that order:
a fire locks the incident and a scheduled send then locks its message
(comms.message_send); every comms service locks the message's incident before
the message; acknowledging, containing and resolving lock the incident before
cancelling notifications; the acknowledge link locks the incident before
burning its notification. Delivery and the sweep lock only notification rows,
one statement at a time. So no two paths wait on each other in a circle (a
manual send racing its own scheduled send used to deadlock on PostgreSQL).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from incidents import comms, dispatch, notify, services, timers
from incidents.models import Incident, Notification, Task, TimelineEntry, Timer
from playbooks.models import CrisisRole, OnCallRotation
from playbooks.oncall import oncall_holder, rotation_holder

log = logging.getLogger(__name__)
User = get_user_model()

SWEEP_SECONDS = 5
# An overdue timer whose message was sent this long ago and is still pending
# was lost (killed worker, flushed broker): send it again. Duplicates are
# harmless (the claim), so this errs towards resending.
REENQUEUE_AFTER = timedelta(seconds=5)
SWEEP_BATCH = 5000


# --------------------------------------------------------------------- sweep


def sweep(*, now: datetime | None = None) -> str:
    """Send what is due soon and was never sent, or overdue and evidently lost."""
    now = now or timezone.now()
    due = list(
        Timer.objects.filter(state=Timer.State.PENDING, due_at__lte=now + timers.HORIZON)
        .filter(
            Q(enqueued_at__isnull=True)
            | Q(due_at__lte=now - REENQUEUE_AFTER, enqueued_at__lte=now - REENQUEUE_AFTER)
        )
        .order_by("due_at")
        .values_list("pk", "due_at")[:SWEEP_BATCH]
    )
    sent = timers.send_timers(due, now=now)

    # A delivery whose process died mid-send: the lease ran out. Back to the queue.
    Notification.objects.filter(status=Notification.Status.SENDING, lease_until__lt=now).update(
        status=Notification.Status.QUEUED, next_attempt_at=now, lease_until=None
    )
    stuck = list(
        Notification.objects.filter(status=Notification.Status.QUEUED, next_attempt_at__lte=now)
        .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=now - REENQUEUE_AFTER))
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    if stuck:
        Notification.objects.filter(pk__in=stuck).update(enqueued_at=now)
        dispatch.deliver_on_commit(stuck)
    return f"sweep: {sent} timers, {len(stuck)} notifications sent to the broker"


# ---------------------------------------------------------------------- fire


def timer_fire(*, timer_id: int, now: datetime | None = None) -> str:
    """Fire one timer if it is still pending and due. Safe to call any number of times."""
    created: list[int] = []
    with transaction.atomic():
        now = now or timezone.now()
        row = Timer.objects.filter(pk=timer_id).values("incident_id", "state", "due_at").first()
        if row is None or row["state"] != Timer.State.PENDING:
            return f"timer {timer_id}: not pending"
        if row["due_at"] > now:
            return f"timer {timer_id}: not due yet"
        # Lock order: incident, then timer. Acknowledging takes the same incident lock.
        incident = Incident.objects.select_for_update().get(pk=row["incident_id"])
        claimed = Timer.objects.filter(pk=timer_id, state=Timer.State.PENDING).update(
            state=Timer.State.FIRED, fired_at=now
        )
        if claimed != 1:
            return f"timer {timer_id}: claimed elsewhere"
        timer = Timer.objects.get(pk=timer_id)
        handler = _HANDLERS[timer.kind]
        outcome, created = handler(timer=timer, incident=incident, now=now)
        Timer.objects.filter(pk=timer_id).update(outcome=outcome[:200])
        incident_id = incident.pk
        transaction.on_commit(lambda: timers.enqueue_unsent(incident_id=incident_id))
    # Delivering in this task, after commit, saves a broker round trip on the
    # path that matters most; a crash here leaves them queued for the sweep.
    notify.deliver_now(created)
    log.info("%s %s: %s", incident.reference, timer.get_kind_display(), outcome)
    return f"timer {timer_id}: {outcome}"


def _fire_escalation(*, timer: Timer, incident: Incident, now: datetime) -> tuple[str, list[int]]:
    """Page the level's on-call people; if nobody is on call, page the next level at once.

    1. Stop if the incident no longer waits for an acknowledgement, or the timer
       belongs to an earlier round (the incident was reopened since).
    2. Resolve whom to page at this instant. Unstaffed: record it and go on
       to the next level in the same transaction.
    3. Write one notification per person (dedupe key: timer + person), a timeline
       entry, and the timer of the level after it (or of the next repeat).
    """
    if incident.status != Incident.Status.OPEN or timer.round != incident.escalation_round:
        return "incident no longer needs paging", []
    policy = incident.escalation_policy
    levels = policy.get("levels") or []
    cycle, position = timer.cycle, timer.level
    paged_ids: list[int] = []
    due_at = timer.due_at
    while True:
        level = levels[position - 1]
        people = recipients_for(level, at=now)
        label = _("level %(n)s") % {"n": position}
        if cycle:
            label = _("level %(n)s, repeat %(c)s") % {"n": position, "c": cycle}
        nxt = _next_step(
            levels=levels, repeat=policy.get("repeat", 0), cycle=cycle, position=position
        )
        next_due = due_at + timedelta(seconds=levels[nxt[1] - 1]["delay_seconds"]) if nxt else None
        if people:
            if incident.first_paged_at is None and incident.acknowledged_at is None:
                # The acknowledge target runs from here (incidents/models.py says why).
                Incident.objects.filter(pk=incident.pk).update(first_paged_at=now)
                incident.first_paged_at = now
            created = notify.escalation_notifications(
                incident=incident,
                timer=timer,
                level=position,
                cycle=cycle,
                people=people,
                now=now,
                next_level_at=next_due,
            )
            paged_ids = created
            names = ", ".join(p.get_full_name() or p.get_username() for p in people)
            TimelineEntry.objects.create(
                incident=incident,
                kind=TimelineEntry.Kind.ESCALATION,
                at=now,
                text=_("Not acknowledged: paged %(names)s (%(label)s).")
                % {"names": names, "label": label},
                data={
                    "timer_id": timer.pk,
                    "level": position,
                    "cycle": cycle,
                    "user_ids": [p.pk for p in people],
                    "due_at": timer.due_at.isoformat(),
                    "lateness_ms": int((now - timer.due_at).total_seconds() * 1000),
                },
            )
        else:
            TimelineEntry.objects.create(
                incident=incident,
                kind=TimelineEntry.Kind.UNSTAFFED,
                at=now,
                text=_("Nobody is on call for %(label)s: moving on to the next level.")
                % {"label": label},
                data={"timer_id": timer.pk, "level": position, "cycle": cycle},
            )
        if nxt is None:
            TimelineEntry.objects.create(
                incident=incident,
                kind=TimelineEntry.Kind.EXHAUSTED,
                at=now,
                text=_("Every escalation level has been paged and nobody has acknowledged."),
                data={"timer_id": timer.pk},
            )
            return (f"paged {len(people)} ({label}); policy exhausted", paged_ids)
        cycle, position = nxt
        due_at = next_due
        if people:
            Timer.objects.get_or_create(
                incident=incident,
                kind=Timer.Kind.ESCALATION,
                round=timer.round,
                cycle=cycle,
                level=position,
                defaults={"due_at": due_at},
            )
            return (f"paged {len(people)} ({label})", paged_ids)
        # Unstaffed: the next level is paged now, in this same transaction.


def _next_step(*, levels: list, repeat: int, cycle: int, position: int) -> tuple[int, int] | None:
    if position < len(levels):
        return cycle, position + 1
    if cycle < repeat:
        return cycle + 1, 1
    return None


def recipients_for(level: dict, *, at: datetime) -> list:
    """Whom a level pages at this instant: active users with an e-mail address."""
    people = []
    if level["target"] == "role":
        role = CrisisRole.objects.filter(pk=level.get("role_id")).first()
        holder = oncall_holder(role=role, at=at) if role else None
        people = [holder] if holder else []
    elif level["target"] == "rotation":
        rotation = OnCallRotation.objects.filter(pk=level.get("rotation_id")).first()
        holder = rotation_holder(rotation=rotation, at=at) if rotation else None
        people = [holder] if holder else []
    else:
        people = list(User.objects.filter(pk__in=level.get("user_ids") or []).order_by("pk"))
    return [p for p in people if p.is_active and p.email]


def _fire_statement_reminder(*, timer: Timer, incident: Incident, now: datetime):
    if incident.first_statement_at is not None or not incident.is_active:
        return "statement already out or incident over", []
    created = notify.deadline_notifications(
        incident=incident, timer=timer, role_slugs=("communications-lead",), now=now
    )
    TimelineEntry.objects.create(
        incident=incident,
        kind=TimelineEntry.Kind.DEADLINE,
        at=now,
        text=_("Reminder: the first public statement is due at %(t)s UTC.")
        % {
            "t": f"{incident.opened_at + timedelta(minutes=incident.first_statement_minutes):%H:%M}"
        },
        data={"timer_id": timer.pk, "deadline": "first_statement", "reminder": True},
    )
    return f"reminded {len(created)}", created


def _fire_first_statement(*, timer: Timer, incident: Incident, now: datetime):
    if incident.first_statement_at is not None:
        return "first statement was on time", []
    if not incident.is_active:
        return "incident over", []
    created = notify.deadline_notifications(
        incident=incident,
        timer=timer,
        role_slugs=("crisis-manager", "communications-lead"),
        now=now,
    )
    TimelineEntry.objects.create(
        incident=incident,
        kind=TimelineEntry.Kind.DEADLINE,
        at=now,
        text=_("Missed: no public statement %(m)s minutes after opening.")
        % {"m": incident.first_statement_minutes},
        data={"timer_id": timer.pk, "deadline": "first_statement", "met": False},
    )
    return f"deadline missed; told {len(created)}", created


def _fire_task_due(*, timer: Timer, incident: Incident, now: datetime):
    task = timer.task
    if task is None or task.status != Task.Status.OPEN or not incident.is_active:
        return "task finished or incident over", []
    created = notify.task_due_notifications(incident=incident, timer=timer, task=task, now=now)
    TimelineEntry.objects.create(
        incident=incident,
        kind=TimelineEntry.Kind.TASK,
        at=now,
        text=_("Task overdue: “%(t)s”.") % {"t": task.title},
        data={"timer_id": timer.pk, "task_id": task.pk, "overdue": True},
    )
    return f"task overdue; told {len(created)}", created


def _fire_update_cadence(*, timer: Timer, incident: Incident, now: datetime):
    """An audience is due its next update: tell the communications lead, schedule the next."""
    if not incident.is_active or timer.audience_id is None:
        return "incident over", []
    every = _cadence_minutes(incident, timer.audience_id)
    if every is None:
        return "no cadence for this audience", []
    created = notify.cadence_notifications(incident=incident, timer=timer, every=every, now=now)
    TimelineEntry.objects.create(
        incident=incident,
        kind=TimelineEntry.Kind.DEADLINE,
        at=now,
        text=_("Update due for %(audience)s (every %(m)s minutes).")
        % {"audience": timer.audience.name, "m": every},
        data={"timer_id": timer.pk, "deadline": "update_cadence", "audience_id": timer.audience_id},
    )
    Timer.objects.create(
        incident=incident,
        kind=Timer.Kind.UPDATE_CADENCE,
        audience_id=timer.audience_id,
        due_at=timer.due_at + timedelta(minutes=every),
    )
    return f"update due for {timer.audience.slug}; told {len(created)}", created


def _cadence_minutes(incident: Incident, audience_id: int) -> int | None:
    if incident.playbook_id is None:
        return None
    cadence = incident.playbook.cadences.filter(audience_id=audience_id).first()
    return cadence.every_minutes if cadence else None


def _fire_message_send(*, timer: Timer, incident: Incident, now: datetime):
    message = timer.message
    if message is None or message.status != message.Status.APPROVED:
        return "message no longer waiting to be sent", []
    try:
        count = comms.message_send(message=message, actor=None, now=now)
    except ValidationError as exc:
        TimelineEntry.objects.create(
            incident=incident,
            kind=TimelineEntry.Kind.DELIVERY,
            at=now,
            text=_("Scheduled message #%(id)s was not sent: %(why)s")
            % {"id": message.pk, "why": " ".join(exc.messages)},
            data={"message_id": message.pk},
        )
        return "scheduled message not sent", []
    return f"scheduled message sent to {count}", []


def _fire_roll_call(*, timer: Timer, incident: Incident, now: datetime):
    """A roll-call window ended: chase once, then pass the role on (see services)."""
    return services.role_roll_call_lapsed(incident=incident, timer=timer, now=now)


_HANDLERS = {
    Timer.Kind.ESCALATION: _fire_escalation,
    Timer.Kind.STATEMENT_REMINDER: _fire_statement_reminder,
    Timer.Kind.FIRST_STATEMENT: _fire_first_statement,
    Timer.Kind.TASK_DUE: _fire_task_due,
    Timer.Kind.UPDATE_CADENCE: _fire_update_cadence,
    Timer.Kind.MESSAGE_SEND: _fire_message_send,
    Timer.Kind.ROLL_CALL: _fire_roll_call,
}
