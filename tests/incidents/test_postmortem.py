"""Post-mortems: every figure computed from hand-built records, the review cycle, action items."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from incidents import comms, escalation, notify, postmortem
from incidents import services as incident_services
from incidents.models import (
    ActionItem,
    AppendOnlyError,
    Incident,
    Notification,
    PostMortem,
    PostMortemRevision,
    Timer,
)
from playbooks.models import EscalationLevel, Playbook
from tests.incidents.conftest import written_in_every_language  # noqa: E402

pytestmark = pytest.mark.django_db

MIN = dt.timedelta(minutes=1)


@pytest.fixture
def desk(broker_calls, comms_desk):
    return comms_desk


@pytest.fixture
def clock():
    """A frozen clock that starts a minute from now; tests move it forward."""
    start = timezone.now().replace(microsecond=0) + MIN
    with time_machine.travel(start, tick=False) as traveller:
        traveller.start = start
        yield traveller


def at(clock, minutes: float) -> None:
    clock.move_to(clock.start + dt.timedelta(minutes=minutes))


def fire_due(incident: Incident) -> None:
    for timer in Timer.objects.filter(
        incident=incident, state="pending", due_at__lte=timezone.now()
    ):
        escalation.timer_fire(timer_id=timer.pk)


def go_out(desk, incident, *, body, channel="website", corrects=None):
    """Draft, review, approve and publish one message: the one-voice path."""
    if corrects is not None:
        message = comms.message_correct(original=corrects, author=desk["eszter"], body=body)
    else:
        message = comms.message_draft(
            incident=incident,
            author=desk["eszter"],
            audience=desk["customers"],
            channel=channel,
            body=body,
        )
    message = written_in_every_language(message)
    comms.message_submit(message=message, actor=desk["eszter"])
    comms.message_approve(message=message, approver=desk["lawyer"])
    return comms.message_publish(
        message=message, actor=desk["eszter"], where="https://status.example.test/1"
    )


def open_incident(desk, **kwargs) -> Incident:
    return incident_services.incident_open(
        title="Ügyféladatok kiszivárogtak",
        severity=1,
        playbook=desk["incident"].playbook,
        **kwargs,
    )


def target(report, key):
    return next(t for t in report.targets if t.key == key)


def milestone(report, key):
    return next(m for m in report.milestones if m.key == key)


def test_a_late_crisis_has_every_figure_measured_against_its_targets(desk, clock):
    incident = open_incident(desk)
    at(clock, 1.5)
    fire_due(incident)  # level 1 (60 s) pages the crisis manager
    at(clock, 5)
    incident_services.incident_acknowledge(incident=incident, actor=desk["noa"], via="test")
    at(clock, 75)
    first = go_out(desk, incident, body="We are investigating a data exposure.")
    at(clock, 80)
    go_out(desk, incident, body="Correction: 1,200 customers, not 12,000.", corrects=first)
    at(clock, 120)
    incident_services.incident_contain(incident=incident, actor=desk["noa"])
    at(clock, 180)
    incident_services.incident_resolve(incident=incident, actor=desk["noa"])

    report = postmortem.report_build(incident)

    assert milestone(report, "acknowledged_at").since_opened == 5 * MIN
    assert milestone(report, "first_statement_at").since_opened == 75 * MIN
    assert milestone(report, "first_statement_at").since_previous == 70 * MIN
    assert milestone(report, "contained_at").since_opened == 120 * MIN
    assert milestone(report, "resolved_at").since_opened == 180 * MIN
    assert milestone(report, "closed_at").at is None
    assert report.duration == 180 * MIN

    ack = target(report, "acknowledge")
    # Measured from the first page (1.5 min), not from opening: 3.5 min against 1 min.
    assert (ack.target, ack.actual, ack.outcome) == (60 * MIN / 60, 3.5 * MIN, "missed")
    statement = target(report, "first_statement")
    assert (statement.target, statement.actual, statement.outcome) == (
        60 * MIN,
        75 * MIN,
        "missed",
    )
    # Customers are owed an update every 60 min: 75 → 80 is fine, 80 → resolved (180) is not.
    cadence = target(report, "cadence:customers")
    assert (cadence.target, cadence.actual, cadence.outcome) == (60 * MIN, 100 * MIN, "missed")

    [page] = report.escalations
    assert (page.level, page.round, page.unstaffed) == (1, 1, False)
    assert page.paged == "נועה לוי"
    [acknowledgement] = report.acknowledgements
    assert acknowledgement["by"] == "נועה לוי"
    assert acknowledgement["after_start"] == 5 * MIN
    assert acknowledgement["after_first_page"] == dt.timedelta(minutes=3.5)

    assert report.message_count == 2 and report.correction_count == 1
    [group] = report.messages
    assert group.audience == "Customers" and group.channel == "website"
    [row] = group.rows
    assert row.message.pk == first.pk
    assert [c.body for c in row.corrections] == ["Correction: 1,200 customers, not 12,000."]

    # Steps due at 0 and 30 min, never done: both open and late.
    assert report.task_counts == {
        "done_on_time": 0,
        "done_late": 0,
        "skipped": 0,
        "open": 2,
        "open_late": 2,
    }
    assert {a.role.slug for a in report.assignments} >= {"crisis-manager", "communications-lead"}
    # Resolving started the post-mortem, and the chart holds every kind of mark.
    assert report.postmortem is not None and report.postmortem.status == "draft"
    kinds = {m.kind for m in report.chart.marks}
    assert {"opened_at", "resolved_at", "escalation", "message", "correction"} <= kinds
    assert all(report.chart.left <= m.x <= report.chart.width for m in report.chart.marks)


def test_deadlines_kept_are_met_and_an_unstaffed_level_is_shown(desk, clock):
    playbook = desk["incident"].playbook
    # Level 2 pages a role nobody is on call for.
    level2 = EscalationLevel.objects.get(playbook=playbook, position=2)
    level2.role.rotations.all().delete()
    incident = open_incident(desk)
    at(clock, 1.1)
    fire_due(incident)
    at(clock, 3.1)
    fire_due(incident)  # level 2: unstaffed, level 3 is paged at once
    at(clock, 4)
    incident_services.incident_acknowledge(incident=incident, actor=desk["exec"], via="test")
    at(clock, 20)
    go_out(desk, incident, body="Our statement.")
    at(clock, 50)
    incident_services.incident_resolve(incident=incident, actor=desk["noa"])

    report = postmortem.report_build(incident)
    assert [(e.level, e.unstaffed) for e in report.escalations] == [
        (1, False),
        (2, True),
        (3, False),
    ]
    assert target(report, "acknowledge").outcome == "missed"  # 4 min against 60 s
    assert target(report, "first_statement").outcome == "met"
    assert target(report, "cadence:customers").outcome == "met"  # 20 → 50 within 60 min
    assert {m.kind for m in report.chart.marks} >= {"unstaffed"}


def test_an_incident_never_acknowledged_says_so(desk, clock):
    incident = open_incident(desk)
    at(clock, 30)
    incident_services.incident_resolve(incident=incident, actor=desk["noa"])
    report = postmortem.report_build(incident)
    assert milestone(report, "acknowledged_at").at is None
    ack = target(report, "acknowledge")
    assert ack.outcome == "missed" and ack.actual is None and "Never" in ack.detail
    assert report.acknowledgements == []


def test_a_reopened_incident_counts_its_rounds(desk, clock):
    incident = open_incident(desk)
    at(clock, 0.5)
    incident_services.incident_acknowledge(incident=incident, actor=desk["noa"], via="test")
    at(clock, 10)
    incident_services.incident_resolve(incident=incident, actor=desk["noa"])
    at(clock, 60)
    incident_services.incident_reopen(incident=incident, actor=desk["noa"], reason="It is back.")
    at(clock, 61.5)
    fire_due(incident)  # round 2, level 1
    at(clock, 63)
    incident_services.incident_acknowledge(incident=incident, actor=desk["eleni"], via="test")
    at(clock, 90)
    incident_services.incident_resolve(incident=incident, actor=desk["noa"])

    report = postmortem.report_build(incident)
    assert report.reopen_count == 1
    assert [(a["round"], a["by"], a["after_start"]) for a in report.acknowledgements] == [
        (1, "נועה לוי", MIN / 2),
        (2, "Ελένη Παπαδοπούλου", 3 * MIN),
    ]
    assert [(e.round, e.level) for e in report.escalations] == [(2, 1)]
    assert target(report, "acknowledge").outcome == "met"  # the first acknowledgement: 30 s
    assert milestone(report, "resolved_at").since_opened == 90 * MIN
    assert PostMortem.objects.filter(incident=incident).count() == 1


def test_the_narrative_is_reviewed_published_frozen_and_revised(desk, clock):
    incident = open_incident(desk)
    at(clock, 30)
    incident_services.incident_resolve(incident=incident, actor=desk["noa"])
    pm = incident.postmortem
    writer = desk["eszter"]
    with pytest.raises(ValidationError, match="summary"):
        postmortem.postmortem_submit(postmortem=pm, actor=writer)
    with pytest.raises(ValidationError):
        postmortem.postmortem_edit(postmortem=pm, actor=writer, blame="someone")
    pm = postmortem.postmortem_edit(
        postmortem=pm, actor=writer, summary="Card data exposed.", lessons="Rotate keys."
    )
    pm = postmortem.postmortem_submit(postmortem=pm, actor=writer)
    assert pm.status == "in_review"
    with pytest.raises(PermissionDenied, match="permission"):
        postmortem.postmortem_publish(postmortem=pm, actor=writer)
    writer.user_permissions.add(Permission.objects.get(codename="publish_postmortem"))
    writer = type(writer).objects.get(pk=writer.pk)  # fresh permission cache
    revision = postmortem.postmortem_publish(postmortem=pm, actor=writer)
    assert revision.number == 1
    assert "Card data exposed." in revision.markdown and incident.reference in revision.markdown

    pm.refresh_from_db()
    pm.summary = "Quietly rewritten."
    with pytest.raises(AppendOnlyError):
        pm.save()
    with pytest.raises(AppendOnlyError):
        revision.delete()
    with pytest.raises(AppendOnlyError):
        PostMortemRevision.objects.filter(pk=revision.pk).update(markdown="")

    pm.refresh_from_db()
    pm = postmortem.postmortem_edit(
        postmortem=pm, actor=writer, summary="Card data exposed; fixed."
    )
    assert (pm.status, pm.revision) == ("draft", 2)
    revision.refresh_from_db()
    assert revision.narrative["summary"] == "Card data exposed."


def test_an_action_item_revising_a_playbook_links_the_version_it_produced(desk, clock):
    incident = open_incident(desk)
    at(clock, 30)
    incident_services.incident_resolve(incident=incident, actor=desk["noa"])
    playbook = incident.playbook
    item = ActionItem.objects.create(
        postmortem=incident.postmortem,
        title="Add a step: freeze card data exports",
        kind=ActionItem.Kind.PREVENTIVE,
        owner=desk["eleni"],
        playbook=playbook,
    )
    item = postmortem.action_item_revise_playbook(item=item, actor=desk["noa"])
    draft = item.produced_version
    assert (draft.key, draft.version, draft.status) == (playbook.key, playbook.version + 1, "draft")
    assert item.status == "in_progress"
    # Asking twice does not make a second version.
    again = postmortem.action_item_revise_playbook(item=item, actor=desk["noa"])
    assert again.produced_version_id == draft.pk
    assert Playbook.objects.filter(key=playbook.key).count() == 2
    # The running incident's version is untouched.
    assert incident.playbook.status == "published"

    no_playbook = ActionItem.objects.create(
        postmortem=incident.postmortem, title="Train", kind="corrective"
    )
    with pytest.raises(ValidationError, match="playbook"):
        postmortem.action_item_revise_playbook(item=no_playbook, actor=desk["noa"])


def test_owners_of_overdue_action_items_are_reminded_once_a_day(desk, clock, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    incident = open_incident(desk)
    incident_services.incident_resolve(incident=incident, actor=desk["noa"])
    today = timezone.localdate()
    overdue = ActionItem.objects.create(
        postmortem=incident.postmortem,
        title="Ελέγξτε τα αρχεία καταγραφής",
        kind="detective",
        owner=desk["eleni"],
        due_on=today - dt.timedelta(days=2),
    )
    ActionItem.objects.create(  # due later: no reminder
        postmortem=incident.postmortem,
        title="Later",
        kind="preventive",
        owner=desk["eleni"],
        due_on=today + dt.timedelta(days=2),
    )
    ActionItem.objects.create(  # overdue but done: no reminder
        postmortem=incident.postmortem,
        title="Done already",
        kind="preventive",
        owner=desk["eleni"],
        due_on=today - dt.timedelta(days=5),
        status="done",
    )
    assert postmortem.action_item_reminders_send(today=today) == 1
    assert postmortem.action_item_reminders_send(today=today) == 0  # once a day
    [note] = Notification.objects.filter(reason="action_overdue")
    assert note.to_email == "eleni@example.test"
    assert notify.notification_deliver(notification_id=note.pk).endswith(": sent")
    [email] = mail.outbox
    assert "Ελέγξτε τα αρχεία καταγραφής" in email.subject
    assert incident.reference in email.subject
    assert f"/incidents/{incident.reference}/postmortem/" in email.body
    overdue.refresh_from_db()
    assert overdue.last_reminded_on == today
    assert postmortem.action_item_reminders_send(today=today + dt.timedelta(days=1)) == 1


def test_building_the_report_takes_the_same_queries_for_a_short_and_a_long_record(desk, clock):
    def record(n):
        incident = open_incident(desk)
        for i in range(n):
            at(clock, i + 1)
            go_out(desk, incident, body=f"Update {i}.")
            incident_services.note_add(incident=incident, actor=desk["noa"], text=f"note {i}")
        incident_services.incident_resolve(incident=incident, actor=desk["noa"])
        return incident

    small, large = record(2), record(12)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        postmortem.report_build(small)
    with CaptureQueriesContext(connection) as many:
        report = postmortem.report_build(large)
    assert report.message_count == 12
    assert len(many.captured_queries) == len(few.captured_queries)


def test_trends_keep_drills_apart_and_take_medians_per_month(db):
    base = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)

    def made(minutes_to_ack, minutes_to_statement, minutes_to_resolve, *, month=0, drill=False):
        incident = incident_services.incident_open(title="x", drill=drill)
        opened = base + dt.timedelta(days=31 * month)
        Incident.objects.filter(pk=incident.pk).update(
            opened_at=opened,
            acknowledged_at=opened + dt.timedelta(minutes=minutes_to_ack),
            first_statement_at=opened + dt.timedelta(minutes=minutes_to_statement)
            if minutes_to_statement is not None
            else None,
            resolved_at=opened + dt.timedelta(minutes=minutes_to_resolve),
            status="resolved",
            escalation_policy={"levels": [{"delay_seconds": 300}]},
            category="data_breach" if month == 0 else "service_outage",
        )

    made(2, 30, 100)
    made(10, 90, 200)
    made(6, None, 300)
    made(1, 10, 20, month=1)
    made(60, 600, 6000, drill=True)
    figures = postmortem.trends(Incident.objects.all())
    months = dict(figures["months"])
    assert list(months) == ["2026-03", "2026-04"]
    march = months["2026-03"]
    assert (march["count"], march["tta"], march["ttfs"], march["ttr"]) == (3, 6.0, 60.0, 200.0)
    assert (march["ack_rate"], march["ack_n"]) == (33, 3)  # only the 2-minute acknowledgement
    assert (march["fs_rate"], march["fs_n"]) == (33, 3)  # only the 30-minute statement
    assert figures["overall"]["count"] == 4
    assert figures["drills"]["count"] == 1 and figures["drills"]["tta"] == 60.0
    assert dict(figures["by_category"]) == {"Data breach": 3, "Service outage": 1}


def test_an_incident_resolved_or_contained_without_acknowledgement_counts_as_never_acknowledged(
    desk, clock
):
    """One definition of "acknowledged": the report and the trends agree (issue 9)."""
    acked = open_incident(desk)
    at(clock, 3)
    incident_services.incident_acknowledge(incident=acked, actor=desk["noa"])
    resolved = open_incident(desk)
    contained = open_incident(desk)
    at(clock, 30)
    incident_services.incident_resolve(incident=resolved, actor=desk["noa"])
    incident_services.incident_contain(incident=contained, actor=desk["noa"])
    incident_services.incident_resolve(incident=acked, actor=desk["noa"])
    for incident in (resolved, contained):
        incident.refresh_from_db()
        assert incident.acknowledged_at is None and incident.acknowledged_by is None
        assert milestone(postmortem.report_build(incident), "acknowledged_at").at is None
    acked.refresh_from_db()
    assert milestone(postmortem.report_build(acked), "acknowledged_at").at == acked.acknowledged_at

    figures = postmortem.trends(
        Incident.objects.filter(pk__in=[acked.pk, resolved.pk, contained.pk])
    )
    overall = figures["overall"]
    # Only the incident someone acknowledged, 3 minutes after opening, counts.
    assert overall["count"] == 3
    assert overall["ack_n"] == 1 and overall["tta"] == 3.0
