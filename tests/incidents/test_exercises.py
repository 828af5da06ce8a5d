"""Exercises: a script of injects fired through the timer engine, under time-machine.

Offsets run from the start, a pause shifts what is still to come, firing early fires
once, ending cancels what is pending, and each inject reaches each of its participants
by exactly one e-mail, and nobody else.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from incidents import escalation, exercises, notify
from incidents.exercises import InjectDraft
from incidents.models import (
    Exercise,
    Incident,
    Inject,
    Notification,
    TimelineEntry,
    Timer,
)
from playbooks.models import Playbook
from playbooks.playbook_io import PlaybookImportError
from playbooks.seed import injects_read, starter_injects

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


@pytest.fixture
def planned(team, make_playbook, broker_calls):
    """An exercise of a playbook with three injects: Noa plays crisis manager and Eszter
    communications lead; Eleni and Dana are on call but take no part."""
    playbook = make_playbook(key="service-outage")
    Playbook.objects.filter(pk=playbook.pk).update(last_reviewed_on=dt.date(2025, 1, 6))
    roles, people = team["roles"], team["people"]
    exercise = exercises.exercise_plan(
        playbook=playbook,
        title="Rehearsal: checkout down",
        brief="The payment page fails during the sale.",
        facilitator=people["exec"],
        participants=[
            (people["noa"], roles["crisis-manager"]),
            (people["eszter"], roles["communications-lead"]),
        ],
        injects=[
            InjectDraft(0, "Checkout fails", "Every card payment fails."),
            InjectDraft(
                10 * 60, "A journalist calls", "Comment in 40 minutes?",
                roles=[roles["communications-lead"]],
            ),
            InjectDraft(30 * 60, "The CEO asks", "Two-minute briefing, please."),
        ],
    )  # fmt: skip
    return {"exercise": exercise, "playbook": playbook, **people, "roles": roles}


def run_until(moment: dt.datetime) -> list[str]:
    """Fire every timer due by ``moment``, as the worker would, in due order."""
    outcomes = []
    with time_machine.travel(moment, tick=False):
        for timer in Timer.objects.filter(state="pending", due_at__lte=moment).order_by("due_at"):
            outcomes.append(escalation.timer_fire(timer_id=timer.pk))
    return outcomes


def delivered() -> list:
    """Deliver every e-mail still queued through the real delivery path; everything that
    went out since the last call (a fire delivers its own at once)."""
    for pk in Notification.objects.filter(status="queued").values_list("pk", flat=True):
        notify.notification_deliver(notification_id=pk, now=timezone.now() + dt.timedelta(days=1))
    sent = list(mail.outbox)
    mail.outbox.clear()
    return sent


def inject_mails(sent) -> list[tuple[str, str]]:
    return sorted(
        (m.to[0], m.subject) for m in sent if m.extra_headers["X-CrisisDesk-Reason"] == "inject"
    )


def started(planned) -> Exercise:
    with time_machine.travel(T0, tick=False):
        return exercises.exercise_start(exercise=planned["exercise"], actor=planned["exec"])


def test_it_opens_a_drill_with_the_participants_in_their_roles(planned):
    exercise = started(planned)
    incident = exercise.incident
    assert incident.drill and incident.playbook == planned["playbook"]
    held = {(a.role.slug, a.user.username) for a in incident.assignments.all()}
    # The participants, and not the real on-call technical lead or executive.
    assert held == {("crisis-manager", "noa"), ("communications-lead", "eszter")}
    due = sorted(Timer.objects.filter(kind="inject").values_list("due_at", flat=True))
    assert due == [T0, T0 + 10 * MIN, T0 + 30 * MIN]


def test_it_fires_each_inject_at_its_offset_once_to_whom_it_reaches(planned):
    exercise = started(planned)
    delivered()  # the activation e-mails of the two participants
    run_until(T0 + 9 * MIN)
    assert [i.title for i in Inject.objects.filter(fired_at__isnull=False)] == ["Checkout fails"]
    run_until(T0 + 10 * MIN)
    run_until(T0 + 10 * MIN)  # the worker runs twice: nothing doubles
    sent = inject_mails(delivered())
    subjects = [s for _to, s in sent]
    assert all(s.startswith("[DRILL] ") for s in subjects)
    assert [to for to, _s in sent] == sorted(
        ["noa@example.test", "eszter@example.test", "eszter@example.test"]
    )
    # The journalist reached only the communications lead.
    assert [to for to, s in sent if "journalist" in s] == ["eszter@example.test"]
    entries = TimelineEntry.objects.filter(incident=exercise.incident, kind="inject")
    assert [e.text.split(".")[0] for e in entries] == [
        "Inject: Checkout fails",
        "Inject: A journalist calls",
    ]
    assert Notification.objects.filter(reason="inject").count() == 3


def test_a_pause_shifts_what_is_still_to_come(planned):
    exercise = started(planned)
    run_until(T0 + 5 * MIN)
    with time_machine.travel(T0 + 5 * MIN, tick=False):
        exercises.exercise_pause(exercise=exercise, actor=planned["exec"])
    assert not Timer.objects.filter(kind="inject", state="pending").exists()
    run_until(T0 + 12 * MIN)  # during the pause: the journalist waits
    assert Inject.objects.filter(fired_at__isnull=False).count() == 1
    with time_machine.travel(T0 + 15 * MIN, tick=False):
        exercise = exercises.exercise_resume(exercise=exercise, actor=planned["exec"])
        assert exercise.elapsed() == 5 * MIN
    assert exercise.paused_seconds == 600
    pending = sorted(
        Timer.objects.filter(kind="inject", state="pending").values_list("due_at", flat=True)
    )
    assert pending == [T0 + 20 * MIN, T0 + 40 * MIN]
    run_until(T0 + 19 * MIN)
    assert Inject.objects.filter(fired_at__isnull=False).count() == 1
    run_until(T0 + 20 * MIN)
    journalist = Inject.objects.get(position=2)
    assert journalist.fired_at == T0 + 20 * MIN


def test_firing_early_fires_once(planned):
    exercise = started(planned)
    run_until(T0)
    delivered()
    ceo = Inject.objects.get(position=3)
    with time_machine.travel(T0 + 2 * MIN, tick=False):
        assert exercises.exercise_fire_early(exercise=exercise, inject=ceo, actor=planned["exec"])
        assert not exercises.exercise_fire_early(
            exercise=exercise, inject=ceo, actor=planned["exec"]
        )
    ceo.refresh_from_db()
    assert ceo.fired_at == T0 + 2 * MIN
    run_until(T0 + 31 * MIN)  # its old time: nothing more
    sent = inject_mails(delivered())
    assert [to for to, s in sent if "CEO" in s] == ["eszter@example.test", "noa@example.test"]
    assert Timer.objects.filter(inject=ceo, state="fired").count() == 1


def test_firing_early_while_paused_fires_once_and_resume_leaves_it_out(planned):
    exercise = started(planned)
    with time_machine.travel(T0 + MIN, tick=False):
        exercises.exercise_pause(exercise=exercise, actor=planned["exec"])
    journalist = Inject.objects.get(position=2)
    with time_machine.travel(T0 + 2 * MIN, tick=False):
        exercises.exercise_fire_early(exercise=exercise, inject=journalist, actor=planned["exec"])
    with time_machine.travel(T0 + 3 * MIN, tick=False):
        exercises.exercise_resume(exercise=exercise, actor=planned["exec"])
    pending = Timer.objects.filter(kind="inject", state="pending")
    assert {t.inject.position for t in pending} == {1, 3}  # the first never fired either


def test_ending_cancels_what_is_pending_and_counts_as_a_review(planned):
    exercise = started(planned)
    run_until(T0 + 10 * MIN)
    with time_machine.travel(T0 + 12 * MIN, tick=False):
        exercise = exercises.exercise_end(
            exercise=exercise,
            actor=planned["exec"],
            observations="The journalist got no answer for 20 minutes.",
            counts_as_review=True,
        )
    assert exercise.status == "ended" and exercise.elapsed() == 12 * MIN
    assert not Timer.objects.filter(incident=exercise.incident, state="pending").exists()
    run_until(T0 + 31 * MIN)
    assert not Inject.objects.filter(position=3, fired_at__isnull=False).exists()
    assert Incident.objects.get(pk=exercise.incident_id).status == "resolved"
    assert Playbook.objects.get(pk=planned["playbook"].pk).last_reviewed_on == dt.date(2026, 3, 2)
    with pytest.raises(ValidationError):
        exercises.exercise_pause(exercise=exercise, actor=planned["exec"])


def test_ending_without_review_leaves_the_playbook_alone(planned):
    exercise = started(planned)
    with time_machine.travel(T0 + MIN, tick=False):
        exercises.exercise_end(exercise=exercise, actor=planned["exec"])
    assert Playbook.objects.get(pk=planned["playbook"].pk).last_reviewed_on == dt.date(2025, 1, 6)


def test_it_plans_from_the_starter_library(planned):
    exercise = exercises.exercise_plan(
        playbook=planned["playbook"],
        title="From the library",
        facilitator=planned["exec"],
        participants=[(planned["noa"], planned["roles"]["crisis-manager"])],
    )
    injects = list(exercise.injects.order_by("position"))
    library = starter_injects("service-outage")
    assert len(injects) == len(library) >= 6
    assert [i.offset_seconds for i in injects] == [x["offset_minutes"] * 60 for x in library]
    assert injects[1].roles.get().slug == "communications-lead"


def test_bad_input_is_refused_whole(planned):
    roles, before = planned["roles"], Exercise.objects.count()
    with pytest.raises(ValidationError) as exc:
        exercises.exercise_plan(
            playbook=planned["playbook"],
            title=" ",
            facilitator=planned["exec"],
            participants=[
                (planned["noa"], roles["crisis-manager"]),
                (planned["noa"], roles["communications-lead"]),
            ],
            injects=[
                InjectDraft(25 * 60 * 60, "Too late", "x"),
                InjectDraft(0, "Too long", "x" * 4001),
                InjectDraft(0, "Control\x00", "x"),
            ],
        )
    errors = exc.value.message_dict
    assert set(errors) == {"title", "participants", "injects"}
    assert len(errors["injects"]) == 3
    assert Exercise.objects.count() == before and Inject.objects.count() == 3


def test_editing_is_only_before_the_start(planned):
    exercise = exercises.exercise_update(
        exercise=planned["exercise"],
        title="Renamed",
        participants=[(planned["eszter"], planned["roles"]["crisis-manager"])],
        injects=[InjectDraft(60, "Only one", "Short.")],
    )
    assert exercise.title == "Renamed" and exercise.injects.count() == 1
    started(planned)
    with pytest.raises(ValidationError):
        exercises.exercise_update(exercise=exercise, title="Again", participants=[], injects=[])


def test_the_starter_library_has_six_injects_for_every_starter_playbook():
    for key in (
        "data-breach",
        "social-media-storm",
        "negative-review-wave",
        "service-outage",
        "product-recall",
    ):
        items = starter_injects(key)
        assert len(items) >= 6, key
        offsets = [i["offset_minutes"] for i in items]
        assert offsets == sorted(offsets)


def test_the_library_reader_refuses_what_the_playbook_reader_refuses():
    with pytest.raises(PlaybookImportError):
        injects_read("format: crisisdesk-injects/1\ninjects: &a {x: *a}\n")
    with pytest.raises(PlaybookImportError) as exc:
        injects_read(
            "format: crisisdesk-injects/1\ninjects:\n  k:\n    - {offset_minutes: -1, title: t, text: x}\n"
        )
    assert "offset_minutes" in exc.value.errors[0]


def test_a_participant_who_never_answers_is_not_paged_in_anyone_elses_place(planned):
    started(planned)
    # Level 2 pages the on-call technical lead (Eleni): she takes no part.
    run_until(T0 + 10 * MIN)
    sent = delivered()
    assert not [m for m in sent if m.to[0] in {"eleni@example.test", "exec@example.test"}]


def test_the_post_mortem_reports_each_inject_and_the_first_answers_to_it(planned):
    from incidents import services
    from incidents.postmortem import report_build
    from incidents.postmortem.render import report_html, report_markdown

    exercise = started(planned)
    run_until(T0)
    with time_machine.travel(T0 + 3 * MIN, tick=False):
        services.note_add(
            incident=exercise.incident, actor=planned["noa"], text="Rolling back the API key."
        )
    run_until(T0 + 10 * MIN)
    with time_machine.travel(T0 + 12 * MIN, tick=False):
        exercises.exercise_end(
            exercise=exercise,
            actor=planned["exec"],
            observations="Nobody called the journalist back.",
            counts_as_review=True,
        )
    report = report_build(exercise.incident)
    rows = report.exercise.injects
    assert [r.inject.title for r in rows] == [
        "Checkout fails",
        "A journalist calls",
        "The CEO asks",
    ]
    assert [e.text for e in rows[0].first_actions] == ["Rolling back the API key."]
    assert rows[0].answered_after == 3 * MIN
    # The facilitator's end is not the team's answer; the last never fired.
    assert rows[1].first_actions == [] and rows[2].inject.fired_at is None
    markdown = report_markdown(report)
    assert "Rolling back the API key." in markdown
    assert "Nobody called the journalist back." in markdown
    assert "It counts as a review of the playbook." in markdown
    assert 'id="injects"' in report_html(report)


def test_a_real_incident_has_no_exercise_section(planned, team):
    from incidents import services
    from incidents.postmortem import report_build

    incident = services.incident_open(title="Valódi", playbook=planned["playbook"])
    assert report_build(incident).exercise is None


def test_an_inject_email_still_queued_when_the_exercise_ends_is_not_sent(planned):
    exercise = started(planned)
    delivered()
    with time_machine.travel(T0, tick=False):
        timer = Timer.objects.get(kind="inject", inject__position=1)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(notify, "deliver_now", lambda ids: None)  # the worker died here
            escalation.timer_fire(timer_id=timer.pk)
    assert Notification.objects.filter(reason="inject", status="queued").count() == 2
    with time_machine.travel(T0 + MIN, tick=False):
        exercises.exercise_end(exercise=exercise, actor=planned["exec"])
    assert inject_mails(delivered()) == []
    assert set(Notification.objects.filter(reason="inject").values_list("status", flat=True)) == {
        "cancelled"
    }
