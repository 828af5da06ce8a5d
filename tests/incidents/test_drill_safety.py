"""A drill never reaches the outside world: every way a message can go out, tried with a
drill incident, writes no e-mail to a real contact; each copy goes to the drill mailbox,
marked [DRILL] and naming whom it stands for."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from incidents import comms, escalation, notify
from incidents import services as incident_services
from incidents.models import Message, Notification, Timer
from incidents.permissions import ensure_groups
from tests.incidents.conftest import FACTS, FACTS_BY_LANGUAGE, member

pytestmark = pytest.mark.django_db
REAL = {"anna@example.test", "yossi@example.test", "eleni.c@example.test", "peter@example.test"}
MAILBOX = "drill-box@example.test"


@pytest.fixture
def drill(comms_desk, broker_calls, settings):
    settings.CRISISDESK_DRILL_MAILBOX = MAILBOX
    incident = incident_services.incident_open(
        title="Drill: card data exposed",
        severity=2,
        playbook=comms_desk["incident"].playbook,
        drill=True,
    )
    return {**comms_desk, "incident": incident}


def approved(desk) -> Message:
    message = comms.message_draft(
        incident=desk["incident"],
        author=desk["eszter"],
        audience=desk["customers"],
        channel="email",
        template=desk["template"],
        facts=FACTS,
        facts_by_language=FACTS_BY_LANGUAGE,
    )
    message = comms.message_edit(
        message=message, editor=desk["eszter"], subject=message.subject, body=message.body + "!"
    )
    comms.message_submit(message=message, actor=desk["eszter"])
    return comms.message_approve(message=message, approver=desk["lawyer"])


def delivered(message: Message) -> list:
    """Deliver the message's outbox rows through the real delivery path; what was e-mailed."""
    mail.outbox.clear()
    for n in Notification.objects.filter(comms_message=message):
        notify.notification_deliver(notification_id=n.pk)
    return list(mail.outbox)


def assert_only_the_mailbox(message: Message) -> None:
    sent = delivered(message)
    assert len(sent) == 4  # one copy for each contact, none to the contact
    recipients = {address for m in sent for address in m.to}
    assert recipients == {MAILBOX} and not recipients & REAL
    for m in sent:
        assert m.subject.startswith("[DRILL] ")
        assert m.body.startswith("DRILL: not sent to ")
    entry = message.incident.timeline.filter(kind="message", data__drill=True).last()
    assert entry is not None and "no contact received it" in entry.text


def test_sending_now(drill):
    message = approved(drill)
    comms.message_send(message=message, actor=drill["eszter"])
    assert_only_the_mailbox(message)


def test_a_scheduled_send(drill):
    message = approved(drill)
    timer = comms.message_schedule(
        message=message, actor=drill["eszter"], at=timezone.now() + dt.timedelta(minutes=5)
    )
    with time_machine.travel(timer.due_at + dt.timedelta(seconds=1), tick=False):
        escalation.timer_fire(timer_id=timer.pk)
        assert Timer.objects.get(pk=timer.pk).state == "fired"
        assert_only_the_mailbox(message)


def test_a_correction(drill):
    original = approved(drill)
    comms.message_send(message=original, actor=drill["eszter"])
    original.refresh_from_db()
    correction = comms.message_correct(
        original=original, author=drill["eszter"], body="Correction: 1,100 customers."
    )
    words = {code: {"body": f"[{code}] 1,100."} for code in correction.translations}
    correction = comms.message_edit(
        message=correction,
        editor=drill["eszter"],
        subject=correction.subject,
        body=correction.body,
        translations=words,
    )
    comms.message_submit(message=correction, actor=drill["eszter"])
    comms.message_approve(message=correction, approver=drill["lawyer"])
    comms.message_send(message=correction, actor=drill["eszter"])
    assert_only_the_mailbox(correction)


def test_the_api_answers_with_the_message(drill):
    ensure_groups()
    writer = member("writer", "Communications")
    client = APIClient()
    client.force_authenticate(writer)
    message = approved(drill)
    response = client.post(f"/api/v1/messages/{message.pk}/send/")
    assert response.status_code == 200, response.content
    assert response.json()["id"] == message.pk and response.json()["status"] == "sent"
    assert_only_the_mailbox(message)


def test_the_admin_action(client, drill):
    drill["lawyer"].is_staff = drill["lawyer"].is_superuser = True
    drill["lawyer"].save()
    client.force_login(drill["lawyer"])
    message = approved(drill)
    client.post(
        reverse("admin:incidents_message_changelist"),
        {"action": "send", "_selected_action": [message.pk]},
    )
    message.refresh_from_db()
    assert message.status == "sent"
    assert_only_the_mailbox(message)


def test_the_war_room(client, drill):
    ensure_groups()
    writer = member("writer", "Communications")
    client.force_login(writer)
    message = approved(drill)
    incident = drill["incident"]
    client.post(f"/incidents/{incident.reference}/messages/{message.pk}/do/send/")
    message.refresh_from_db()
    assert message.status == "sent"
    assert_only_the_mailbox(message)


def test_a_real_incident_still_reaches_its_contacts(comms_desk, broker_calls, settings):
    settings.CRISISDESK_DRILL_MAILBOX = MAILBOX
    message = approved(comms_desk)
    comms.message_send(message=message, actor=comms_desk["eszter"])
    recipients = {address for m in delivered(message) for address in m.to}
    assert recipients == REAL
