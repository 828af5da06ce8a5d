"""The timer engine, called directly (no broker): claims, levels, acknowledgement, repeats."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from incidents import escalation, services
from incidents.models import Incident, Notification, Task, TimelineEntry, Timer
from playbooks.models import RotationMember

pytestmark = pytest.mark.django_db


def fire_due(incident, at):
    """Fire every pending timer of the incident that is due at `at`, like the worker would."""
    results = []
    with time_machine.travel(at, tick=False):
        for timer in Timer.objects.filter(
            incident=incident, state="pending", due_at__lte=at
        ).order_by("due_at"):
            results.append(escalation.timer_fire(timer_id=timer.pk))
    return results


def escalations(incident):
    return list(
        Timer.objects.filter(incident=incident, kind="escalation").order_by(
            "round", "cycle", "level"
        )
    )


def test_it_opens_an_incident_with_tasks_roles_and_timers(team, make_playbook, broker_calls):
    playbook = make_playbook()
    incident = services.incident_open(
        title="Ügyféladatok kiszivárogtak", severity=1, playbook=playbook
    )

    assert re.fullmatch(rf"INC-{timezone.now().year}-\d{{4}}", incident.reference)
    assert incident.status == Incident.Status.OPEN
    assert incident.escalation_policy["levels"][0] == {
        "delay_seconds": 60,
        "target": "role",
        "role_id": team["roles"]["crisis-manager"].pk,
    }
    tasks = list(incident.tasks.order_by("position"))
    assert [t.assignee.username for t in tasks] == ["noa", "eszter"]
    assert tasks[1].due_at == incident.opened_at + dt.timedelta(minutes=30)
    holders = {a.role.slug: a.user.username for a in incident.assignments.all()}
    assert holders["crisis-manager"] == "noa" and holders["executive-sponsor"] == "exec"

    kinds = sorted(
        Timer.objects.filter(incident=incident)
        .exclude(kind="roll_call")  # one per role holder: tests/incidents/test_rollcall.py
        .values_list("kind", flat=True)
    )
    assert kinds == ["escalation", "first_statement", "statement_reminder", "task_due"]
    level1 = escalations(incident)[0]
    assert level1.due_at == incident.opened_at + dt.timedelta(seconds=60)
    assert incident.timeline.filter(kind="opened").count() == 1


def test_it_numbers_incidents_per_year_without_gaps(team, make_playbook, broker_calls):
    playbook = make_playbook()
    refs = [services.incident_open(title=f"t{i}", playbook=playbook).reference for i in range(3)]
    numbers = [int(r.rsplit("-", 1)[1]) for r in refs]
    assert numbers == [numbers[0], numbers[0] + 1, numbers[0] + 2]


def test_it_refuses_a_draft_playbook_and_bad_input(team, make_playbook):
    from django.core.exceptions import ValidationError

    from tests.factories import PlaybookFactory

    with pytest.raises(ValidationError) as err:
        services.incident_open(title=" ", severity=9, playbook=PlaybookFactory())
    assert set(err.value.message_dict) == {"title", "severity", "playbook"}
    assert Incident.objects.count() == 0


def test_it_pages_level_after_level_until_acknowledged(team, make_playbook, broker_calls):
    incident = services.incident_open(title="Outage", playbook=make_playbook())
    t0 = incident.opened_at

    fire_due(incident, t0 + dt.timedelta(seconds=60))
    n1 = Notification.objects.get(incident=incident, reason="escalation")
    assert n1.recipient.username == "noa"
    level2 = escalations(incident)[1]
    assert (level2.level, level2.state) == (2, "pending")
    assert level2.due_at == t0 + dt.timedelta(seconds=60 + 120)

    fire_due(incident, t0 + dt.timedelta(seconds=180))
    assert Notification.objects.filter(
        incident=incident, reason="escalation", recipient__username="eleni"
    ).exists()

    services.incident_acknowledge(incident=incident, actor=team["people"]["eleni"])
    level3 = escalations(incident)[2]
    assert level3.state == "cancelled"
    assert fire_due(incident, t0 + dt.timedelta(seconds=400)) == []
    assert escalation.timer_fire(timer_id=level3.pk).endswith("not pending")
    assert Notification.objects.filter(incident=incident, reason="escalation").count() == 2
    incident.refresh_from_db()
    assert incident.acknowledged_by.username == "eleni"


def test_it_claims_a_timer_once_however_often_it_is_fired(team, make_playbook, broker_calls):
    incident = services.incident_open(title="Outage", playbook=make_playbook())
    level1 = escalations(incident)[0]
    with time_machine.travel(level1.due_at + dt.timedelta(seconds=1), tick=False):
        first = escalation.timer_fire(timer_id=level1.pk)
        second = escalation.timer_fire(timer_id=level1.pk)
    assert "paged 1" in first and second.endswith("not pending")
    assert Notification.objects.filter(incident=incident, reason="escalation").count() == 1
    assert Timer.objects.filter(incident=incident, kind="escalation", level=2).count() == 1


def test_it_does_not_fire_a_timer_before_it_is_due(team, make_playbook, broker_calls):
    incident = services.incident_open(title="Outage", playbook=make_playbook())
    assert escalation.timer_fire(timer_id=escalations(incident)[0].pk).endswith("not due yet")
    assert Notification.objects.filter(reason="escalation").count() == 0


def test_it_moves_on_at_once_when_nobody_is_on_call(team, make_playbook, broker_calls):
    RotationMember.objects.filter(user=team["people"]["noa"]).delete()
    incident = services.incident_open(title="Outage", playbook=make_playbook())
    fire_due(incident, incident.opened_at + dt.timedelta(seconds=60))

    kinds = list(incident.timeline.values_list("kind", flat=True))
    assert "unstaffed" in kinds and "escalation" in kinds
    n = Notification.objects.get(incident=incident, reason="escalation")
    assert n.recipient.username == "eleni"  # level 2, paged at level 1's time
    assert escalations(incident)[-1].level == 3


def test_it_repeats_the_policy_then_records_that_it_is_exhausted(team, make_playbook, broker_calls):
    incident = services.incident_open(
        title="Outage",
        playbook=make_playbook(
            delays=(10, 10), targets=("crisis-manager", "technical-lead"), repeat=1
        ),
    )
    t = incident.opened_at
    for seconds in (10, 20, 30, 40):
        fire_due(incident, t + dt.timedelta(seconds=seconds))
    steps = [(x.cycle, x.level, x.state) for x in escalations(incident)]
    assert steps == [(0, 1, "fired"), (0, 2, "fired"), (1, 1, "fired"), (1, 2, "fired")]
    assert Notification.objects.filter(incident=incident, reason="escalation").count() == 4
    assert incident.timeline.filter(kind="exhausted").count() == 1


def test_it_starts_a_fresh_escalation_when_reopened(team, make_playbook, broker_calls):
    incident = services.incident_open(title="Outage", playbook=make_playbook())
    services.incident_resolve(incident=incident, actor=team["people"]["noa"])
    assert not Timer.objects.filter(incident=incident, state="pending").exists()

    services.incident_reopen(incident=incident, actor=team["people"]["noa"], reason="back again")
    incident.refresh_from_db()
    assert incident.status == "open" and incident.escalation_round == 2
    new = Timer.objects.get(incident=incident, state="pending", kind="escalation")
    assert (new.round, new.level) == (2, 1)
    fire_due(incident, new.due_at)
    assert (
        Notification.objects.filter(incident=incident, dedupe_key__contains=":2:0:1:").count() == 1
    )


def test_it_ignores_an_old_round_timer_after_a_reopen(team, make_playbook, broker_calls):
    incident = services.incident_open(title="Outage", playbook=make_playbook())
    old = escalations(incident)[0]
    services.incident_resolve(incident=incident, actor=None)
    services.incident_reopen(incident=incident, actor=None)
    # Even if an old-round timer were pending (a bug, a restore), it must not page.
    Timer.objects.filter(pk=old.pk).update(state="pending", fired_at=None)
    fire_due(incident, old.due_at)
    assert Notification.objects.filter(dedupe_key__contains=":1:0:1:").count() == 0


def test_it_reminds_then_escalates_a_missing_first_statement(team, make_playbook, broker_calls):
    incident = services.incident_open(title="Breach", playbook=make_playbook())
    services.incident_acknowledge(incident=incident, actor=team["people"]["noa"])
    fire_due(incident, incident.opened_at + dt.timedelta(minutes=45))
    reminder = Notification.objects.get(reason="statement_reminder")
    assert reminder.recipient.username == "eszter"
    fire_due(incident, incident.opened_at + dt.timedelta(minutes=60))
    told = set(
        Notification.objects.filter(reason="first_statement").values_list(
            "recipient__username", flat=True
        )
    )
    assert told == {"noa", "eszter"}
    assert incident.timeline.filter(kind="deadline", data__met=False).count() == 1


def test_it_tells_the_assignee_when_a_task_is_overdue_and_not_after_it_is_done(
    team, make_playbook, broker_calls
):
    incident = services.incident_open(title="Breach", playbook=make_playbook())
    task = incident.tasks.get(position=2)
    services.task_complete(task=task, actor=team["people"]["eszter"])
    fire_due(incident, task.due_at)
    assert not Notification.objects.filter(reason="task_due").exists()
    assert Task.objects.get(pk=task.pk).status == "done"


def test_it_queues_near_timers_on_commit_and_the_sweep_only_what_is_due_soon(
    team, make_playbook, broker_calls, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        incident = services.incident_open(title="Outage", playbook=make_playbook())
    fired = [c for c in broker_calls if c[0] == "fire"]
    level1 = escalations(incident)[0]
    # Only level 1 (60 s) is inside the horizon; the 45- and 60-minute deadlines are not.
    assert [c[1] for c in fired] == [level1.pk]

    broker_calls.clear()
    escalation.sweep()
    assert broker_calls == []  # already sent, not yet overdue

    # The message was lost (worker killed): once overdue, the sweep sends it again.
    later = level1.due_at + escalation.REENQUEUE_AFTER + dt.timedelta(seconds=1)
    with time_machine.travel(later, tick=False):
        escalation.sweep()
    assert [c[1] for c in broker_calls if c[0] == "fire"] == [level1.pk]


def test_it_writes_an_escalation_email_with_everything_on_call_needs(
    team, make_playbook, broker_calls, settings
):
    settings.SITE_URL = "https://desk.example.test"
    incident = services.incident_open(
        title="Διαρροή δεδομένων: εκτέθηκαν αρχεία πελατών",
        severity=1,
        playbook=make_playbook(),
        drill=True,
    )
    fire_due(incident, incident.opened_at + dt.timedelta(seconds=60))
    fire_due(incident, incident.opened_at + dt.timedelta(seconds=180))
    n = Notification.objects.get(recipient__username="eleni", reason="escalation")
    title = "Διαρροή δεδομένων: εκτέθηκαν αρχεία πελατών"
    expected = f"[DRILL] [SEV1] {incident.reference} {title} - level 2, not acknowledged"
    assert n.subject == expected
    assert "נועה לוי" in n.body_text  # paged before
    assert "Next level fires at" in n.body_text
    assert "First public statement due" in n.body_text
    assert "https://desk.example.test/incidents/ack/" in n.body_text
    assert 'dir="ltr"' in n.body_html and "Acknowledge" in n.body_html

    assert escalation.timer_fire  # delivered inline after commit by timer_fire:
    sent = [m for m in mail.outbox if m.to == ["eleni@example.test"]]
    assert len(sent) == 1
    assert sent[0].extra_headers["Message-ID"] == n.message_id
    assert Notification.objects.get(pk=n.pk).status == "sent"


def test_it_keeps_the_timeline_append_only(team, make_playbook, broker_calls):
    from incidents.models import AppendOnlyError

    incident = services.incident_open(title="Outage", playbook=make_playbook())
    entry = incident.timeline.first()
    entry.text = "rewritten"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        TimelineEntry.objects.filter(incident=incident).update(text="x")
    with pytest.raises(AppendOnlyError):
        TimelineEntry.objects.filter(incident=incident).delete()
    correction = services.note_add(
        incident=incident, actor=None, text="Opened at 09:10, not 09:00.", corrects=entry
    )
    assert correction.corrects_id == entry.pk and correction.kind == "correction"


def test_the_database_refuses_to_rewrite_the_timeline_on_postgresql(
    team, make_playbook, broker_calls
):
    from django.db import connection, transaction
    from django.db.utils import IntegrityError, InternalError

    if connection.vendor != "postgresql":
        pytest.skip("the trigger exists on PostgreSQL only; the model layer guards SQLite")
    incident = services.incident_open(title="Outage", playbook=make_playbook())
    entry = incident.timeline.first()
    for sql in (
        "UPDATE incidents_timelineentry SET text = 'x' WHERE id = %s",
        "DELETE FROM incidents_timelineentry WHERE id = %s",
    ):
        with (
            pytest.raises((IntegrityError, InternalError)),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [entry.pk])
    assert TimelineEntry.objects.get(pk=entry.pk).text == entry.text


def test_it_reminds_the_communications_lead_on_each_audience_cadence(
    team, make_playbook, broker_calls
):
    from playbooks.models import UpdateCadence
    from tests.factories import StakeholderGroupFactory

    playbook = make_playbook()
    customers = StakeholderGroupFactory(slug="customers", name="Customers")
    UpdateCadence.objects.create(playbook=playbook, audience=customers, every_minutes=30)
    incident = services.incident_open(title="Outage", playbook=playbook)
    services.incident_acknowledge(incident=incident, actor=team["people"]["noa"])

    fire_due(incident, incident.opened_at + dt.timedelta(minutes=30))
    fire_due(incident, incident.opened_at + dt.timedelta(minutes=60))
    reminders = Notification.objects.filter(reason="update_cadence").order_by("created_at")
    assert [n.recipient.username for n in reminders] == ["eszter", "eszter"]
    assert "Update due for Customers" in reminders[0].subject
    pending = Timer.objects.get(incident=incident, kind="update_cadence", state="pending")
    assert pending.due_at == incident.opened_at + dt.timedelta(minutes=90)

    services.incident_resolve(incident=incident, actor=None)
    assert not Timer.objects.filter(incident=incident, state="pending").exists()
