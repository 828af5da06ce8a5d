"""Watching the watcher: when the sweep last ran, and the dead man's switch.

Beat's sweep (incidents/escalation.py) is what recovers a lost timer or e-mail.
If beat stops, nothing else notices: so each sweep records its start, end and
duration in one ``SweepRun`` row per kind (in the database, so every process on
every machine reads the same), and /readyz, /metrics and the workers read it.

The dead man's switch runs in the workers, not in beat (beat is what stops): each
worker's main process starts a ``Watchdog`` thread when it is ready (the
``worker_ready`` signal, incidents/tasks.py) that every
``CRISISDESK_WATCHDOG_SECONDS`` calls ``watchdog_check``:

1. If the last sweep finished less than ``CRISISDESK_SWEEP_STALE_SECONDS`` ago,
   nothing to do.
2. Otherwise write one e-mail per crisis manager (the "Crisis managers" group)
   into the outbox, with the dedupe key ``deadman:<last sweep's end>:<person>``.
   Every worker that notices writes the same keys, so the unique key lets one
   row per person through: one e-mail each, however many workers. When sweeps
   resume, the last sweep's end moves on, so the next stale period is a new key
   and alerts again.
3. Deliver them from this thread, and retry any such e-mail left queued or whose
   sending lease ran out: with beat stopped, the sweep that would normally do
   that is not running. The claim in ``notify.notification_deliver`` keeps two
   workers from sending one twice.

A thread rather than piggy-backing on delivery tasks: those run only while
e-mails flow, and a quiet desk is exactly when a stopped beat goes unnoticed.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import F, QuerySet
from django.urls import reverse
from django.utils import timezone

from incidents import notify
from incidents.models import Notification, SweepRun
from incidents.permissions import CRISIS_MANAGERS
from playbooks.people import person_locale

log = logging.getLogger(__name__)


def sweep_started(*, kind: str = SweepRun.Kind.ESCALATION, now: datetime) -> None:
    """Record that a sweep of ``kind`` started (one row per kind, updated in place)."""
    if SweepRun.objects.filter(kind=kind).update(started_at=now):
        return
    try:
        with transaction.atomic():
            SweepRun.objects.create(kind=kind, started_at=now)
    except IntegrityError:  # another scheduler's first sweep wrote the row first
        SweepRun.objects.filter(kind=kind).update(started_at=now)


def sweep_finished(
    *, kind: str = SweepRun.Kind.ESCALATION, now: datetime, duration: timedelta
) -> None:
    ms = min(86_400_000, max(0, int(duration.total_seconds() * 1000)))
    SweepRun.objects.filter(kind=kind).update(finished_at=now, duration_ms=ms, runs=F("runs") + 1)


def stale_after() -> timedelta:
    return timedelta(seconds=settings.CRISISDESK_SWEEP_STALE_SECONDS)


def last_sweep(*, kind: str = SweepRun.Kind.ESCALATION) -> SweepRun | None:
    return SweepRun.objects.filter(kind=kind).first()


def sweep_age(run: SweepRun | None, *, now: datetime) -> timedelta | None:
    """How long ago the last sweep finished (None: never)."""
    if run is None or run.finished_at is None:
        return None
    return max(timedelta(0), now - run.finished_at)


def sweep_is_stale(run: SweepRun | None, *, now: datetime) -> bool:
    """No sweep finished within the limit. A desk's first sweep, started but not yet
    finished (a new desk's first sweep fires its whole backlog), counts from its start."""
    if run is not None and run.finished_at is None:
        return now - run.started_at > stale_after()
    age = sweep_age(run, now=now)
    return age is None or age > stale_after()


# ------------------------------------------------------------ dead man's switch

DEADMAN = "deadman"


def crisis_managers() -> QuerySet:
    return (
        get_user_model()
        .objects.filter(groups__name=CRISIS_MANAGERS, is_active=True)
        .exclude(email="")
        .distinct()
        .order_by("pk")
    )


def deadman_notifications(*, now: datetime, watching_since: datetime | None = None) -> list[int]:
    """If the sweep is stale, write the crisis managers' e-mails (once per stale period).

    A desk that never swept is stale once this checker has itself watched for longer
    than the limit (``watching_since``): a worker started a moment before beat on a
    new desk is no alarm.
    """
    run = last_sweep()
    if not sweep_is_stale(run, now=now):
        return []
    never_finished = run is None or run.finished_at is None
    if never_finished and watching_since is not None and now - watching_since <= stale_after():
        return []
    last_at = run.finished_at if run is not None else None
    period = last_at.isoformat() if last_at else "never"
    people = {f"{DEADMAN}:{period}:{p.pk}": p for p in crisis_managers()}
    done = set(
        Notification.objects.filter(dedupe_key__in=people).values_list("dedupe_key", flat=True)
    )
    created = []
    for key, person in people.items():
        if key in done:
            continue
        language, zone = person_locale(person)
        subject, text, html = notify.render_email(
            DEADMAN,
            {
                "recipient": person,
                "last_sweep_at": last_at,
                "limit_seconds": settings.CRISISDESK_SWEEP_STALE_SECONDS,
                "now": now,
                "readyz_url": notify.absolute(reverse("readyz")),
            },
            language=language,
            zone=zone,
        )
        try:
            with transaction.atomic():
                n = Notification.objects.create(
                    recipient=person,
                    to_email=person.email,
                    language=language,
                    reason=DEADMAN,
                    dedupe_key=key,
                    message_id=Notification.new_message_id(),
                    subject=subject[:400],
                    body_text=text,
                    body_html=html,
                    created_at=now,
                    next_attempt_at=now,
                )
        except IntegrityError:
            continue  # another worker noticed first: its row is the one that is sent
        created.append(n.pk)
    if created:
        log.warning(
            "no escalation sweep since %s: e-mailed %d crisis managers", period, len(created)
        )
    return created


def watchdog_check(*, now: datetime | None = None, watching_since: datetime | None = None) -> str:
    """One check of the dead man's switch, and delivery of its e-mails (see above)."""
    now = now or timezone.now()
    created = deadman_notifications(now=now, watching_since=watching_since)
    Notification.objects.filter(
        reason=DEADMAN, status=Notification.Status.SENDING, lease_until__lt=now
    ).update(status=Notification.Status.QUEUED, next_attempt_at=now, lease_until=None)
    waiting = list(
        Notification.objects.filter(
            reason=DEADMAN, status=Notification.Status.QUEUED, next_attempt_at__lte=now
        ).values_list("pk", flat=True)
    )
    for pk in waiting:
        notify.notification_deliver(notification_id=pk, now=now)
    return f"watchdog: {len(created)} alerts written, {len(waiting)} delivered or retried"


class Watchdog(threading.Thread):
    """A worker's dead man's switch: ``watchdog_check`` every ``interval`` seconds."""

    def __init__(self, *, interval: float) -> None:
        super().__init__(name="crisisdesk-watchdog", daemon=True)
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        since = timezone.now()
        while not self.stopped.wait(self.interval):
            try:
                watchdog_check(watching_since=since)
            except Exception:  # noqa: BLE001 - the database may be down: try again next time
                log.exception("the sweep watchdog's check failed")
            finally:
                close_old_connections()

    def stop(self) -> None:
        self.stopped.set()
