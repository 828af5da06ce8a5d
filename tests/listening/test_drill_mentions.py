"""Injects that bring sample public comments into the listening inbox: once, as drill
comments of the drill's incident, never evaluated against the listening rules, never in
the real figures; and every door refuses the same bad comments with field messages."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError

from incidents import escalation, exercises
from incidents.exercises import InjectDraft
from incidents.listening import inbox
from incidents.listening.models import Detection, ListeningRule, Mention, RuleHit
from incidents.models import Exercise, Incident, Inject, Timer
from incidents.postmortem.facts import report_build
from incidents.postmortem.trends import trends
from playbooks.playbook_io import PlaybookImportError
from playbooks.seed import injects_read, starter_injects
from tests.incidents.conftest import api, member
from tests.incidents.test_exercises import T0, run_until

pytestmark = pytest.mark.django_db

MIN = dt.timedelta(minutes=1)
COMMENTS = [
    {"channel": "review", "author": "Sam T.", "language": "en", "sentiment": "negative",
     "text": "The checkout broken again, charged twice. One star."},
    {"channel": "twitter", "author": "@kati", "language": "hu",
     "text": "A pénztár megint nem működik!"},
]  # fmt: skip


@pytest.fixture
def drill(team, make_playbook, broker_calls, groups):
    """A planned exercise: its second inject (ten minutes in) brings two comments."""
    people, roles = team["people"], team["roles"]
    people["noa"].groups.add(Group.objects.get(name="Crisis managers"))
    exercise = exercises.exercise_plan(
        playbook=make_playbook(key="negative-review-wave"),
        title="Rehearsal: review wave",
        facilitator=people["noa"],
        participants=[(people["noa"], roles["crisis-manager"])],
        injects=[
            InjectDraft(0, "The rating drops", "200 one-star reviews."),
            InjectDraft(10 * 60, "The reviews arrive", "Read the inbox.", mentions=COMMENTS),
        ],
    )
    return {"exercise": exercise, **people}


def start(drill) -> Exercise:
    with time_machine.travel(T0, tick=False):
        return exercises.exercise_start(exercise=drill["exercise"], actor=drill["noa"])


def test_it_brings_the_comments_into_the_inbox_once_when_the_inject_fires(drill):
    exercise = start(drill)
    run_until(T0 + 9 * MIN)
    assert not Mention.objects.exists()  # the first inject brings none
    run_until(T0 + 10 * MIN)
    timer = Timer.objects.get(kind="inject", inject__position=2)
    assert escalation.timer_fire(timer_id=timer.pk).endswith("not pending")
    # Even a second pending timer of the same inject: its own claim makes it once.
    Timer.objects.filter(pk=timer.pk).update(state="pending", fired_at=None)
    with time_machine.travel(T0 + 11 * MIN, tick=False):
        assert escalation.timer_fire(timer_id=timer.pk).endswith("inject fired already")
    inject = Inject.objects.get(exercise=exercise, position=2)
    exercises.exercise_fire_early(exercise=exercise, inject=inject, actor=drill["noa"])
    rows = list(Mention.objects.order_by("external_id"))
    assert [(m.author, m.channel, m.language) for m in rows] == [
        ("Sam T.", "review", "en"),
        ("@kati", "twitter", "hu"),
    ]
    assert {m.incident_id for m in rows} == {exercise.incident_id}
    assert {m.state for m in rows} == {"new"}
    assert {m.received_at for m in rows} == {T0 + 10 * MIN}
    assert {(m.source.slug, m.source.kind) for m in rows} == {("exercises", "exercise")}
    # Given, else from the lexicon.
    assert (rows[0].sentiment, rows[0].sentiment_given) == (-1, True)
    assert rows[1].sentiment_given is False


def test_a_rule_that_would_match_opens_no_real_incident(drill, risk):
    """The safety test: a rule matching the inject's text at threshold 1 stays silent."""
    rule = ListeningRule.objects.create(
        risk=risk,
        name="Checkout complaints",
        keywords=["checkout broken", "pénztár"],
        window_minutes=60,
        threshold_count=1,
    )
    start(drill)
    real_before = Incident.objects.filter(drill=False).count()
    run_until(T0 + 10 * MIN)
    assert Mention.objects.count() == 2
    assert Incident.objects.filter(drill=False).count() == real_before
    assert not RuleHit.objects.filter(rule=rule).exists()
    assert not Detection.objects.exists()
    assert not Mention.objects.filter(risk__isnull=False).exists()


def test_drill_comments_count_only_in_the_drills_figures(drill, client):
    exercise = start(drill)
    run_until(T0 + 10 * MIN)
    comment = Mention.objects.get(language="en")
    inbox.mention_needs_reply(mention=comment, actor=drill["noa"], now=T0 + 11 * MIN)
    figures = trends(Incident.objects.all())
    assert figures["replies"].needed == 0
    assert figures["drill_replies"].needed == 1
    # The exercise report (the drill's post-mortem) counts them.
    report = report_build(Incident.objects.get(pk=exercise.incident_id))
    assert report.exercise.comments == 2 and report.replies.needed == 1
    client.force_login(drill["noa"])
    page = client.get(f"/incidents/{report.incident.reference}/postmortem/").content.decode()
    assert 'id="exercise-comments"' in page and 'id="replies"' in page


