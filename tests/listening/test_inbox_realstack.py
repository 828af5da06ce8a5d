"""On the real stack: a comment that needs a reply e-mails the communications lead before
its deadline and escalates to the crisis manager when it is missed.

A real Celery worker (PostgreSQL and Redis in CI's second run) fires the reply timers
the engine enqueued on commit, and delivers through a loopback SMTP server. The comment
arrived 59 min 55 s ago, so its 60-minute deadline is 5 s away and its warning (15
minutes before) is already due.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from incidents import escalation
from incidents import services as incident_services
from incidents.listening import inbox
from incidents.listening.models import Mention
from incidents.models import Notification, Timer

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_the_reply_deadline_emails_the_communications_lead_then_escalates(
    inbox_desk, worker_factory, smtp_server
):
    desk, mention = inbox_desk, inbox_desk["mention"]
    # Acknowledged, so no escalation page mixes with the reply e-mails.
    incident_services.incident_acknowledge(incident=desk["incident"], actor=desk["noa"])
    arrived = timezone.now() - dt.timedelta(minutes=59, seconds=55)
    Mention.objects.filter(pk=mention.pk).update(received_at=arrived)
    mention.refresh_from_db()
    worker_factory(smtp=smtp_server)

    inbox.mention_needs_reply(mention=mention, actor=desk["noa"])

    warning = smtp_server.wait_for(1, timeout=60)
    assert len(warning) == 1
    first = warning[0]
    assert first.rcpt_tos == ["eszter@example.test"]  # the communications lead on call
    assert first.message["X-CrisisDesk-Reason"] == "reply_warning"
    assert "@kati" in first.message.get_body(("plain",)).get_content()
    received = smtp_server.wait_for(3, timeout=60)
    escalated = sorted(r.rcpt_tos[0] for r in received[1:])
    assert escalated == ["eszter@example.test", "noa@example.test"]
    assert {r.message["X-CrisisDesk-Reason"] for r in received[1:]} == {"reply_deadline"}
    # Each once: no beat here, so a second copy could come only from a redelivered task.
    smtp_server.assert_nothing_more(3, sweep_seconds=escalation.SWEEP_SECONDS)
    assert Notification.objects.filter(status="sent", reason__startswith="reply_").count() == 3
    assert not Timer.objects.filter(mention=mention, state=Timer.State.PENDING).exists()
