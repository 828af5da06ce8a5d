"""Issue 10: a SEV1 pages level 1 at once, the acknowledge target runs from the first page,
and an escalation e-mail states the deadlines as they stand when it is written."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from incidents import comms, escalation, postmortem, services
from incidents.models import Incident, Notification, TimelineEntry, Timer
from incidents.postmortem.trends import trends
from tests.incidents.conftest import written_in_every_language  # noqa: E402

pytestmark = pytest.mark.django_db

MIN = dt.timedelta(minutes=1)


def fire_due(incident: Incident, at: dt.datetime) -> list[str]:
    """Fire every pending timer of the incident due at `at`, like the worker would."""
    with time_machine.travel(at, tick=False):
        return [
            escalation.timer_fire(timer_id=t.pk)
            for t in Timer.objects.filter(
                incident=incident, state="pending", due_at__lte=at
            ).order_by("due_at")
        ]


def level(incident: Incident, n: int, round_no: int = 1) -> Timer:
    return Timer.objects.get(incident=incident, kind="escalation", round=round_no, cycle=0, level=n)


@pytest.fixture
def clock():
    start = timezone.now().replace(microsecond=0) + MIN
    with time_machine.travel(start, tick=False) as traveller:
        traveller.start = start
        yield traveller


# ---------------------------------------------------------------- paging at once


def test_the_frozen_policy_says_which_severities_page_at_once(team, make_playbook, broker_calls):
    playbook = make_playbook(page_at_once_max_severity=2)
    incident = services.incident_open(title="Outage", severity=3, playbook=playbook)
    assert incident.escalation_policy["page_at_once_max_severity"] == 2
    assert level(incident, 1).due_at == incident.opened_at + dt.timedelta(seconds=60)
    never = services.incident_open(title="Outage", severity=1, playbook=make_playbook())
    assert never.escalation_policy["page_at_once_max_severity"] is None


def test_a_sev1_pages_level_1_at_opening_and_a_sev2_waits_for_its_delay(
    team, make_playbook, broker_calls, django_capture_on_commit_callbacks
):
    playbook = make_playbook(delays=(300, 120, 180), page_at_once_max_severity=1)
    with django_capture_on_commit_callbacks(execute=True):
        sev1 = services.incident_open(title="Payments down", severity=1, playbook=playbook)
    first = level(sev1, 1)
    assert first.due_at == sev1.opened_at
    # Sent to the broker on commit with an ETA of now, not in five minutes.
    [(kind, pk, eta)] = [c for c in broker_calls if c[1] == first.pk]
    assert kind == "fire" and eta - sev1.opened_at < dt.timedelta(seconds=5)

    sev2 = services.incident_open(title="Slow checkout", severity=2, playbook=playbook)
    assert level(sev2, 1).due_at == sev2.opened_at + dt.timedelta(seconds=300)

    fire_due(sev1, sev1.opened_at)
    page = Notification.objects.get(incident=sev1, reason="escalation")
    assert page.recipient.username == "noa"
    sev1.refresh_from_db()
    assert sev1.first_paged_at == sev1.opened_at
    # Level 2 keeps its own delay after level 1.
    assert level(sev1, 2).due_at == sev1.opened_at + dt.timedelta(seconds=120)
    assert fire_due(sev2, sev2.opened_at + dt.timedelta(seconds=299)) == []
    assert not Notification.objects.filter(incident=sev2, reason="escalation").exists()


def test_raising_the_severity_brings_a_waiting_level_1_forward(
    team, make_playbook, broker_calls, clock, django_capture_on_commit_callbacks
):
    playbook = make_playbook(delays=(600, 120, 180), page_at_once_max_severity=1)
    incident = services.incident_open(title="Reviews", severity=3, playbook=playbook)
    opened = incident.opened_at
    assert level(incident, 1).due_at == opened + dt.timedelta(minutes=10)

    clock.move_to(opened + 2 * MIN)
    # SEV3 -> SEV2 does not page at once under this playbook: level 1 keeps waiting.
    services.incident_change_severity(incident=incident, severity=2, actor=None)
    assert level(incident, 1).due_at == opened + dt.timedelta(minutes=10)

    clock.move_to(opened + 3 * MIN)
    broker_calls.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.incident_change_severity(incident=incident, severity=1, actor=None)
    first = level(incident, 1)
    assert first.due_at == opened + 3 * MIN and first.state == "pending"
    assert [c[:2] for c in broker_calls] == [("fire", first.pk)]
    entry = incident.timeline.filter(kind="severity").order_by("at", "pk").last()
    assert entry.data["level_1_brought_forward"] is True
    assert "paged now" in entry.text

    fire_due(incident, opened + 3 * MIN)
    assert Notification.objects.filter(incident=incident, reason="escalation").count() == 1
    assert level(incident, 2).due_at == opened + 3 * MIN + dt.timedelta(seconds=120)
    # The message sent for the old time finds the timer fired and pages nobody twice.
    assert "not pending" in escalation.timer_fire(timer_id=first.pk)

    # Once level 1 has paged, changing the severity moves nothing.
    clock.move_to(opened + 4 * MIN)
    services.incident_change_severity(incident=incident, severity=2, actor=None)
    services.incident_change_severity(incident=incident, severity=1, actor=None)
    assert level(incident, 2).due_at == opened + 3 * MIN + dt.timedelta(seconds=120)
    assert (
        incident.timeline.filter(kind="severity")
        .order_by("at", "pk")
        .last()
        .data["level_1_brought_forward"]
        is False
    )


def test_an_acknowledged_incident_raised_to_sev1_pages_nobody(team, make_playbook, broker_calls):
    playbook = make_playbook(delays=(600, 120, 180), page_at_once_max_severity=1)
    incident = services.incident_open(title="Reviews", severity=3, playbook=playbook)
    services.incident_acknowledge(incident=incident, actor=team["people"]["noa"])
    services.incident_change_severity(incident=incident, severity=1, actor=None)
    assert level(incident, 1).state == "cancelled"
    assert not Timer.objects.filter(incident=incident, kind="escalation", state="pending").exists()


def test_reopening_a_sev1_starts_round_2_with_level_1_at_once(
    team, make_playbook, broker_calls, clock
):
    playbook = make_playbook(delays=(300, 120, 180), page_at_once_max_severity=1)
    incident = services.incident_open(title="Recall", severity=1, playbook=playbook)
    fire_due(incident, incident.opened_at)
    services.incident_contain(incident=incident, actor=None)  # nobody acknowledged
    services.incident_resolve(incident=incident, actor=None)
    clock.move_to(incident.opened_at + 30 * MIN)
    incident = services.incident_reopen(incident=incident, actor=None)
    reopened_at = incident.opened_at + 30 * MIN
    assert level(incident, 1, round_no=2).due_at == reopened_at
    # Nobody acknowledged round 1: round 2's first page is where its clock starts.
    assert incident.first_paged_at is None
    fire_due(incident, reopened_at)
    incident.refresh_from_db()
    assert incident.first_paged_at == reopened_at


def test_an_acknowledged_incident_keeps_its_first_page_when_reopened(
    team, make_playbook, broker_calls, clock
):
    playbook = make_playbook(delays=(300, 120, 180), page_at_once_max_severity=1)
    incident = services.incident_open(title="Recall", severity=1, playbook=playbook)
    opened = incident.opened_at
    fire_due(incident, opened)
    clock.move_to(opened + MIN)
    services.incident_acknowledge(incident=incident, actor=team["people"]["noa"])
    services.incident_resolve(incident=incident, actor=None)
    clock.move_to(opened + 30 * MIN)
    services.incident_reopen(incident=incident, actor=None)
    fire_due(incident, opened + 30 * MIN)
    incident.refresh_from_db()
    assert Notification.objects.filter(incident=incident, reason="escalation").count() == 2
    assert incident.first_paged_at == opened
    assert postmortem.report_build(incident).targets[0].actual == MIN


# ---------------------------------------------------------------- the acknowledge target


def test_acknowledging_a_minute_after_a_late_page_meets_the_target(
    team, make_playbook, broker_calls, clock
):
    """Target 5 minutes (level 1's delay); the page came 10 minutes after opening."""
    playbook = make_playbook(delays=(300, 600, 600))
    incident = services.incident_open(title="Outage", severity=2, playbook=playbook)
    opened = incident.opened_at
    clock.move_to(opened + 10 * MIN)
    fire_due(incident, opened + 10 * MIN)  # a late worker: five minutes past due
    clock.move_to(opened + 11 * MIN)
    services.incident_acknowledge(incident=incident, actor=team["people"]["noa"])

    report = postmortem.report_build(incident)
    ack = next(t for t in report.targets if t.key == "acknowledge")
    assert ack.target == 5 * MIN
    assert ack.actual == MIN
    assert ack.outcome == "met"
    assert "first page" in ack.detail

    figures = trends(Incident.objects.filter(pk=incident.pk))["overall"]
    assert figures["tta"] == 1.0  # minutes from the first page, like the report
    assert figures["ack_rate"] == 100


def test_acknowledging_six_minutes_after_the_page_misses_it(
    team, make_playbook, broker_calls, clock
):
    playbook = make_playbook(delays=(300, 900, 900))
    incident = services.incident_open(title="Outage", severity=2, playbook=playbook)
    opened = incident.opened_at
    fire_due(incident, opened + 5 * MIN)
    clock.move_to(opened + 11 * MIN)
    services.incident_acknowledge(incident=incident, actor=team["people"]["noa"])
    ack = postmortem.report_build(incident).targets[0]
    assert ack.actual == 6 * MIN and ack.outcome == "missed"
    assert trends(Incident.objects.filter(pk=incident.pk))["overall"]["ack_rate"] == 0


def test_acknowledged_before_anyone_was_paged_it_is_measured_from_opening(
    team, make_playbook, broker_calls, clock
):
    incident = services.incident_open(title="Outage", severity=2, playbook=make_playbook())
    clock.move_to(incident.opened_at + 0.5 * MIN)
    services.incident_acknowledge(incident=incident, actor=team["people"]["noa"])
    fire_due(incident, incident.opened_at + 10 * MIN)  # cancelled: pages nobody
    incident.refresh_from_db()
    assert incident.first_paged_at is None
    ack = postmortem.report_build(incident).targets[0]
    assert ack.actual == 0.5 * MIN and ack.outcome == "met"
    assert "nobody was paged" in ack.detail


def test_an_unacknowledged_incident_is_pending_until_the_target_after_its_first_page(
    team, make_playbook, broker_calls, clock
):
    playbook = make_playbook(delays=(300, 900, 900))
    incident = services.incident_open(title="Outage", severity=2, playbook=playbook)
    opened = incident.opened_at
    fire_due(incident, opened + 8 * MIN)
    report = postmortem.report_build(incident, now=opened + 12 * MIN)
    assert report.targets[0].outcome == "pending"  # 4 minutes since the page
    report = postmortem.report_build(incident, now=opened + 14 * MIN)
    assert report.targets[0].outcome == "missed"


# ---------------------------------------------------------------- the e-mail's deadlines


def publish_statement(desk, incident):
    message = comms.message_draft(
        incident=incident,
        author=desk["eszter"],
        audience=desk["customers"],
        channel="website",
        body="We know, and we are on it.",
    )
    message = written_in_every_language(message)
    comms.message_submit(message=message, actor=desk["eszter"])
    comms.message_approve(message=message, approver=desk["lawyer"])
    return comms.message_publish(
        message=message, actor=desk["eszter"], where="https://status.example.test/1"
    )


@pytest.fixture
def desk(broker_calls, comms_desk, settings):
    settings.TIME_ZONE = "UTC"
    return comms_desk


def test_a_statement_made_before_the_page_is_reported_as_made(desk):
    incident = desk["incident"]  # SEV1, level 1 after 60 s, statement due in 60 min
    opened = incident.opened_at
    made_at = opened + dt.timedelta(seconds=30)
    with time_machine.travel(made_at, tick=False):
        publish_statement(desk, incident)
    fire_due(incident, opened + dt.timedelta(seconds=60))

    page = Notification.objects.get(incident=incident, reason="escalation")
    made = f"First public statement made at: {made_at:%Y-%m-%d %H:%M} UTC"
    assert made in page.body_text
    assert "First public statement due" not in page.body_text
    assert "First public statement made at" in page.body_html
    assert f"{made_at:%Y-%m-%d %H:%M} UTC" in page.body_html
    # The next level's line is the time of the timer the fire wrote.
    level2 = level(incident, 2)
    assert f"Next level fires at: {level2.due_at:%Y-%m-%d %H:%M:%S} UTC" in page.body_text
    # Delivered as written: what went out is the stored body, with its Message-ID.
    assert page.status == "sent"


def test_a_statement_not_made_is_reported_as_due_with_its_time(desk):
    incident = desk["incident"]
    opened = incident.opened_at
    fire_due(incident, opened + dt.timedelta(seconds=60))
    page = Notification.objects.get(incident=incident, reason="escalation")
    due = opened + dt.timedelta(minutes=incident.first_statement_minutes)
    assert f"First public statement due: {due:%Y-%m-%d %H:%M} UTC" in page.body_text
    assert "made at" not in page.body_text
    assert f"Open since: {opened:%Y-%m-%d %H:%M} UTC" in page.body_text


def test_a_statement_past_its_deadline_is_reported_as_overdue(desk):
    incident = desk["incident"]
    opened = incident.opened_at
    services.incident_contain(incident=incident, actor=None)
    services.incident_resolve(incident=incident, actor=None)
    late = opened + dt.timedelta(minutes=incident.first_statement_minutes + 5)
    with time_machine.travel(late, tick=False):
        incident = services.incident_reopen(incident=incident, actor=None)
    fire_due(incident, late + dt.timedelta(seconds=60))
    page = Notification.objects.get(incident=incident, reason="escalation")
    due = opened + dt.timedelta(minutes=incident.first_statement_minutes)
    assert f"First public statement overdue since: {due:%Y-%m-%d %H:%M} UTC" in page.body_text


def test_times_in_the_e_mail_name_the_desk_zone(desk, settings):
    settings.TIME_ZONE = "Europe/Budapest"
    incident = desk["incident"]
    fire_due(incident, incident.opened_at + dt.timedelta(seconds=60))
    page = Notification.objects.get(incident=incident, reason="escalation")
    local = timezone.localtime(incident.opened_at, timezone.get_default_timezone())
    assert f"Open since: {local:%Y-%m-%d %H:%M} {local.tzname()}" in page.body_text
    assert " UTC" not in page.body_text.split("Acknowledge")[0]


def test_the_timeline_records_the_first_page(team, make_playbook, broker_calls):
    playbook = make_playbook(page_at_once_max_severity=1)
    incident = services.incident_open(title="Outage", severity=1, playbook=playbook)
    fire_due(incident, incident.opened_at)
    entry = TimelineEntry.objects.get(incident=incident, kind="escalation")
    incident.refresh_from_db()
    assert entry.at == incident.first_paged_at
    assert entry.data["lateness_ms"] == 0
