"""The dead man's switch: a stopped beat e-mails the crisis managers once per stale period."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from incidents import escalation, watchdog
from incidents.models import Notification, SweepRun
from incidents.permissions import CRISIS_MANAGERS, ensure_groups
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def managers(db):
    groups = ensure_groups()
    people = [
        UserFactory(username="noa", first_name="נועה", email="noa@example.test"),
        UserFactory(username="eszter", first_name="Eszter", email="eszter@example.test"),
    ]
    for person in people:
        person.groups.add(groups[CRISIS_MANAGERS])
    # Not told: someone of another group, a manager without an address, a former one.
    UserFactory(username="comms", email="comms@example.test").groups.add(groups["Communications"])
    UserFactory(username="noaddress", email="").groups.add(groups[CRISIS_MANAGERS])
    UserFactory(username="gone", email="gone@example.test", is_active=False).groups.add(
        groups[CRISIS_MANAGERS]
    )
    return people


def swept_at(at, broker_calls=None):
    with time_machine.travel(at, tick=False):
        escalation.sweep()
    return SweepRun.objects.get().finished_at


def check(at, **kwargs):
    """One worker's check at `at`."""
    with time_machine.travel(at, tick=False):
        return watchdog.watchdog_check(**kwargs)


def recipients():
    return sorted(address for m in mail.outbox for address in m.to)


def test_it_sends_nothing_while_the_sweep_is_fresh(managers, broker_calls, settings):
    t0 = timezone.now()
    last = swept_at(t0)
    check(last + dt.timedelta(seconds=settings.CRISISDESK_SWEEP_STALE_SECONDS))
    assert mail.outbox == []
    assert not Notification.objects.filter(reason="deadman").exists()


def test_a_stale_sweep_emails_each_crisis_manager_once_however_many_workers_notice(
    managers, broker_calls, settings
):
    settings.CRISISDESK_SWEEP_STALE_SECONDS = 15
    last = swept_at(timezone.now())
    stale = last + dt.timedelta(seconds=16)
    check(stale)  # worker 1
    check(stale)  # worker 2, the same instant
    check(stale + dt.timedelta(seconds=5))  # worker 1 again, still stale
    assert recipients() == ["eszter@example.test", "noa@example.test"]
    sent = Notification.objects.filter(reason="deadman")
    assert sent.count() == 2
    assert set(sent.values_list("status", flat=True)) == {"sent"}
    message = next(m for m in mail.outbox if m.to == ["noa@example.test"])
    assert "Celery beat" in message.subject
    assert "The escalation sweep last ran at" in message.body
    assert "nothing has run for more than 15 seconds." in message.body
    assert "/readyz" in message.body
    assert message.extra_headers["X-CrisisDesk-Reason"] == "deadman"
    html = message.alternatives[0][0]
    assert "Hello נועה" in html


def test_two_workers_racing_past_the_check_still_write_one_row_each(managers, broker_calls):
    """The unique dedupe key, not the look-up before it, is what keeps it to one."""
    last = swept_at(timezone.now())
    stale = last + dt.timedelta(minutes=5)
    with time_machine.travel(stale, tick=False):
        first = watchdog.deadman_notifications(now=stale)
        # The second checker read "nothing written yet" before the first committed.
        original = Notification.objects.filter
        calls = []

        def blind_filter(*args, **kwargs):
            if "dedupe_key__in" in kwargs and not calls:
                calls.append(1)
                return Notification.objects.none()
            return original(*args, **kwargs)

        Notification.objects.filter = blind_filter
        try:
            second = watchdog.deadman_notifications(now=stale)
        finally:
            del Notification.objects.filter
    assert len(first) == 2
    assert second == []
    assert calls == [1]
    assert Notification.objects.filter(reason="deadman").count() == 2


def test_it_alerts_again_after_a_recovery_and_a_new_stale_period(managers, broker_calls, settings):
    settings.CRISISDESK_SWEEP_STALE_SECONDS = 15
    t0 = timezone.now()
    last = swept_at(t0)
    check(last + dt.timedelta(seconds=20))
    assert len(mail.outbox) == 2
    # Beat is back: sweeps resume, nothing more is sent.
    last = swept_at(t0 + dt.timedelta(minutes=10))
    check(last + dt.timedelta(seconds=5))
    assert len(mail.outbox) == 2
    # It stops again: a new stale period, a new alert to each.
    check(last + dt.timedelta(seconds=30))
    check(last + dt.timedelta(seconds=31))
    assert len(mail.outbox) == 4
    assert recipients() == ["eszter@example.test"] * 2 + ["noa@example.test"] * 2


def test_a_desk_that_never_swept_alerts_once_the_checker_has_watched_long_enough(
    managers, settings
):
    settings.CRISISDESK_SWEEP_STALE_SECONDS = 15
    since = timezone.now()
    check(since + dt.timedelta(seconds=10), watching_since=since)
    assert mail.outbox == []  # a worker that started just before beat: no alarm
    check(since + dt.timedelta(seconds=16), watching_since=since)
    assert len(mail.outbox) == 2
    assert "has never run" in mail.outbox[0].body


def test_a_first_sweep_still_running_is_no_alarm_until_it_outlasts_the_limit(managers, settings):
    # A new desk's first sweep fires its whole backlog: started, not yet finished.
    settings.CRISISDESK_SWEEP_STALE_SECONDS = 15
    started = timezone.now()
    watchdog.sweep_started(now=started)
    since = started - dt.timedelta(minutes=5)  # this worker has watched for a while
    check(started + dt.timedelta(seconds=5), watching_since=since)
    assert mail.outbox == []
    assert not watchdog.sweep_is_stale(
        SweepRun.objects.get(), now=started + dt.timedelta(seconds=5)
    )
    # Hung for longer than the limit: that is a stopped sweep.
    check(started + dt.timedelta(seconds=16), watching_since=since)
    assert len(mail.outbox) == 2


def test_it_retries_an_alert_whose_send_failed_without_beat(managers, broker_calls, settings):
    """With beat stopped the sweep does not re-queue it: the checker itself retries."""
    last = swept_at(timezone.now())
    stale = last + dt.timedelta(minutes=1)
    settings.EMAIL_BACKEND = "tests.incidents.test_watchdog.RefusingBackend"
    check(stale)
    assert Notification.objects.filter(reason="deadman", status="queued").count() == 2
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    check(stale + dt.timedelta(minutes=1))
    assert recipients() == ["eszter@example.test", "noa@example.test"]
    assert Notification.objects.filter(reason="deadman", status="sent").count() == 2


class RefusingBackend:
    def __init__(self, **kwargs):
        pass

    def open(self):
        raise ConnectionRefusedError("no SMTP server")

    def close(self):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("no SMTP server")


def test_the_alert_is_written_in_each_managers_language(managers, broker_calls):
    from playbooks.models import UserProfile

    UserProfile.objects.update_or_create(user=managers[1], defaults={"language": "hu"})
    last = swept_at(timezone.now())
    check(last + dt.timedelta(minutes=2))
    hungarian = Notification.objects.get(reason="deadman", recipient=managers[1])
    english = Notification.objects.get(reason="deadman", recipient=managers[0])
    assert hungarian.language == "hu"
    assert english.language == "en"
