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

from incidents import comms, escalation, exercises, notify
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


# ------------------------------------------------------------------ pages and e-mails to people


def fire_everything_until(moment) -> None:
    """Fire every timer due by ``moment`` (escalation levels, statement reminder and deadline,
    task due, update cadence, roll calls, injects), as the worker would, in due order."""
    while True:
        due = Timer.objects.filter(state="pending", due_at__lte=moment).order_by("due_at").first()
        if due is None:
            return
        with time_machine.travel(max(due.due_at, timezone.now()), tick=False):
            escalation.timer_fire(timer_id=due.pk)


def everything_emailed() -> list:
    """Deliver what is still queued; everything e-mailed since the outbox was last cleared
    (a fire delivers its own e-mails at once)."""
    for n in Notification.objects.filter(status="queued"):
        notify.notification_deliver(notification_id=n.pk, now=timezone.now() + dt.timedelta(days=2))
    return list(mail.outbox)


def test_an_exercise_emails_only_its_participants(team, make_playbook, broker_calls):
    """Everything a drill's engine sends in two hours: only to the two participants, though
    the real on-call technical lead and executive sponsor are on its escalation policy."""
    roles, people = team["roles"], team["people"]
    outsider_manager = people["noa"]  # on call as crisis manager, not taking part
    exercise = exercises.exercise_plan(
        playbook=make_playbook(),
        title="Drill",
        facilitator=outsider_manager,
        participants=[
            (people["eszter"], roles["communications-lead"]),
            (people["eleni"], roles["crisis-manager"]),
        ],
        injects=[exercises.InjectDraft(60, "A journalist calls", "Comment?")],
    )
    exercise = exercises.exercise_start(exercise=exercise, actor=outsider_manager)
    mail.outbox.clear()
    fire_everything_until(timezone.now() + dt.timedelta(hours=2))
    sent = everything_emailed()
    recipients = [m.to[0] for m in sent]
    participants = {"eszter@example.test", "eleni@example.test"}
    assert [r for r in recipients if r not in participants] == []
    reasons = {n.reason for n in Notification.objects.filter(incident=exercise.incident)}
    assert {"activation", "inject", "statement_reminder", "first_statement"} <= reasons
    assert set(recipients) == participants
    # Nobody outside it was handed a role when the participants did not answer.
    assert set(exercise.incident.assignments.values_list("user__username", flat=True)) == {
        "eszter",
        "eleni",
    }
    # The escalation levels of people outside it read as unstaffed, not as paged; the level
    # that pages the on-call crisis manager pages the participant playing the role instead.
    pages = exercise.incident.timeline.filter(kind="escalation")
    assert not [e for e in pages if "Dana" in e.text or "נועה" in e.text]
    assert [e.data["user_ids"] for e in pages] == [[people["eleni"].pk]]


def test_a_drill_without_an_exercise_emails_only_its_role_holders_and_opener(
    team, make_playbook, broker_calls
):
    """The executive sponsor is relieved from the drill: its last level pages nobody."""
    people = team["people"]
    incident = incident_services.incident_open(
        title="Drill: outage", playbook=make_playbook(), drill=True, actor=people["noa"]
    )
    incident_services.role_relieve(
        incident=incident, role=team["roles"]["executive-sponsor"], actor=people["noa"]
    )
    incident_services.role_relieve(
        incident=incident, role=team["roles"]["technical-lead"], actor=people["noa"]
    )
    mail.outbox.clear()
    fire_everything_until(timezone.now() + dt.timedelta(hours=2))
    sent = everything_emailed()
    recipients = {m.to[0] for m in sent}
    assert recipients and recipients <= {"noa@example.test", "eszter@example.test"}
    assert not Notification.objects.filter(
        incident=incident, recipient__in=[people["exec"], people["eleni"]], reason="escalation"
    ).exists()


def test_a_real_incident_still_pages_everyone_on_its_policy(team, make_playbook, broker_calls):
    incident_services.incident_open(title="Outage", playbook=make_playbook())
    fire_everything_until(timezone.now() + dt.timedelta(hours=2))
    paged = set(Notification.objects.filter(reason="escalation").values_list("to_email", flat=True))
    assert paged == {"noa@example.test", "eleni@example.test", "exec@example.test"}
