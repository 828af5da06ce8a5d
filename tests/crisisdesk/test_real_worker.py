"""The configured broker, a real Celery worker and a real SMTP server work together."""

import datetime as dt

import pytest
from django.utils import timezone

from playbooks.models import ReviewReminder
from playbooks.tasks import send_review_reminders
from tests.factories import RiskFactory, UserFactory
from tests.realstack import eventually

pytestmark = pytest.mark.services


def test_it_runs_a_task_on_a_real_worker_and_delivers_over_smtp(worker_factory, smtp_server):
    owner = UserFactory(email="risk.owner@example.test", first_name="Ελένη")
    RiskFactory(
        owner=owner, title="Νέα κριτική", next_review_on=timezone.localdate() - dt.timedelta(days=2)
    )
    worker = worker_factory(smtp=smtp_server)

    send_review_reminders.delay()
    received = smtp_server.wait_for(1, timeout=60)

    assert len(received) == 1, worker.log()
    assert received[0].rcpt_tos == ["risk.owner@example.test"]
    assert "Νέα κριτική" in received[0].message.get_content()
    assert eventually(lambda: ReviewReminder.objects.filter(user=owner).exists())

    # Sent again through the broker: the claim row makes the second run a no-op.
    send_review_reminders.delay()
    assert eventually(lambda: "0 people" in worker.log(), timeout=60), worker.log()
    assert len(smtp_server.received) == 1
