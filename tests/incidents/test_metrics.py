"""/metrics: Prometheus exposition computed from the database, behind a token or a network."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from incidents import escalation, services
from incidents.models import DeliveryAttempt, Incident, Notification, SweepRun, Timer

pytestmark = pytest.mark.django_db


def scrape(client, **extra) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


def note(*, key, status="queued", reason="escalation", incident=None, timer=None, **kwargs):
    return Notification.objects.create(
        incident=incident,
        timer=timer,
        to_email="someone@example.test",
        reason=reason,
        dedupe_key=key,
        message_id=Notification.new_message_id(),
        subject="s",
        body_text="…",
        status=status,
        **kwargs,
    )


# ------------------------------------------------------------------ access


def test_it_answers_loopback_without_a_token_by_default(client):
    samples = scrape(client)  # the test client's REMOTE_ADDR is 127.0.0.1
    assert ("crisisdesk_timers_oldest_overdue_seconds", frozenset()) in samples


def test_it_refuses_an_address_outside_the_allowed_networks(client, settings):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 403
    assert b"crisisdesk_" not in response.content
    settings.CRISISDESK_METRICS_NETWORKS = ["203.0.113.0/24"]
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_it_refuses_a_request_through_the_proxy_without_the_token(client, settings):
    """Behind a proxy on the same machine every request comes from loopback."""
    response = client.get("/metrics", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert response.status_code == 403
    settings.CRISISDESK_METRICS_TOKEN = "s3cret-token"  # noqa: S105
    response = client.get(
        "/metrics", HTTP_X_FORWARDED_FOR="198.51.100.7", HTTP_AUTHORIZATION="Bearer s3cret-token"
    )
    assert response.status_code == 200


def test_a_trusted_proxys_word_for_an_allowed_address_still_needs_the_token(client, settings):
    settings.CRISISDESK_TRUSTED_PROXIES = ["127.0.0.1/32"]
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert response.status_code == 403


def test_it_accepts_the_token_from_anywhere_and_refuses_a_wrong_one(client, settings):
    settings.CRISISDESK_METRICS_TOKEN = "tok-123456"  # noqa: S105
    settings.CRISISDESK_METRICS_NETWORKS = []
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", **outside).status_code == 403
    assert (
        client.get("/metrics", HTTP_AUTHORIZATION="Bearer tok-12345", **outside).status_code == 403
    )
    assert client.get("/metrics", HTTP_AUTHORIZATION="tok-123456", **outside).status_code == 403
    assert (
        client.get("/metrics", HTTP_AUTHORIZATION="Bearer tok-123456", **outside).status_code == 200
    )
    # No network allowed: loopback needs the token too.
    assert client.get("/metrics").status_code == 403


def test_a_bad_network_setting_stops_the_process(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from crisisdesk.env import env_networks

    monkeypatch.setenv("CRISISDESK_METRICS_NETWORKS", "10.0.0.0/8, not-a-net")
    with pytest.raises(ImproperlyConfigured, match="CRISISDESK_METRICS_NETWORKS"):
        env_networks("CRISISDESK_METRICS_NETWORKS", [])
    monkeypatch.setenv("CRISISDESK_METRICS_NETWORKS", "10.1.2.3, ::1")
    assert env_networks("CRISISDESK_METRICS_NETWORKS", []) == ["10.1.2.3/32", "::1/128"]


# ------------------------------------------------------------------ values


def test_the_figures_match_the_database(client, team, make_playbook, broker_calls):
    playbook = make_playbook(delays=(60, 120, 180))
    t0 = timezone.now()
    with time_machine.travel(t0, tick=False):
        first = services.incident_open(title="Első", severity=1, playbook=playbook)
        services.incident_open(title="Δεύτερο", severity=1, playbook=playbook)
        third = services.incident_open(title="שלישי", severity=3, playbook=playbook)
        services.incident_open(title="Negyedik", severity=4, playbook=playbook)
    services.incident_acknowledge(incident=first, actor=team["people"]["noa"])
    Incident.objects.filter(pk=third.pk).update(status=Incident.Status.RESOLVED)

    # Outbox and attempts.
    queued = note(key="q1")
    note(key="q2")
    note(key="s1", status="sending", lease_until=t0 + dt.timedelta(hours=1))
    failed = note(key="f1", status="failed")
    DeliveryAttempt.objects.create(notification=queued, ok=True)
    DeliveryAttempt.objects.create(notification=queued, ok=False, error="421")
    DeliveryAttempt.objects.create(notification=failed, ok=False, error="550", permanent=True)
    DeliveryAttempt.objects.create(notification=failed, ok=False, error="451")

    later = t0 + dt.timedelta(seconds=100)
    with time_machine.travel(later, tick=False):
        escalation.sweep()
        samples = scrape(client)

    pending = Timer.objects.filter(state="pending")
    for kind in Timer.Kind.values:
        assert (
            value(samples, "crisisdesk_timers_pending", kind=kind)
            == pending.filter(kind=kind).count()
        )
        assert (
            value(samples, "crisisdesk_timers_overdue", kind=kind)
            == pending.filter(kind=kind, due_at__lt=later).count()
        )
    # Level 1 (60 s) of the open incidents is overdue, 40 s, and the oldest overdue timer.
    assert value(samples, "crisisdesk_timers_overdue", kind="escalation") >= 1
    oldest = pending.filter(due_at__lt=later).order_by("due_at").first()
    assert value(samples, "crisisdesk_timers_oldest_overdue_seconds") == pytest.approx(
        (later - oldest.due_at).total_seconds()
    )

    counts = {s: Notification.objects.filter(status=s).count() for s in ("queued", "sending")}
    assert value(samples, "crisisdesk_outbox_notifications", status="queued") == counts["queued"]
    assert value(samples, "crisisdesk_outbox_notifications", status="sending") == 1
    assert value(samples, "crisisdesk_outbox_notifications", status="failed") == 1
    assert value(samples, "crisisdesk_delivery_attempts_total", result="sent") == 1
    assert value(samples, "crisisdesk_delivery_attempts_total", result="transient") == 2
    assert value(samples, "crisisdesk_delivery_attempts_total", result="permanent") == 1

    assert value(samples, "crisisdesk_incidents_open", severity="SEV1") == 2
    assert value(samples, "crisisdesk_incidents_open", severity="SEV2") == 0
    assert value(samples, "crisisdesk_incidents_open", severity="SEV3") == 0
    assert value(samples, "crisisdesk_incidents_open", severity="SEV4") == 1

    run = SweepRun.objects.get()
    assert value(samples, "crisisdesk_sweep_last_run_timestamp_seconds", kind="escalation") == (
        pytest.approx(run.finished_at.timestamp())
    )
    assert value(samples, "crisisdesk_sweep_duration_seconds", kind="escalation") == (
        run.duration_ms / 1000
    )
    assert value(samples, "crisisdesk_sweep_runs_total", kind="escalation") == 1


def test_the_lateness_histogram_counts_sent_pages_from_their_timers(
    client, team, make_playbook, broker_calls
):
    incident = services.incident_open(title="Késés", severity=2, playbook=make_playbook())
    timer = Timer.objects.filter(incident=incident, kind="escalation").first()
    due = timer.due_at
    for i, late in enumerate((0.3, 3, 45)):
        note(
            key=f"late{i}",
            status="sent",
            incident=incident,
            timer=timer,
            sent_at=due + dt.timedelta(seconds=late),
        )
    # Not counted: a page not sent yet, and a sent e-mail that is not a page.
    note(key="waiting", incident=incident, timer=timer)
    note(
        key="other",
        status="sent",
        reason="task_due",
        incident=incident,
        timer=timer,
        sent_at=due + dt.timedelta(seconds=1),
    )
    samples = scrape(client)
    name = "crisisdesk_escalation_lateness_seconds_bucket"
    expected = {"0.5": 1, "1.0": 1, "2.0": 1, "5.0": 2, "10.0": 2, "30.0": 2, "60.0": 3}
    for le, count in expected.items():
        assert value(samples, name, le=le) == count, le
    assert value(samples, name, le="+Inf") == 3
    assert value(samples, "crisisdesk_escalation_lateness_seconds_count") == 3
    assert value(samples, "crisisdesk_escalation_lateness_seconds_sum") == pytest.approx(48.3)


def test_two_scrapes_agree_whichever_process_answers(client, team, make_playbook, broker_calls):
    """Nothing is kept in the process: a second scrape reads the same rows."""
    services.incident_open(title="Egy", severity=2, playbook=make_playbook())
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=5), tick=False):
        first = scrape(client)
        assert first == scrape(client)
    assert value(first, "crisisdesk_timers_oldest_overdue_seconds") > 0
