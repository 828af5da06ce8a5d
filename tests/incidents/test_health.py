"""/healthz and /readyz: no sign-in, JSON, counts and ages only, 503 when the desk cannot work."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from incidents import escalation, services
from incidents.models import Notification, SweepRun
from tests.conftest import _broker_reachable, need
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def swept(broker_calls):
    """A sweep ran just now (beat is alive)."""
    escalation.sweep()
    return SweepRun.objects.get(kind="escalation")


def readyz(client):
    response = client.get("/readyz")
    assert response["Content-Type"] == "application/json"
    return response, response.json()


def test_it_answers_healthz_without_signing_in(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_it_records_each_sweep_in_one_row_updated_in_place(broker_calls):
    t0 = timezone.now()
    with time_machine.travel(t0, tick=False):
        escalation.sweep()
    with time_machine.travel(t0 + dt.timedelta(seconds=5), tick=False):
        escalation.sweep()
    run = SweepRun.objects.get()
    assert run.kind == "escalation"
    assert run.runs == 2
    assert run.started_at == t0 + dt.timedelta(seconds=5)
    assert run.finished_at >= run.started_at
    assert 0 <= run.duration_ms < 60_000


def test_it_is_ready_when_everything_answers(client, swept):
    response, body = readyz(client)
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "migrations", "sweep", "outbox"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["migrations"]["pending"] == 0
    assert 0 <= body["checks"]["sweep"]["age_seconds"] < 5
    assert body["checks"]["outbox"]["stuck"] == 0


def test_it_is_not_ready_before_any_sweep_ran(client):
    response, body = readyz(client)
    assert response.status_code == 503
    assert body["status"] == "fail"
    assert body["checks"]["sweep"] == {"ok": False, "age_seconds": None, "limit_seconds": 15}
    assert body["checks"]["database"]["ok"] is True


def test_it_is_not_ready_when_the_last_sweep_is_older_than_three_intervals(client, swept, settings):
    assert settings.CRISISDESK_SWEEP_STALE_SECONDS == 3 * settings.CRISISDESK_SWEEP_SECONDS
    with time_machine.travel(swept.finished_at + dt.timedelta(seconds=14), tick=False):
        response, body = readyz(client)
        assert response.status_code == 200, body
    with time_machine.travel(swept.finished_at + dt.timedelta(seconds=16), tick=False):
        response, body = readyz(client)
    assert response.status_code == 503
    assert body["checks"]["sweep"]["ok"] is False
    assert body["checks"]["sweep"]["age_seconds"] == 16.0


def test_it_is_not_ready_when_the_outbox_is_stuck(client, swept, team, make_playbook, settings):
    settings.CRISISDESK_OUTBOX_STUCK_SECONDS = 60
    incident = services.incident_open(
        title="Νεκρό outbox", severity=2, playbook=make_playbook(delays=(1, 1, 1))
    )
    late = timezone.now() - dt.timedelta(seconds=61)
    Notification.objects.create(
        incident=incident,
        to_email="noa@example.test",
        reason="escalation",
        dedupe_key="stuck-1",
        message_id=Notification.new_message_id(),
        subject="Secret title of the incident",
        body_text="…",
        next_attempt_at=late,
    )
    response, body = readyz(client)
    assert response.status_code == 503
    assert body["checks"]["outbox"]["ok"] is False
    assert body["checks"]["outbox"]["stuck"] == 1
    assert 61 <= body["checks"]["outbox"]["oldest_stuck_seconds"] < 70
    # Nothing confidential: no title, subject, address or reference.
    text = json.dumps(body)
    for secret in ("Νεκρό", "Secret", "noa@", incident.reference):
        assert secret not in text

    # Being handed over again now (a worker took it): no longer stuck.
    Notification.objects.filter(dedupe_key="stuck-1").update(
        status="sending", lease_until=timezone.now() + dt.timedelta(seconds=30)
    )
    response, body = readyz(client)
    assert response.status_code == 200, body


def test_a_sending_lease_long_expired_is_stuck_too(client, swept, settings):
    settings.CRISISDESK_OUTBOX_STUCK_SECONDS = 60
    Notification.objects.create(
        to_email="x@example.test",
        reason="review",
        dedupe_key="stuck-2",
        message_id=Notification.new_message_id(),
        subject="s",
        body_text="…",
        status="sending",
        lease_until=timezone.now() - dt.timedelta(seconds=90),
    )
    response, body = readyz(client)
    assert response.status_code == 503
    assert body["checks"]["outbox"]["stuck"] == 1


def test_it_is_not_ready_when_the_broker_is_unreachable(client, swept, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    if hasattr(settings, "CELERY_BROKER_TRANSPORT"):
        del settings.CELERY_BROKER_TRANSPORT
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    response, body = readyz(client)
    assert response.status_code == 503
    assert body["checks"]["broker"]["ok"] is False
    # The kind of failure only: never the URL (it may carry a password) or the message.
    assert set(body["checks"]["broker"]) == {"ok", "error"}
    assert "127.0.0.1" not in json.dumps(body)
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.django_db(transaction=True)
def test_it_is_not_ready_while_a_migration_is_pending(client, broker_calls):
    escalation.sweep()
    latest = MigrationRecorder.Migration.objects.filter(app="incidents").order_by("-name").first()
    latest.delete()  # as if the new code ran before `migrate`
    try:
        response, body = readyz(client)
        assert response.status_code == 503
        assert body["checks"]["migrations"] == {"ok": False, "pending": 1}
    finally:
        MigrationRecorder.Migration.objects.create(app="incidents", name=latest.name)
    response, body = readyz(client)
    assert body["checks"]["migrations"] == {"ok": True, "pending": 0}


def test_it_needs_no_sign_in_and_ignores_one(client, swept):
    """Signed in or not, the same answer: nothing there depends on who asks."""
    anonymous = client.get("/readyz").json()
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    signed_in = client.get("/readyz").json()
    assert anonymous["status"] == signed_in["status"] == "ok"
    assert set(anonymous["checks"]) == set(signed_in["checks"])


def test_it_refuses_anything_but_get(client):
    assert client.post("/healthz").status_code == 405
    assert client.post("/readyz").status_code == 405


RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def test_it_checks_a_rabbitmq_broker(client, swept, settings):
    # The CI run on RabbitMQ uses its own vhost: check that one, else the default vhost.
    url = settings.CELERY_BROKER_URL
    if not url.startswith("amqp"):
        need(
            _broker_reachable(RABBITMQ_URL),
            "RabbitMQ is not running on 127.0.0.1:5672 (guest/guest)",
        )
        url = RABBITMQ_URL
    settings.CELERY_BROKER_URL = url
    if hasattr(settings, "CELERY_BROKER_TRANSPORT"):
        del settings.CELERY_BROKER_TRANSPORT
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
    response, body = readyz(client)
    assert response.status_code == 200, body
    assert body["checks"]["broker"] == {"ok": True}

    settings.CELERY_BROKER_URL = "amqp://guest:secret-password@127.0.0.1:1//"
    response, body = readyz(client)
    assert response.status_code == 503
    assert set(body["checks"]["broker"]) == {"ok", "error"}
    assert "secret-password" not in json.dumps(body)