def test_the_inbox_and_the_exercise_page_mark_them(drill, client):
    exercise = start(drill)
    client.force_login(drill["noa"])
    page = client.get(f"/exercises/{exercise.pk}/").content.decode()
    assert 'data-comments="2"' in page
    run_until(T0 + 10 * MIN)
    listing = client.get("/mentions/").content.decode()
    assert listing.count("[DRILL]") == 2
    one = Mention.objects.get(language="hu")
    assert "[DRILL]" in client.get(f"/mentions/{one.pk}/").content.decode()
    listed = api(drill["noa"]).get("/api/v1/mentions/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [row["drill"] for row in rows] == [True, True]


BAD = [
    ([{**COMMENTS[0], "channel": "carrier-pigeon"}], "not a channel"),
    ([{**COMMENTS[0], "text": "x" * 10_001}], "1 to 10000 characters"),
    ([{**COMMENTS[0], "text": " "}], "1 to 10000 characters"),
    ([{**COMMENTS[0], "language": "English!"}], "language code"),
    ([{**COMMENTS[0], "sentiment": "furious"}], "negative, neutral or positive"),
    ([{**COMMENTS[0], "likes": 4}], "at most 200 comments"),
    ([COMMENTS[0]] * 201, "at most 200 comments"),
    ("not a list", "at most 200 comments"),
]


@pytest.mark.parametrize(("mentions", "says"), BAD)
def test_the_plan_refuses_bad_comments_whole(drill, mentions, says):
    before = Inject.objects.count()
    with pytest.raises(ValidationError) as exc:
        exercises.exercise_plan(
            playbook=drill["exercise"].playbook,
            title="Bad",
            facilitator=drill["noa"],
            participants=[(drill["noa"], drill["exercise"].participants.get().role)],
            injects=[InjectDraft(0, "Comments", "x", mentions=mentions)],
        )
    (message,) = exc.value.message_dict["injects"]
    assert message.startswith("Inject 1, public comments it brings: ") and says in message
    assert Inject.objects.count() == before


def test_the_api_answers_400_with_the_field_message(drill, team):
    manager = member("manager", "Crisis managers")
    plan = {
        "playbook": drill["exercise"].playbook_id,
        "title": "Bad comments",
        "participants": [{"user": drill["noa"].pk, "role": team["roles"]["crisis-manager"].pk}],
        "injects": [
            {"offset_seconds": 0, "title": "t", "text": "x", "mentions": [{"channel": "fax"}]}
        ],
    }
    client = api(manager)
    response = client.post("/api/v1/exercises/", plan, format="json")
    assert response.status_code == 400
    assert any("“fax” is not a channel" in m for m in response.json()["injects"])
    assert not Exercise.objects.filter(title="Bad comments").exists()
    plan["injects"][0]["mentions"] = COMMENTS
    created = client.post("/api/v1/exercises/", plan, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["injects"][0]["mentions"] == COMMENTS


def test_the_war_room_form_refuses_them_and_keeps_good_ones(drill, client, team):
    client.force_login(drill["noa"])
    playbook = drill["exercise"].playbook
    data = {
        "playbook": playbook.pk,
        "title": "Tabletop: reviews",
        "brief": "",
        "planned_start": "",
        "participants-TOTAL_FORMS": "1",
        "participants-INITIAL_FORMS": "0",
        "participants-0-user": drill["noa"].pk,
        "participants-0-role": team["roles"]["crisis-manager"].pk,
        "injects-TOTAL_FORMS": "1",
        "injects-INITIAL_FORMS": "0",
        "injects-0-offset_minutes": "0",
        "injects-0-title": "Reviews",
        "injects-0-text": "They arrive.",
        "injects-0-mentions": '[{"channel": "review", "text": "Bad", "language": "x1"}]',
    }
    bad = client.post("/exercises/new/", data)
    assert bad.status_code == 200 and "language code" in bad.content.decode()
    assert not Exercise.objects.filter(title="Tabletop: reviews").exists()
    data["injects-0-mentions"] = '[{"channel": "review", "text": "Bad", "language": "en"}]'
    assert client.post("/exercises/new/", data).status_code == 302
    exercise = Exercise.objects.get(title="Tabletop: reviews")
    assert exercise.injects.get().mentions == [
        {"channel": "review", "text": "Bad", "language": "en"}
    ]
    # Editing shows them again, so a save keeps them.
    assert "&quot;Bad&quot;" in client.get(f"/exercises/{exercise.pk}/edit/").content.decode()


def test_the_library_reader_names_the_entry_of_a_bad_comment():
    with pytest.raises(PlaybookImportError) as exc:
        injects_read(
            "format: crisisdesk-injects/1\ninjects:\n  k:\n"
            "    - offset_minutes: 0\n      title: t\n      text: x\n"
            "      mentions: [{channel: review, text: ok}, {channel: fax, text: nope}]\n"
        )
    (error,) = exc.value.errors
    assert error.startswith("injects.k[0].mentions: Comment 2:") and "fax" in error


def test_the_starter_storm_and_review_wave_bring_comments_in_four_languages():
    for key in ("social-media-storm", "negative-review-wave"):
        comments = [m for i in starter_injects(key) for m in i["mentions"]]
        assert {m["language"] for m in comments} >= {"en", "he", "hu", "el"}, key


def test_a_comment_written_around_the_checks_does_not_keep_the_inject_from_firing(drill):
    exercise = start(drill)
    Inject.objects.filter(exercise=exercise, position=2).update(
        mentions=[{"channel": "fax", "text": "x"}, "not a comment", COMMENTS[1]]
    )
    run_until(T0 + 10 * MIN)
    assert Inject.objects.get(exercise=exercise, position=2).fired_at == T0 + 10 * MIN
    assert list(Mention.objects.values_list("author", flat=True)) == ["@kati"]
