"""Prometheus metrics at /metrics, computed from the database when scraped.

Every figure is read from the database by one custom collector at scrape time,
never counted in a process's memory: a desk runs several web processes and
workers on several machines, and any of them answers the same scrape with the
same numbers. The counters (delivery attempts, sweeps) and the lateness
histogram are cumulative over the whole record, so they only grow and
Prometheus's ``rate()`` and ``histogram_quantile()`` work on them as usual.

Access: ``Authorization: Bearer <CRISISDESK_METRICS_TOKEN>`` from anywhere, or,
without a token, a request straight from ``CRISISDESK_METRICS_NETWORKS``
(loopback by default). A request that came through the TLS proxy (it carries
``X-Forwarded-For``) needs the token whatever its address, since behind a proxy
on the same machine every request comes from loopback. Anything else: 403.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from crisisdesk.clientip import client_address
from incidents.models import (
    DeliveryAttempt,
    Incident,
    Notification,
    Severity,
    SweepRun,
    Timer,
)

# Upper bounds (seconds) of the escalation lateness histogram: how long after its
# timer was due a page reached the SMTP server.
LATENESS_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
OUTBOX_STATUSES = (
    Notification.Status.QUEUED,
    Notification.Status.SENDING,
    Notification.Status.FAILED,
)


class DeskCollector:
    """Reads the figures from the database on each scrape (a handful of aggregate queries)."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield from self._timers(now)
        yield from self._outbox()
        yield from self._deliveries()
        yield from self._sweeps(now)
        yield self._lateness()
        yield self._incidents()

    def _timers(self, now) -> Iterator[Metric]:
        rows = Timer.objects.filter(state=Timer.State.PENDING).aggregate(
            **{f"p_{kind}": Count("pk", filter=Q(kind=kind)) for kind in Timer.Kind.values},
            **{
                f"o_{kind}": Count("pk", filter=Q(kind=kind, due_at__lt=now))
                for kind in Timer.Kind.values
            },
        )
        pending = GaugeMetricFamily(
            "crisisdesk_timers_pending", "Timers waiting to fire, by kind.", labels=["kind"]
        )
        overdue = GaugeMetricFamily(
            "crisisdesk_timers_overdue",
            "Pending timers already past their due time, by kind.",
            labels=["kind"],
        )
        for kind in Timer.Kind.values:
            pending.add_metric([kind], rows[f"p_{kind}"])
            overdue.add_metric([kind], rows[f"o_{kind}"])
        yield pending
        yield overdue
        oldest = (
            Timer.objects.filter(state=Timer.State.PENDING, due_at__lt=now)
            .order_by("due_at")
            .values_list("due_at", flat=True)
            .first()
        )
        yield GaugeMetricFamily(
            "crisisdesk_timers_oldest_overdue_seconds",
            "How long the most overdue pending timer is past its due time (0: none).",
            value=(now - oldest).total_seconds() if oldest else 0.0,
        )

    def _outbox(self) -> Iterator[Metric]:
        rows = Notification.objects.filter(status__in=OUTBOX_STATUSES).aggregate(
            **{status: Count("pk", filter=Q(status=status)) for status in OUTBOX_STATUSES}
        )
        family = GaugeMetricFamily(
            "crisisdesk_outbox_notifications",
            "E-mails in the outbox queued, being sent, or failed for good.",
            labels=["status"],
        )
        for status in OUTBOX_STATUSES:
            family.add_metric([status], rows[status])
        yield family

    def _deliveries(self) -> Iterator[Metric]:
        rows = DeliveryAttempt.objects.aggregate(
            sent=Count("pk", filter=Q(ok=True)),
            transient=Count("pk", filter=Q(ok=False, permanent=False)),
            permanent=Count("pk", filter=Q(ok=False, permanent=True)),
        )
        family = CounterMetricFamily(
            "crisisdesk_delivery_attempts",
            "Attempts to hand an e-mail to the SMTP server, by result.",
            labels=["result"],
        )
        for result in ("sent", "transient", "permanent"):
            family.add_metric([result], rows[result])
        yield family

    def _sweeps(self, now) -> Iterator[Metric]:
        duration = GaugeMetricFamily(
            "crisisdesk_sweep_duration_seconds",
            "How long the last finished sweep took, by kind.",
            labels=["kind"],
        )
        last = GaugeMetricFamily(
            "crisisdesk_sweep_last_run_timestamp_seconds",
            "When the last sweep finished (Unix time), by kind.",
            labels=["kind"],
        )
        runs = CounterMetricFamily("crisisdesk_sweep_runs", "Sweeps run, by kind.", labels=["kind"])
        for run in SweepRun.objects.filter(finished_at__isnull=False):
            duration.add_metric([run.kind], run.duration_ms / 1000)
            last.add_metric([run.kind], run.finished_at.timestamp())
            runs.add_metric([run.kind], run.runs)
        yield duration
        yield last
        yield runs

    def _lateness(self) -> Metric:
        """Every escalation page handed to the SMTP server: sent time minus its timer's due time."""
        lateness = ExpressionWrapper(
            F("sent_at") - F("timer__due_at"), output_field=DurationField()
        )
        sent = Notification.objects.filter(
            reason="escalation", status=Notification.Status.SENT, timer__isnull=False
        ).annotate(lateness=lateness)
        rows = sent.aggregate(
            total=Count("pk"),
            sum=Sum("lateness"),
            **{
                f"le_{i}": Count("pk", filter=Q(lateness__lte=timedelta(seconds=bound)))
                for i, bound in enumerate(LATENESS_BUCKETS)
            },
        )
        buckets = [(str(float(b)), rows[f"le_{i}"]) for i, b in enumerate(LATENESS_BUCKETS)]
        buckets.append(("+Inf", rows["total"]))
        total = rows["sum"] or timedelta(0)
        return HistogramMetricFamily(
            "crisisdesk_escalation_lateness_seconds",
            "How long after its timer was due each escalation page reached the SMTP server.",
            buckets=buckets,
            sum_value=max(0.0, total.total_seconds()),
        )

    def _incidents(self) -> Metric:
        rows = Incident.objects.filter(status__in=Incident.ACTIVE_STATUSES).aggregate(
            **{f"s{sev}": Count("pk", filter=Q(severity=sev)) for sev in Severity.values}
        )
        family = GaugeMetricFamily(
            "crisisdesk_incidents_open",
            "Incidents not yet resolved (open, acknowledged or contained), by severity.",
            labels=["severity"],
        )
        for sev in Severity.values:
            family.add_metric([f"SEV{sev}"], rows[f"s{sev}"])
        return family


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DeskCollector())


def metrics_allowed(request: HttpRequest) -> bool:
    token = settings.CRISISDESK_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(
            given.removeprefix("Bearer ").strip().encode(), token.encode()
        ):
            return True
    if "X-Forwarded-For" in request.headers:
        # Through the proxy: never by address, even a trusted proxy's word for it
        # (crisisdesk/clientip.py): a scraper on the desk's network would pass.
        return False
    try:
        # Not forwarded: client_address is the direct peer, as for every other limit.
        address = ipaddress.ip_address(client_address(request))
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(network) for network in settings.CRISISDESK_METRICS_NETWORKS
    )


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain; charset=utf-8")
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
