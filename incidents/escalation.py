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
   fires the timer again. The worker's task runs ``timer_fire_due``, which fires
   the other escalations already due in the same transaction (a storm's pages in
   batches: few statements, one SMTP connection), each still claimed on its own.
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
burning its notification. A batch of fires (``timer_fire_due``) locks many
incidents, with SKIP LOCKED, so it never waits for one while holding others.
Delivery and the sweep lock only notification rows,
one statement at a time. So no two paths wait on each other in a circle (a
manual send racing its own scheduled send used to deadlock on PostgreSQL).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, Q, When
from django.utils import timezone
from django.utils.translation import gettext as _

from incidents import comms, dispatch, notify, services, timers, watchdog
from incidents.models import (
    Exercise,
    ExerciseParticipant,
    Incident,
    Inject,
    Notification,
    SendRun,
    Task,
    TimelineEntry,
    Timer,
)
from playbooks.models import OnCallRotation
from playbooks.oncall import oncall_holder, rotation_holder

log = logging.getLogger(__name__)
User = get_user_model()

SWEEP_SECONDS = 5
# An overdue timer whose message was sent this long ago and is still pending
# was lost (killed worker, flushed broker): send it again. Duplicates are
# harmless (the claim), so this errs towards resending.
REENQUEUE_AFTER = timedelta(seconds=5)
SWEEP_BATCH = 5000
# A mass send (a message's outbox rows, delivered in chunks) may wait in the broker's
# queue for minutes behind its own earlier chunks, so a row's age says nothing; the
# send's progress does: rows are sent again only when nothing of the send has moved
# (no batch written, no chunk delivered) for this long.
MASS_STALLED_AFTER = timedelta(seconds=30)


# --------------------------------------------------------------------- sweep


