"""The dead man's switch on real parts: Celery workers with no beat, the test database
(SQLite file or PostgreSQL), the configured broker and an SMTP server."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from incidents.models import Notification, SweepRun
from incidents.permissions import CRISIS_MANAGERS, ensure_groups
from tests.factories import UserFactory

pytestmark = pytest.mark.services

WATCHDOG = {"CRISISDESK_SWEEP_STALE_SECONDS": "2", "CRISISDESK_WATCHDOG_SECONDS": "1"}


def test_workers_without_beat_email_the_crisis_managers_once(worker_factory, smtp_server):
    smtp_server.ignore_reasons = frozenset()  # the alert is what this test counts
    groups = ensure_groups()
    for name in ("noa", "eszter"):
        UserFactory(username=name, email=f"{name}@example.test").groups.add(groups[CRISIS_MANAGERS])
    UserFactory(username="comms", email="comms@example.test").groups.add(groups["Communications"])
    # Beat swept once a minute ago, then stopped.
    last = timezone.now() - dt.timedelta(minutes=1)
    SweepRun.objects.create(kind="escalation", started_at=last, finished_at=last, runs=1)

    w1 = worker_factory(smtp=smtp_server, name="w1", extra_env=WATCHDOG)
    worker_factory(smtp=smtp_server, name="w2", extra_env=WATCHDOG)

    arrived = smtp_server.wait_for(2, timeout=60)
    assert sorted(r.rcpt_tos[0] for r in arrived) == ["eszter@example.test", "noa@example.test"], (
        w1.log()
    )
    assert all(r.message["X-CrisisDesk-Reason"] == "deadman" for r in arrived)
    assert "Celery beat" in arrived[0].message["Subject"]
    # Both workers go on checking every second while it stays stale: nothing more.
    smtp_server.assert_nothing_more(2)
    assert Notification.objects.filter(reason="deadman", status="sent").count() == 2
