import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone

from playbooks import services
from playbooks.models import Playbook, ReviewReminder
from playbooks.tasks import send_review_reminders
from tests.factories import PlaybookFactory, RiskFactory, UserFactory

pytestmark = pytest.mark.django_db


def overdue_playbook(owner):
    return PlaybookFactory(
        owner=owner,
        title="Αθόρυβη ανάκληση",
        status=Playbook.Status.PUBLISHED,
        published_at=timezone.now() - dt.timedelta(days=400),
        last_reviewed_on=timezone.localdate() - dt.timedelta(days=200),
        review_cycle_days=180,
    )


def test_it_reminds_each_owner_of_their_overdue_items_once_a_day():
    owner = UserFactory(email="owner@example.test")
    other = UserFactory(email="other@example.test")
    overdue_playbook(owner)
    RiskFactory(
        owner=owner,
        title="Review storm",
        next_review_on=timezone.localdate() - dt.timedelta(days=1),
    )
    RiskFactory(owner=other, next_review_on=timezone.localdate() + dt.timedelta(days=5))

    assert services.review_reminders_send() == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["owner@example.test"]
    assert "2 items are due for review" in message.subject
    assert "Αθόρυβη ανάκληση" in message.body and "Review storm" in message.body

    # The beat task may run twice (two schedulers, a retry): nobody gets a second e-mail.
    assert "0 people" in send_review_reminders()
    assert len(mail.outbox) == 1
    assert ReviewReminder.objects.count() == 1


def test_it_sends_unowned_overdue_items_to_superusers():
    UserFactory(username="boss", email="boss@example.test", is_superuser=True)
    RiskFactory(owner=None, next_review_on=timezone.localdate() - dt.timedelta(days=3))
    assert services.review_reminders_send() == 1
    assert mail.outbox[0].to == ["boss@example.test"]


def test_it_ignores_drafts_closed_risks_and_reviews_not_yet_due():
    owner = UserFactory()
    PlaybookFactory(owner=owner, status=Playbook.Status.DRAFT)
    RiskFactory(
        owner=owner, status="closed", next_review_on=timezone.localdate() - dt.timedelta(days=9)
    )
    PlaybookFactory(
        owner=owner,
        status=Playbook.Status.PUBLISHED,
        published_at=timezone.now(),
        last_reviewed_on=timezone.localdate(),
    )
    assert services.review_reminders_send() == 0
    assert mail.outbox == []


def test_it_sends_one_digest_a_week_however_often_it_runs(time_machine):
    owner = UserFactory(email="owner@example.test")
    time_machine.move_to(dt.datetime(2026, 11, 23, 7, 0, tzinfo=dt.UTC), tick=False)  # Monday
    overdue_playbook(owner)
    assert services.review_reminders_send() == 1

    # The daily runs of the rest of the week add nothing, even with a new overdue item.
    for day in range(24, 30):
        time_machine.move_to(dt.datetime(2026, 11, day, 7, 0, tzinfo=dt.UTC), tick=False)
        RiskFactory(owner=owner, next_review_on=timezone.localdate() - dt.timedelta(days=1))
        assert services.review_reminders_send() == 0
    assert len(mail.outbox) == 1

    # The next Monday brings one digest naming everything still overdue.
    time_machine.move_to(dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.UTC), tick=False)
    assert services.review_reminders_send() == 1
    assert len(mail.outbox) == 2
    assert "7 items are due for review" in mail.outbox[1].subject


def test_a_missed_monday_is_made_up_later_that_week(time_machine):
    owner = UserFactory(email="owner@example.test")
    time_machine.move_to(dt.datetime(2026, 11, 26, 7, 0, tzinfo=dt.UTC), tick=False)  # Thursday
    overdue_playbook(owner)
    assert services.review_reminders_send() == 1
    assert mail.outbox[0].to == ["owner@example.test"]