def sweep(*, now: datetime | None = None) -> str:
    """Send what is due soon and was never sent, or overdue and evidently lost.

    Each run is recorded (``SweepRun``, incidents/watchdog.py): /readyz and the
    workers' dead man's switch tell from it that beat is still sweeping.
    """
    now = now or timezone.now()
    started = time.monotonic()
    watchdog.sweep_started(now=now)
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

    # A delivery whose process died mid-send, or whose host fell off the network: the
    # lease ran out. Back to the queue, and a mass send's rows straight to the broker
    # (the others go below as stuck): the send may still be moving on other workers,
    # so waiting for it to stall would hold them until it ends.
    expired = Notification.objects.filter(status=Notification.Status.SENDING, lease_until__lt=now)
    expired_mass = list(
        expired.filter(comms_message__send_run__isnull=False)
        .order_by("pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    expired.update(status=Notification.Status.QUEUED, next_attempt_at=now, lease_until=None)
    queued = Notification.objects.filter(
        status=Notification.Status.QUEUED, next_attempt_at__lte=now
    )
    stuck = list(
        queued.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=now - REENQUEUE_AFTER))
        .exclude(comms_message__send_run__isnull=False)
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    if stuck:
        Notification.objects.filter(pk__in=stuck).update(enqueued_at=now)
        dispatch.deliver_on_commit(stuck)
    stalled = now - MASS_STALLED_AFTER
    mass = list(
        queued.filter(
            comms_message__send_run__progress_at__lte=stalled,
            enqueued_at__lte=stalled,
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    mass = sorted(set(mass) | set(expired_mass))
    if mass:
        Notification.objects.filter(pk__in=mass).update(enqueued_at=now)
        dispatch.deliver_chunks_on_commit(mass)
    # A fan-out that stopped writing (its worker died, its task was lost): again.
    fanouts = list(
        SendRun.objects.filter(finished_at__isnull=True, progress_at__lte=stalled).values_list(
            "message_id", flat=True
        )[:SWEEP_BATCH]
    )
    if fanouts:
        SendRun.objects.filter(message_id__in=fanouts).update(progress_at=now)
        transaction.on_commit(
            lambda: [dispatch.send(dispatch.MESSAGE_FANOUT, pk) for pk in fanouts]
        )
    stuck += mass
    elapsed = timedelta(seconds=time.monotonic() - started)
    watchdog.sweep_finished(now=now + elapsed, duration=elapsed)
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
        transaction.on_commit(lambda: timers.enqueue_unsent(incident_ids=[incident_id]))
    # Delivering in this task, after commit, saves a broker round trip on the
    # path that matters most; a crash here leaves them queued for the sweep.
    notify.deliver_now(created)
    log.info("%s %s: %s", incident.reference, timer.get_kind_display(), outcome)
    return f"timer {timer_id}: {outcome}"


# The most escalation timers one transaction fires together (timer_fire_due). Small
# enough that a page never waits long behind its batch's others, and that a storm is
# shared by every worker process at once: 25 beat 100 in bench/escalation_latency.py
# --burst (BENCHMARKS.md).
FIRE_BATCH = 25


def timer_fire_due(*, timer_id: int, now: datetime | None = None) -> str:
    """The broker's fast path: fire this timer and, if it pages, every other escalation
    already due with it, in one transaction. Safe to call any number of times.

    In steady load a batch is this one timer; in a storm, when timers fall due
    faster than one by one can fire them, each task takes what is due by then, so
    the work per page (queries, commits, SMTP connections) shrinks as the storm grows.

    1. A timer no longer pending or not due yet is left alone, like ``timer_fire``;
       one of another kind than an escalation is fired alone by ``timer_fire``.
    2. Pick the other escalation timers due by now, oldest first, one per incident,
       up to ``FIRE_BATCH`` in all.
    3. In one transaction: lock their incidents with SKIP LOCKED, so a batch never
       waits for a lock (two batches cannot deadlock, and none stands idle behind
       another), and an incident that another fire or an acknowledgement holds is
       left to it. Each timer is still claimed by the conditional update,
       ``pending -> fired``: the rows it changed (their ``fired_at`` is this batch's
       instant) are this batch's. A worker killed before the commit rolls every claim
       back, and each timer's own message (acknowledged late) or the sweep fires it again.
    4. Decide each page as ``timer_fire`` does (``_fire_escalation``), then write the
       pages, timeline entries and next levels' timers in a few statements; commit.
    5. If anything in 3-4 fails, all of it rolls back and each timer is fired on its
       own (``timer_fire``): one bad timer costs the others time, never their page.
    6. Deliver the pages over one SMTP connection (``notify.deliver_now``), each row
       still claimed, re-checked and marked sent on its own.
    7. If this timer's own incident was locked in 3, fire it alone now (``timer_fire``,
       which waits for the lock, holding nothing else): usually another batch had it
       and it is found fired; if an acknowledgement or another service held the
       lock, it fires as soon as they commit, as it always did.
    """
    now = now or timezone.now()
    row = Timer.objects.filter(pk=timer_id).values("incident_id", "kind", "state", "due_at").first()
    if row is None or row["state"] != Timer.State.PENDING:
        return f"timer {timer_id}: not pending"
    if row["kind"] != Timer.Kind.ESCALATION:
        return timer_fire(timer_id=timer_id, now=now)
    if row["due_at"] > now:
        return f"timer {timer_id}: not due yet"
    picked = {row["incident_id"]: timer_id}  # incident -> its timer; this one first
    # More than a batch: other batches running now lock some of them (SKIP LOCKED).
    due = (
        Timer.objects.filter(kind=Timer.Kind.ESCALATION, state=Timer.State.PENDING, due_at__lte=now)
        .exclude(incident_id=row["incident_id"])
        .order_by("due_at", "pk")
        .values_list("pk", "incident_id")[: 4 * FIRE_BATCH]
    )
    for pk, incident_id in due:
        picked.setdefault(incident_id, pk)
    claimed: list[int] = []
    try:
        with transaction.atomic():
            fired, created, locked = _fire_escalations(picked=picked, now=now, claimed=claimed)
    except Exception:  # noqa: BLE001 - logged; each timer then gets a transaction of its own
        log.exception("a batch of %s escalations failed: firing them one by one", len(claimed))
        for pk in claimed or [timer_id]:
            try:
                timer_fire(timer_id=pk)
            except Exception:  # noqa: BLE001 - left pending: the sweep sends it again
                log.exception("timer %s could not be fired", pk)
        return f"timer {timer_id}: batch of {len(claimed)} failed, fired one by one"
    notify.deliver_now(created)
    mine = fired.get(timer_id)
    if timer_id in claimed and mine is None:
        mine = "could not be fired, left pending"
    elif mine is None and row["incident_id"] not in locked:
        mine = timer_fire(timer_id=timer_id).removeprefix(f"timer {timer_id}: ")
    return f"timer {timer_id}: {mine or 'fired elsewhere'}; {len(fired)} fired in its batch"


def timers_fire_due(*, timer_ids: list[int]) -> str:
    """Fire timers sent to the broker together (``timers.send_timers``), each as
    ``timer_fire_due``: the first escalation's batch usually takes the others with it,
    and they are then found fired, at the cost of a query each, not of a task each."""
    outcomes = [timer_fire_due(timer_id=pk) for pk in timer_ids]
    return f"{len(timer_ids)} timers together: " + "; ".join(outcomes)


def _fire_escalations(
    *, picked: dict[int, int], now: datetime, claimed: list[int]
) -> tuple[dict[int, str], list[int], set[int]]:
    """Steps 3-4 of ``timer_fire_due``, inside its transaction: each fired timer's
    outcome, the ids of the pages written, and the incidents it could lock; the ids
    of the timers it claimed go into ``claimed`` (for step 5, if this raises).

    A timer whose decision fails (a broken policy, a template error) is given back,
    pending, and logged; the others go on. Deciding writes nothing (the batch
    writes at the end), so giving one back is forgetting its rows and its claim.
    """
    # Lock order: incident, then timer, as everywhere; SKIP LOCKED never waits. This
    # timer's incident first, then the oldest due.
    own = next(iter(picked))
    lock = (
        Incident.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(timers__pk__in=list(picked.values()))
        .order_by(Case(When(pk=own, then=0), default=1), "timers__due_at", "pk")
    )
    incidents = {i.pk: i for i in lock[:FIRE_BATCH]}
    ids = [picked[pk] for pk in incidents]
    Timer.objects.filter(pk__in=ids, state=Timer.State.PENDING, due_at__lte=now).update(
        state=Timer.State.FIRED, fired_at=now
    )
    # The fire's instant, to the microsecond, marks the claim as this batch's: where
    # rows are not locked (SQLite), a claim by another fire leaves another instant.
    ours = list(
        Timer.objects.filter(pk__in=ids, state=Timer.State.FIRED, fired_at=now).order_by(
            "due_at", "pk"
        )
    )
    claimed += [t.pk for t in ours]
    batch = _Batch(now=now)
    batch.earlier = notify.paged_before([incidents[t.incident_id] for t in ours])
    fired: dict[int, str] = {}
    for timer in ours:
        incident = incidents[timer.incident_id]
        mark = batch.mark()
        try:
            fired[timer.pk], _created = _fire_escalation(
                timer=timer, incident=incident, now=now, batch=batch
            )
        except Exception:  # noqa: BLE001 - one timer's fault is not the batch's
            log.exception("timer %s could not be fired; left pending for the sweep", timer.pk)
            batch.forget(mark)
            Timer.objects.filter(pk=timer.pk).update(state=Timer.State.PENDING, fired_at=None)
            continue
        log.info("%s %s: %s", incident.reference, timer.get_kind_display(), fired[timer.pk])
    if not fired:
        return {}, [], set(incidents)
    created = batch.write()
    by_outcome: dict[str, list[int]] = defaultdict(list)
    for pk, outcome in fired.items():
        by_outcome[outcome[:200]].append(pk)
    for outcome, pks in by_outcome.items():
        Timer.objects.filter(pk__in=pks).update(outcome=outcome)
    # The levels written that fall due soon go to the broker after commit (usually
    # none: a next level is minutes away, and the sweep sends it when it comes near).
    near = {t.incident_id for t in batch.timers if t.due_at <= now + timers.HORIZON}
    if near:
        transaction.on_commit(lambda: timers.enqueue_unsent(incident_ids=sorted(near)))
    return fired, created, set(incidents)


@dataclass
class _Batch:
    """What one or more escalation fires in one transaction look up once and write
    together: a storm's hundred pages cost a few statements, not a few hundred."""

    now: datetime
    notifications: list[Notification] = field(default_factory=list)
    entries: list[TimelineEntry] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    first_paged: list[int] = field(default_factory=list)
    # notify.paged_before of the batch's incidents, read in one query (None: per fire).
    earlier: dict[int, list[tuple[int, str]]] | None = None
    # Person id -> (language, zone) of the people paged.
    locales: dict[int, tuple[str, str]] = field(default_factory=dict)
    _recipients: dict[tuple, list] = field(default_factory=dict)

    def people(self, level: dict, cast: dict[int, object] | None) -> list:
        """``recipients_for`` this level now, asked once per batch (an exercise's cast
        is its own)."""
        if cast is not None:
            return recipients_for(level, at=self.now, cast=cast)
        key = (
            level["target"],
            level.get("role_id"),
            level.get("rotation_id"),
            tuple(level.get("user_ids") or ()),
        )
        if key not in self._recipients:
            self._recipients[key] = recipients_for(level, at=self.now)
        return self._recipients[key]

    def mark(self) -> tuple[int, ...]:
        """Where the rows decided so far end (``forget`` goes back to it)."""
        return tuple(len(rows) for rows in self._rows())

    def forget(self, mark: tuple[int, ...]) -> None:
        """Drop the rows decided since ``mark``: a fire that failed half-way."""
        for rows, end in zip(self._rows(), mark, strict=True):
            del rows[end:]

    def _rows(self) -> tuple[list, ...]:
        return (self.notifications, self.entries, self.timers, self.first_paged)

    def write(self) -> list[int]:
        """Write what the fires decided; the ids of the pages written."""
        if self.first_paged:
            Incident.objects.filter(pk__in=self.first_paged).update(first_paged_at=self.now)
        created = notify.notifications_write(self.notifications) if self.notifications else []
        if self.entries:
            TimelineEntry.objects.bulk_create(self.entries)
        if self.timers:
            # A retried fire never writes a level twice (as get_or_create did, one by one).
            taken = set(
                Timer.objects.filter(
                    kind=Timer.Kind.ESCALATION,
                    incident_id__in={t.incident_id for t in self.timers},
                ).values_list("incident_id", "round", "cycle", "level")
            )
            Timer.objects.bulk_create(
                [t for t in self.timers if (t.incident_id, t.round, t.cycle, t.level) not in taken]
            )
        return created


def _fire_escalation(
    *, timer: Timer, incident: Incident, now: datetime, batch: _Batch | None = None
) -> tuple[str, list[int]]:
    """Page the level's on-call people; if nobody is on call, page the next level at once.

    1. Stop if the incident no longer waits for an acknowledgement, or the timer
       belongs to an earlier round (the incident was reopened since).
    2. Resolve whom to page at this instant. Unstaffed: record it and go on
       to the next level in the same transaction.
    3. Write one notification per person (dedupe key: timer + person), a timeline
       entry, and the timer of the level after it (or of the next repeat).

    Fired with others (``timer_fire_due``), the rows go into their ``batch`` and are
    written with theirs (the ids returned are then empty); alone, they are written here.
    """
    if batch is not None:
        return _escalate(timer=timer, incident=incident, now=now, batch=batch), []
    batch = _Batch(now=now)
    outcome = _escalate(timer=timer, incident=incident, now=now, batch=batch)
    return outcome, batch.write()


def _escalate(*, timer: Timer, incident: Incident, now: datetime, batch: _Batch) -> str:
    if incident.status != Incident.Status.OPEN or timer.round != incident.escalation_round:
        return "incident no longer needs paging"
    policy = incident.escalation_policy
    levels = policy.get("levels") or []
    cycle, position = timer.cycle, timer.level
    due_at = timer.due_at
    cast = exercise_cast(incident)
    while True:
        level = levels[position - 1]
        # A drill pages only its own people (notify.drill_people_ids): nobody else is on
        # call for it, so the level reads as unstaffed on its timeline.
        people = notify.drill_reachable(incident, batch.people(level, cast))
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
                batch.first_paged.append(incident.pk)
                incident.first_paged_at = now
            batch.notifications += notify.escalation_notifications(
                incident=incident,
                timer=timer,
                level=position,
                cycle=cycle,
                people=people,
                now=now,
                next_level_at=next_due,
                earlier=None if batch.earlier is None else batch.earlier[incident.pk],
                locales=batch.locales,
            )
            names = ", ".join(p.get_full_name() or p.get_username() for p in people)
            batch.entries.append(
                TimelineEntry(
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
            )
        else:
            batch.entries.append(
                TimelineEntry(
                    incident=incident,
                    kind=TimelineEntry.Kind.UNSTAFFED,
                    at=now,
                    text=_("Nobody is on call for %(label)s: moving on to the next level.")
                    % {"label": label},
                    data={"timer_id": timer.pk, "level": position, "cycle": cycle},
                )
            )
        if nxt is None:
            batch.entries.append(
                TimelineEntry(
                    incident=incident,
                    kind=TimelineEntry.Kind.EXHAUSTED,
                    at=now,
                    text=_("Every escalation level has been paged and nobody has acknowledged."),
                    data={"timer_id": timer.pk},
                )
            )
            return f"paged {len(people)} ({label}); policy exhausted"
        cycle, position = nxt
        due_at = next_due
        if people:
            batch.timers.append(
                Timer(
                    incident=incident,
                    kind=Timer.Kind.ESCALATION,
                    round=timer.round,
                    cycle=cycle,
                    level=position,
                    due_at=due_at,
                )
            )
            return f"paged {len(people)} ({label})"
        # Unstaffed: the next level is paged now, in this same transaction.


def _next_step(*, levels: list, repeat: int, cycle: int, position: int) -> tuple[int, int] | None:
    if position < len(levels):
        return cycle, position + 1
    if cycle < repeat:
        return cycle + 1, 1
    return None


def exercise_cast(incident: Incident) -> dict[int, object] | None:
    """For a drill run as an exercise: who plays each crisis role (role id -> person).
    None for anything else."""
    if not incident.drill or not Exercise.objects.filter(incident=incident).exists():
        return None
    return {
        p.role_id: p.user
        for p in ExerciseParticipant.objects.filter(exercise__incident=incident).select_related(
            "user"
        )
    }


def recipients_for(level: dict, *, at: datetime, cast: dict[int, object] | None = None) -> list:
    """Whom a level pages at this instant: active users with an e-mail address.

    With an exercise's ``cast``, a level that pages a role's on-call holder (or a
    rotation's) pages the participant playing that role instead: in an exercise the
    cast is on call.
    """
    people = []
    if level["target"] == "role":
        if cast is not None:
            holder = cast.get(level.get("role_id"))
        else:  # a role deleted since has no rotations: nobody
            holder = oncall_holder(role_id=level.get("role_id"), at=at)
        people = [holder] if holder else []
    elif level["target"] == "rotation":
        rotation = OnCallRotation.objects.filter(pk=level.get("rotation_id")).first()
        if cast is not None:
            holder = cast.get(rotation.role_id) if rotation else None
        else:
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


def _fire_inject(*, timer: Timer, incident: Incident, now: datetime):
    """An exercise inject is due: put it on the drill's timeline and e-mail the participants
    it reaches. The timer claim makes this once; the inject's own ``fired_at`` claim makes
    it once even if a second timer of the same inject ever came through."""
    inject = Inject.objects.select_related("exercise").filter(pk=timer.inject_id).first()
    if inject is None:
        return "inject gone", []
    exercise = inject.exercise
    if exercise.status not in (Exercise.Status.RUNNING, Exercise.Status.PAUSED):
        return "exercise not running", []
    if not incident.is_active:
        return "drill incident over", []
    if Inject.objects.filter(pk=inject.pk, fired_at__isnull=True).update(fired_at=now) != 1:
        return "inject fired already", []
    inject.fired_at = now
    role_ids = set(inject.roles.values_list("pk", flat=True))
    parts = ExerciseParticipant.objects.filter(exercise=exercise).select_related("user")
    if role_ids:
        parts = parts.filter(role_id__in=role_ids)
    people = [p.user for p in parts.order_by("role__sort_order", "pk")]
    created = notify.inject_notifications(
        incident=incident, timer=timer, inject=inject, people=people, now=now
    )
    TimelineEntry.objects.create(
        incident=incident,
        kind=TimelineEntry.Kind.INJECT,
        at=now,
        text=_("Inject: %(title)s. %(text)s") % {"title": inject.title, "text": inject.text},
        data={
            "timer_id": timer.pk,
            "inject_id": inject.pk,
            "exercise_id": exercise.pk,
            "user_ids": [p.pk for p in people],
            "due_at": timer.due_at.isoformat(),
            "lateness_ms": int((now - timer.due_at).total_seconds() * 1000),
        },
    )
    for hook in _INJECT_HOOKS:
        # Inside the claim's transaction: the comments land once, or not at all.
        hook(inject=inject, incident=incident, now=now)
    return f"inject {inject.position} fired; told {len(created)}", created


_HANDLERS = {
    Timer.Kind.ESCALATION: _fire_escalation,
    Timer.Kind.STATEMENT_REMINDER: _fire_statement_reminder,
    Timer.Kind.FIRST_STATEMENT: _fire_first_statement,
    Timer.Kind.TASK_DUE: _fire_task_due,
    Timer.Kind.UPDATE_CADENCE: _fire_update_cadence,
    Timer.Kind.MESSAGE_SEND: _fire_message_send,
    Timer.Kind.ROLL_CALL: _fire_roll_call,
    Timer.Kind.INJECT: _fire_inject,
}


def handler_register(kind: str, handler) -> None:
    """Fire timers of ``kind`` with ``handler(timer=, incident=, now=)`` -> (outcome, ids).

    For timers owned outside ``incidents`` (the listening inbox's reply deadlines),
    registered from that app's ``ready()``, so ``incidents`` never imports it."""
    _HANDLERS[kind] = handler


_INJECT_HOOKS: list = []


def inject_hook_register(hook) -> None:
    """Call ``hook(inject=, incident=, now=)`` when an inject fires, in the fire's
    transaction (after the inject's ``fired_at`` claim, so once). The listening app
    registers the one that brings the inject's sample comments into the inbox, from
    its ``ready()``, so ``incidents`` never imports it."""
    if hook not in _INJECT_HOOKS:
        _INJECT_HOOKS.append(hook)
