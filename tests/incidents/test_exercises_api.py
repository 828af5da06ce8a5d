"""The exercises API: plan, start, pause, resume, fire early, end; who sees and who runs."""

from __future__ import annotations

import pytest

from incidents.models import Exercise, Inject, TimelineEntry
from incidents.permissions import ensure_groups
from tests.incidents.conftest import api, member

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(team, broker_calls):
    ensure_groups()
    return {
        "manager": member("manager", "Crisis managers"),
        "participant": member("participant", "Responders"),
        "responder": member("responder", "Responders"),
        "outsider": member("outsider"),
    }


@pytest.fixture
def plan(people, team, make_playbook):
    playbook = make_playbook(key="negative-review-wave")
    role = team["roles"]["crisis-manager"]
    return {
        "playbook": playbook.pk,
        "title": "Értékelési hullám",
        "participants": [{"user": people["participant"].pk, "role": role.pk}],
    }


def test_it_plans_from_the_library_and_runs_the_exercise(people, plan):
    client = api(people["manager"])
    created = client.post("/api/v1/exercises/", plan, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "planned" and len(body["injects"]) >= 6  # the starter library
    pk = body["id"]
    started = client.post(f"/api/v1/exercises/{pk}/start/")
    assert started.status_code == 200 and started.json()["incident"].startswith("INC-")
    late = Inject.objects.filter(exercise_id=pk).order_by("-offset_seconds").first()
    fired = client.post(f"/api/v1/exercises/{pk}/fire/", {"inject": late.pk}, format="json")
    assert fired.status_code == 200
    assert [i["fired_at"] is not None for i in fired.json()["injects"] if i["id"] == late.pk] == [
        True
    ]
    client.post(f"/api/v1/exercises/{pk}/fire/", {"inject": late.pk}, format="json")
    exercise = Exercise.objects.get(pk=pk)
    assert TimelineEntry.objects.filter(incident=exercise.incident, kind="inject").count() == 1
    assert client.post(f"/api/v1/exercises/{pk}/pause/").json()["status"] == "paused"
    assert client.post(f"/api/v1/exercises/{pk}/pause/").status_code == 400
    assert client.post(f"/api/v1/exercises/{pk}/resume/").json()["status"] == "running"
    ended = client.post(
        f"/api/v1/exercises/{pk}/end/", {"observations": "Lassú válasz."}, format="json"
    )
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    assert ended.json()["observations"] == "Lassú válasz."


def test_bad_input_gets_field_messages_and_writes_nothing(people, plan):
    client = api(people["manager"])
    response = client.post(
        "/api/v1/exercises/",
        {
            **plan,
            "title": "",
            "injects": [{"offset_seconds": 90_000, "title": "x" * 201, "text": "y"}],
        },
        format="json",
    )
    assert response.status_code == 400
    assert {"title", "injects"} <= set(response.json())
    doubled = client.post(
        "/api/v1/exercises/", {**plan, "participants": plan["participants"] * 2}, format="json"
    )
    assert doubled.status_code == 400 and "participants" in doubled.json()
    assert not Exercise.objects.exists() and not Inject.objects.exists()


def test_who_sees_and_who_runs(people, plan):
    created = api(people["manager"]).post("/api/v1/exercises/", plan, format="json").json()
    pk = created["id"]
    participant, responder = api(people["participant"]), api(people["responder"])
    assert participant.get(f"/api/v1/exercises/{pk}/").status_code == 200
    assert participant.post(f"/api/v1/exercises/{pk}/start/").status_code == 403
    assert participant.post("/api/v1/exercises/", plan, format="json").status_code == 403
    hidden = responder.get(f"/api/v1/exercises/{pk}/")
    made_up = responder.get("/api/v1/exercises/999999/")
    assert hidden.status_code == made_up.status_code == 404
    assert hidden.json() == made_up.json()
    assert responder.post(f"/api/v1/exercises/{pk}/start/").status_code == 404
    assert responder.get("/api/v1/exercises/").json()["count"] == 0
    assert api(people["outsider"]).get("/api/v1/exercises/").status_code == 403
    assert api().get("/api/v1/exercises/").status_code in (401, 403)
    assert Exercise.objects.get(pk=pk).status == "planned"
