"""Health endpoints for load balancers and monitoring: /healthz and /readyz.

Both answer JSON to anyone, without signing in: so they hold counts, ages and
yes/no only, never a title, a name, an address or an error message (an error
from the broker can carry its URL and password).

- ``/healthz``: the process is alive and answers HTTP. Nothing else is touched,
  so a database outage does not make a load balancer restart healthy web
  processes.
- ``/readyz``: the desk can do its job: the database and the broker answer, every
  migration is applied, the last sweep is younger than
  ``CRISISDESK_SWEEP_STALE_SECONDS`` (beat is running), and no e-mail has waited
  longer than ``CRISISDESK_OUTBOX_STUCK_SECONDS`` past its time (workers are
  delivering). 200 when all hold, 503 otherwise, with each check's result.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, Min, Q
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

from incidents import watchdog
from incidents.models import Notification

BROKER_TIMEOUT_SECONDS = 3


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    now = timezone.now()
    checks = {
        "database": _run(_database),
        "broker": _run(_broker),
        "migrations": _run(_migrations),
        "sweep": _run(lambda: _sweep(now)),
        "outbox": _run(lambda: _outbox(now)),
    }
    ready = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "fail", "checks": checks}, status=200 if ready else 503
    )


def _run(check: Callable[[], dict]) -> dict:
    """One check's result; a failure is reported by its kind only (never its message)."""
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return {"ok": False, "error": type(exc).__name__}


def _database() -> dict:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True}


def _broker() -> dict:
    """Connect to the broker the workers use (settings, so a test can point it elsewhere)."""
    with Connection(
        settings.CELERY_BROKER_URL,
        transport=getattr(settings, "CELERY_BROKER_TRANSPORT", None),
        transport_options=getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}),
        connect_timeout=BROKER_TIMEOUT_SECONDS,
    ) as broker:
        broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
        # A virtual transport (Redis) connects lazily: a channel makes it talk.
        broker.default_channel  # noqa: B018
    return {"ok": True}


def _migrations() -> dict:
    """Every migration of this code's version applied (upgrades migrate first)."""
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return {"ok": not pending, "pending": len(pending)}


def _sweep(now: datetime) -> dict:
    run = watchdog.last_sweep()
    age = watchdog.sweep_age(run, now=now)
    return {
        "ok": not watchdog.sweep_is_stale(run, now=now),
        "age_seconds": _seconds(age),
        "limit_seconds": settings.CRISISDESK_SWEEP_STALE_SECONDS,
    }


def outbox_stuck_filter(now: datetime) -> Q:
    """E-mails due longer ago than the limit and still queued, or whose sending lease
    ran out longer ago than it: nobody is delivering them. A mass send's e-mail still
    queued while its send moved within the limit is waiting its turn, not stuck (a
    statement to 100,000 contacts takes minutes)."""
    before = now - timedelta(seconds=settings.CRISISDESK_OUTBOX_STUCK_SECONDS)
    return (
        Q(status=Notification.Status.QUEUED, next_attempt_at__lt=before)
        & ~Q(comms_message__send_run__progress_at__gte=before)
    ) | Q(status=Notification.Status.SENDING, lease_until__lt=before)


def _outbox(now: datetime) -> dict:
    stuck = Notification.objects.filter(outbox_stuck_filter(now)).aggregate(
        count=Count("pk"), oldest=Min("next_attempt_at")
    )
    oldest = now - stuck["oldest"] if stuck["oldest"] else None
    return {
        "ok": stuck["count"] == 0,
        "stuck": stuck["count"],
        "oldest_stuck_seconds": _seconds(oldest),
        "limit_seconds": settings.CRISISDESK_OUTBOX_STUCK_SECONDS,
    }


def _seconds(age: timedelta | None) -> float | None:
    return None if age is None else round(age.total_seconds(), 3)
