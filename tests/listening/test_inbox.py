"""The triage inbox's services and reply timers (incidents/listening/inbox.py)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError

from incidents import comms, escalation
from incidents.listening import inbox
from incidents.listening.models import Mention
from incidents.listening.selectors import mention_list
from incidents.models import Message, Notification, TimelineEntry, Timer
from playbooks.models import Playbook
from tests.listening.conftest import REPLY_HU

pytestmark = pytest.mark.django_db


def reply_timers(mention, state=Timer.State.PENDING):
    return {
        t.kind: t
        for t in Timer.objects.filter(mention=mention, kind__in=Timer.REPLY_KINDS, state=state)
    }


def approved_reply(desk, *, body=None):
    mention = desk["mention"]
    message = inbox.reply_draft(mention=mention, author=desk["eszter"], template=desk["template"])
    if body is not None:
        comms.message_edit(message=message, editor=desk["eszter"], subject="", body=body)
    comms.message_submit(message=message, actor=desk["eszter"])
    return comms.message_approve(
        message=message, approver=desk["noa"], accept_boilerplate=body is None
    )


def test_it_sets_the_deadline_from_the_playbook_and_writes_two_timers(inbox_desk, broker_calls):
    mention = inbox.mention_needs_reply(mention=inbox_desk["mention"], actor=inbox_desk["eszter"])
    mention.refresh_from_db()
    assert mention.state == Mention.State.NEEDS_REPLY
    assert mention.incident == inbox_desk["incident"]
    assert mention.reply_due_at == mention.received_at + dt.timedelta(minutes=60)
    timers = reply_timers(mention)
    assert timers[Timer.Kind.REPLY_DEADLINE].due_at == mention.reply_due_at
    assert timers[Timer.Kind.REPLY_WARNING].due_at == mention.reply_due_at - dt.timedelta(
        minutes=15
    )
    assert TimelineEntry.objects.filter(
        incident=inbox_desk["incident"], data__mention_id=mention.pk
    ).exists()


def test_it_takes_the_most_specific_deadline_per_channel_and_severity(inbox_desk):
    playbook = inbox_desk["playbook"]
    playbook.reply_deadlines = [
        {"channel": "twitter", "severity": 1, "minutes": 30},
        {"channel": "twitter", "minutes": 45},
        {"severity": 1, "minutes": 20},
    ]
    assert playbook.reply_minutes_for(channel="twitter", severity=1) == 30
    assert playbook.reply_minutes_for(channel="twitter", severity=2) == 45
    assert playbook.reply_minutes_for(channel="review", severity=1) == 20
    assert playbook.reply_minutes_for(channel="review", severity=3) == 60


@pytest.mark.parametrize(
    "bad",
    [
        "60",
        [{"channel": "myspace", "minutes": 10}],
        [{"channel": "twitter", "minutes": 0}],
        [{"channel": "twitter", "minutes": 10**6}],
        [{"severity": 5, "minutes": 10}],
        [{"channel": "twitter", "minutes": 10}, {"channel": "twitter", "minutes": 20}],
        [{"channel": "twitter", "minutes": 10, "colour": "red"}],
        [{"minutes": 10}] * 61,
    ],
)
def test_it_refuses_reply_deadlines_out_of_bounds(bad):
    playbook = Playbook(key="x", title="X", scenario="other", reply_deadlines=bad)
    with pytest.raises(ValidationError) as exc:
        playbook.full_clean()
    assert "reply_deadlines" in exc.value.message_dict


def test_it_refuses_a_reply_without_an_incident(inbox_desk):
    other, _c = Mention.objects.get_or_create(
        source=inbox_desk["mention"].source,
        external_id="lonely",
        defaults={"channel": "review", "text": "Meh."},
    )
    with pytest.raises(ValidationError) as exc:
        inbox.mention_needs_reply(mention=other, actor=inbox_desk["eszter"])
    assert "incident" in exc.value.message_dict
    other.refresh_from_db()
    assert other.state == Mention.State.NEW and not Timer.objects.filter(mention=other).exists()


def test_it_warns_the_communications_lead_then_escalates_when_missed(inbox_desk, broker_calls):
    mention = inbox.mention_needs_reply(mention=inbox_desk["mention"], actor=inbox_desk["noa"])
    inbox.mention_assign(mention=mention, actor=inbox_desk["noa"], assignee=inbox_desk["eleni"])
    timers = reply_timers(mention)
    warning, deadline = timers[Timer.Kind.REPLY_WARNING], timers[Timer.Kind.REPLY_DEADLINE]
    with time_machine.travel(warning.due_at - dt.timedelta(seconds=1), tick=False):
        assert "not due yet" in escalation.timer_fire(timer_id=warning.pk)
    with time_machine.travel(warning.due_at, tick=False):
        escalation.timer_fire(timer_id=warning.pk)
    told = Notification.objects.filter(timer=warning)
    # The communications lead on call, and the person the comment is assigned to.
    assert {n.to_email for n in told} == {"eszter@example.test", "eleni@example.test"}
    assert all(n.reason == "reply_warning" for n in told)
    with time_machine.travel(deadline.due_at, tick=False):
        escalation.timer_fire(timer_id=deadline.pk)
        escalation.timer_fire(timer_id=deadline.pk)  # twice: nothing doubled
    told = Notification.objects.filter(timer=deadline)
    assert {n.to_email for n in told} == {
        "noa@example.test",
        "eszter@example.test",
        "eleni@example.test",
    }
    assert "@kati" in told.first().body_text
    assert TimelineEntry.objects.filter(
        incident=inbox_desk["incident"], data__deadline="reply", data__met=False
    ).exists()


def test_it_drafts_in_the_comments_language_flags_boilerplate_and_publishing_settles(
    inbox_desk, broker_calls
):
    mention = inbox.mention_needs_reply(mention=inbox_desk["mention"], actor=inbox_desk["noa"])
    message = inbox.reply_draft(
        mention=mention, author=inbox_desk["eszter"], template=inbox_desk["template"]
    )
    # The English template was chosen; the comment is Hungarian: its Hungarian sibling.
    assert message.language == "hu" and message.channel == "reply"
    assert message.body == REPLY_HU.format(incident_reference=inbox_desk["incident"].reference)
    assert message.translations == {} and message.is_public is False
    assert message.reads_as_boilerplate
    comms.message_submit(message=message, actor=inbox_desk["eszter"])
    with pytest.raises(ValidationError, match="boilerplate"):
        comms.message_approve(message=message, approver=inbox_desk["noa"])
    comms.message_approve(message=message, approver=inbox_desk["noa"], accept_boilerplate=True)
    # The generic door refuses a reply: its address is recorded from the comment.
    with pytest.raises(ValidationError):
        comms.message_publish(message=message, actor=inbox_desk["eszter"], where="x")
    with pytest.raises(ValidationError) as exc:
        inbox.reply_publish(mention=mention, actor=inbox_desk["eszter"], url="not a link")
    assert "url" in exc.value.message_dict
    inbox.reply_publish(mention=mention, actor=inbox_desk["eszter"], url="https://x.example/acme/2")
    mention.refresh_from_db()
    message.refresh_from_db()
    assert mention.state == Mention.State.REPLIED and mention.replied_via == "twitter"
    assert mention.reply_url == "https://x.example/acme/2"
    assert message.status == Message.Status.PUBLISHED and message.boilerplate_approved
    assert reply_timers(mention) == {}
    assert set(reply_timers(mention, Timer.State.CANCELLED)) == set(Timer.REPLY_KINDS)
    # Not the first public statement, and no audience's update.
    inbox_desk["incident"].refresh_from_db()
    assert inbox_desk["incident"].first_statement_at is None
    assert TimelineEntry.objects.filter(data__deadline="reply", data__met=True).exists()


def test_a_reply_edited_is_not_boilerplate_and_one_by_email_records_it(inbox_desk, broker_calls):
    mention = inbox.mention_needs_reply(mention=inbox_desk["mention"], actor=inbox_desk["noa"])
    message = approved_reply(inbox_desk, body="Kati, a hibát javítottuk; elnézést kérünk.")
    assert not message.boilerplate_approved
    inbox.reply_publish(mention=mention, actor=inbox_desk["eszter"], by_email=True)
    mention.refresh_from_db()
    assert mention.replied_via == "email" and mention.reply_url == ""


def test_a_timer_due_after_the_reply_tells_nobody(inbox_desk, broker_calls):
    mention = inbox.mention_needs_reply(mention=inbox_desk["mention"], actor=inbox_desk["noa"])
    deadline = reply_timers(mention)[Timer.Kind.REPLY_DEADLINE]
    approved_reply(inbox_desk)
    # The timer row is claimed by the fire racing the publish: the re-check stops it.
    Timer.objects.filter(pk=deadline.pk).update(state=Timer.State.PENDING)
    Mention.objects.filter(pk=mention.pk).update(
        state=Mention.State.NO_REPLY, no_reply_reason="spam"
    )
    with time_machine.travel(deadline.due_at, tick=False):
        outcome = escalation.timer_fire(timer_id=deadline.pk)
    assert "no reply needed" in outcome
    assert not Notification.objects.filter(timer=deadline).exists()


def test_no_reply_and_dismissed_keep_the_comment_findable_and_cancel_timers(
    inbox_desk, broker_calls
):
    desk = inbox_desk
    mention = inbox.mention_needs_reply(mention=desk["mention"], actor=desk["noa"])
    with pytest.raises(ValidationError) as exc:
        inbox.mention_no_reply(mention=mention, actor=desk["noa"], reason="other")
    assert "note" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        inbox.mention_no_reply(mention=mention, actor=desk["noa"], reason="bored")
    assert "reason" in exc.value.message_dict
    inbox.mention_no_reply(mention=mention, actor=desk["noa"], reason="duplicate")
    assert reply_timers(mention) == {}
    mention.refresh_from_db()
    assert mention.state == Mention.State.NO_REPLY and mention.reply_due_at is None
    inbox.mention_reopen(mention=mention, actor=desk["noa"])
    with pytest.raises(ValidationError):
        inbox.mention_dismiss(mention=mention, actor=desk["noa"], reason="  ")
    inbox.mention_dismiss(mention=mention, actor=desk["noa"], reason="About another Acme")
    assert list(mention_list(user=desk["noa"], state="dismissed")) == [mention]
    assert Mention.objects.filter(pk=mention.pk).exists()


def test_an_answered_comment_cannot_be_marked_otherwise(inbox_desk, broker_calls):
    mention = inbox.mention_needs_reply(mention=inbox_desk["mention"], actor=inbox_desk["noa"])
    approved_reply(inbox_desk)
    inbox.reply_publish(mention=mention, actor=inbox_desk["eszter"], by_email=True)
    for call in (
        lambda: inbox.mention_no_reply(mention=mention, actor=inbox_desk["noa"], reason="spam"),
        lambda: inbox.mention_dismiss(mention=mention, actor=inbox_desk["noa"], reason="x"),
        lambda: inbox.mention_needs_reply(mention=mention, actor=inbox_desk["noa"]),
    ):
        with pytest.raises(ValidationError):
            call()
    mention.refresh_from_db()
    assert mention.state == Mention.State.REPLIED


@pytest.mark.parametrize(
    "language,expected",
    [("hu-HU", "hu"), ("de", "en"), ("", "en"), ("he", "en")],  # he: no Hebrew template here
)
def test_the_reply_takes_the_comments_language_when_the_playbook_speaks_it(
    inbox_desk, broker_calls, language, expected
):
    Mention.objects.filter(pk=inbox_desk["mention"].pk).update(language=language)
    mention = inbox.mention_needs_reply(mention=inbox_desk["mention"], actor=inbox_desk["noa"])
    message = inbox.reply_draft(
        mention=mention, author=inbox_desk["eszter"], template=inbox_desk["template"]
    )
    assert message.language == expected and message.translations == {}


def test_a_reply_written_from_scratch_in_a_language_the_desk_lacks_is_in_its_default(
    inbox_desk, broker_calls
):
    Mention.objects.filter(pk=inbox_desk["mention"].pk).update(language="de")
    mention = inbox.mention_needs_reply(mention=inbox_desk["mention"], actor=inbox_desk["noa"])
    message = inbox.reply_draft(mention=mention, author=inbox_desk["eszter"], body="Sorry!")
    assert message.language == "en" and not message.reads_as_boilerplate
