"""The facilitator's pages: the permission matrix, planning through the form, the controls,
and the pages in a real browser at 1,366 and 390 px with axe-core."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from incidents import exercises
from incidents.exercises import InjectDraft
from incidents.models import Exercise, Inject, TimelineEntry
from incidents.permissions import ensure_groups
from tests.pages import same_page
from tests.warroom.conftest import member
from tests.warroom.test_browser import PASSWORD, browser, check  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

PERSONAS = ("anonymous", "outsider", "executive", "participant", "responder", "manager")


@pytest.fixture
def cast(team, make_playbook, broker_calls):
    """A planned and a running exercise facilitated by a crisis manager; the participant
    (a responder) plays the crisis manager in both; one person of every persona."""
    ensure_groups()
    people = {
        "anonymous": None,
        "outsider": member("outsider"),
        "executive": member("executive", "Executives"),
        "participant": member("participant", "Responders"),
        "responder": member("responder", "Responders"),
        "manager": member("manager", "Crisis managers"),
    }
    playbook = make_playbook(key="data-breach", title="Adatvédelmi incidens")
    role = team["roles"]["crisis-manager"]

    def plan(title):
        return exercises.exercise_plan(
            playbook=playbook,
            title=title,
            facilitator=people["manager"],
            participants=[(people["participant"], role)],
            injects=[
                InjectDraft(0, "Kutató jelentkezik", "Nyitott export."),
                InjectDraft(600, "Újságíró hív", "Megerősítik?"),
            ],
        )

    planned = plan("Gyakorlat: tervezett")
    running = exercises.exercise_start(exercise=plan("Gyakorlat: fut"), actor=people["manager"])
    return {"people": people, "planned": planned, "running": running, "playbook": playbook}


def _pages(exercise) -> list[tuple[str, str]]:
    inject = exercise.injects.order_by("position").first()
    pk = exercise.pk
    return [
        ("get", f"/exercises/{pk}/"),
        ("get", f"/exercises/{pk}/edit/"),
        ("get", f"/exercises/{pk}/do/start/"),
        ("get", f"/exercises/{pk}/do/end/"),
        ("post", f"/exercises/{pk}/do/pause/"),
        ("post", f"/exercises/{pk}/injects/{inject.pk}/fire/"),
    ]


def _made_up(path: str, exercise) -> str:
    inject = exercise.injects.order_by("position").first()
    return path.replace(f"/{exercise.pk}/", "/999999/").replace(f"/{inject.pk}/", "/888888/")


@pytest.mark.parametrize("persona", PERSONAS)
def test_permission_matrix_exercise_pages(client, cast, persona):
    """Who sees an exercise (crisis managers, its facilitator, its participants) and who may
    run it (crisis managers, its facilitator); to anyone else it answers like a made-up id."""
    user = cast["people"][persona]
    if user is not None:
        client.force_login(user)
    sees = persona in ("participant", "manager")
    runs = persona == "manager"
    for exercise in (cast["planned"], cast["running"]):
        for method, path in _pages(exercise):
            real = getattr(client, method)(path)
            made_up = getattr(client, method)(_made_up(path, exercise))
            reads = path.endswith(f"/{exercise.pk}/")
            if user is None:
                assert real.status_code == 302 and "/accounts/login/" in real["Location"]
            elif persona == "outsider":
                assert real.status_code == made_up.status_code == 403, path
            elif not sees:
                assert real.status_code == 404, (persona, path)
                assert same_page(real, made_up), (persona, path)
            elif reads:
                assert real.status_code == 200, (persona, path)
                assert exercise.title in real.content.decode()
            elif not runs:
                assert real.status_code == 403, (persona, path)
            else:
                assert real.status_code in (200, 302), (persona, path)
    # The list shows exactly what the selector does; the plan form is for crisis managers.
    listing = client.get("/exercises/")
    plan = client.get("/exercises/new/")
    if user is None:
        assert listing.status_code == 302
        return
    if persona == "outsider":
        assert listing.status_code == plan.status_code == 403
        return
    body = listing.content.decode()
    for exercise in (cast["planned"], cast["running"]):
        assert (exercise.title in body) is sees, persona
    assert plan.status_code == (200 if runs else 403)


def test_a_facilitator_plans_from_the_library_and_edits_before_the_start(client, cast):
    manager, participant = cast["people"]["manager"], cast["people"]["participant"]
    client.force_login(manager)
    playbook = cast["playbook"]
    form = client.get(f"/exercises/new/?playbook={playbook.pk}")
    body = form.content.decode()
    assert form.status_code == 200 and "A researcher writes in" in body  # the starter library
    role = Group.objects.get(name="Responders")  # noqa: F841 - the participant's group
    crisis_manager = Exercise.objects.first().participants.first().role
    data = {
        "playbook": playbook.pk,
        "title": "Tabletop: open bucket",
        "brief": "Egy kutató nyitott exportot talál.",
        "planned_start": "",
        "participants-TOTAL_FORMS": "1",
        "participants-INITIAL_FORMS": "0",
        "participants-0-user": participant.pk,
        "participants-0-role": crisis_manager.pk,
        "injects-TOTAL_FORMS": "2",
        "injects-INITIAL_FORMS": "0",
        "injects-0-offset_minutes": "0",
        "injects-0-title": "Researcher",
        "injects-0-text": "Open bucket.",
        "injects-1-offset_minutes": "5",
        "injects-1-title": "Dropped",
        "injects-1-text": "Removed before planning.",
        "injects-1-DELETE": "on",
    }
    more = client.post(f"/exercises/new/?playbook={playbook.pk}", {**data, "add_injects": "1"})
    assert more.status_code == 200 and 'name="injects-TOTAL_FORMS" value="3"' in (
        more.content.decode()
    )
    bad = client.post(
        f"/exercises/new/?playbook={playbook.pk}",
        {**data, "injects-0-offset_minutes": "2000", "participants-0-user": ""},
    )
    assert bad.status_code == 200 and "errorlist" in bad.content.decode()
    assert not Exercise.objects.filter(title="Tabletop: open bucket").exists()
    response = client.post(f"/exercises/new/?playbook={playbook.pk}", data)
    exercise = Exercise.objects.get(title="Tabletop: open bucket")
    assert response.status_code == 302 and response["Location"] == f"/exercises/{exercise.pk}/"
    assert [i.title for i in exercise.injects.all()] == ["Researcher"]
    assert exercise.facilitator == manager
    edit = client.get(f"/exercises/{exercise.pk}/edit/")
    assert "Researcher" in edit.content.decode()


def test_the_controls_run_the_exercise(client, cast):
    client.force_login(cast["people"]["manager"])
    exercise = cast["planned"]
    confirm = client.get(f"/exercises/{exercise.pk}/do/start/")
    assert confirm.status_code == 200 and "drill incident opens" in confirm.content.decode()
    client.post(f"/exercises/{exercise.pk}/do/start/", {"confirmed": "1"})
    exercise.refresh_from_db()
    assert exercise.status == "running" and exercise.incident.drill
    late = Inject.objects.get(exercise=exercise, position=2)
    client.post(f"/exercises/{exercise.pk}/injects/{late.pk}/fire/")
    late.refresh_from_db()
    assert late.fired_at is not None
    assert TimelineEntry.objects.filter(incident=exercise.incident, kind="inject").count() == 1
    again = client.post(f"/exercises/{exercise.pk}/injects/{late.pk}/fire/", follow=True)
    assert "had fired already" in again.content.decode()
    client.post(f"/exercises/{exercise.pk}/do/pause/")
    exercise.refresh_from_db()
    assert exercise.status == "paused"
    page = client.get(f"/exercises/{exercise.pk}/")
    assert "Resume" in page.content.decode()
    client.post(f"/exercises/{exercise.pk}/do/resume/")
    client.post(
        f"/exercises/{exercise.pk}/do/end/",
        {
            "confirmed": "1",
            "observations": "Nobody answered the journalist.",
            "counts_as_review": "on",
        },
    )
    exercise.refresh_from_db()
    assert exercise.status == "ended" and exercise.counts_as_review
    page = client.get(f"/exercises/{exercise.pk}/").content.decode()
    assert "Nobody answered the journalist." in page


def test_the_page_counts_what_each_participant_did(client, cast):
    from incidents import services

    exercise = cast["running"]
    participant = cast["people"]["participant"]
    services.note_add(incident=exercise.incident, actor=participant, text="Calling the DPO.")
    services.incident_acknowledge(incident=exercise.incident, actor=participant)
    client.force_login(cast["people"]["manager"])
    page = client.get(f"/exercises/{exercise.pk}/").content.decode()
    row = page.split('data-participant="participant"')[1].split("</tr>")[0]
    assert "2 timeline entries" in row and "acknowledged" in row


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_the_facilitator_runs_an_exercise_in_the_browser(
    browser,  # noqa: F811
    live_server,
    cast,
    width,
    height,
):
    manager = cast["people"]["manager"]
    exercise = cast["planned"]
    page = browser.new_page(viewport={"width": width, "height": height}, locale="en-GB")
    page.goto(f"{live_server.url}/accounts/login/?next=/exercises/")
    page.fill("#id_username", manager.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/exercises/")
    check(page, "exercises", width)
    page.click("text=Plan an exercise")
    page.wait_for_url("**/exercises/new/")
    page.select_option("#id_playbook", str(cast["playbook"].pk))
    page.click("text=Continue")
    page.wait_for_selector("#script")
    assert page.locator("#script .inject-form").count() >= 7  # the library's six and more
    check(page, "exercise-plan", width)
    page.goto(f"{live_server.url}/exercises/")
    page.click(f"text={exercise.title}")
    page.wait_for_url(f"**/exercises/{exercise.pk}/")
    check(page, "exercise-planned", width)
    page.click("text=Edit")
    page.wait_for_url("**/edit/")
    check(page, "exercise-edit", width)
    page.go_back()
    page.click("text=Start the exercise")
    page.wait_for_url("**/do/start/")
    check(page, "exercise-start", width)
    page.click("#confirm button[type=submit]")
    page.wait_for_url(f"**/exercises/{exercise.pk}/")
    page.wait_for_selector(".flash >> text=The exercise has started")
    first = page.inner_text("#exercise-clock")
    page.wait_for_timeout(1200)
    assert page.inner_text("#exercise-clock") != first  # the clock ticks
    check(page, "exercise-running", width)
    late = exercise.injects.get(position=2)
    page.click(f"#inject-{late.pk} button")
    page.wait_for_selector(".flash >> text=Fired")
    check(page, "exercise-fired", width)
    page.click("text=Pause")
    page.wait_for_selector(".flash >> text=Paused")
    check(page, "exercise-paused", width)


def test_the_admin_lists_exercises_through_the_same_selector(client, cast):
    """A staff responder (who may view exercises) sees only those they take part in."""
    other = exercises.exercise_plan(
        playbook=cast["playbook"],
        title="Másik gyakorlat",
        facilitator=cast["people"]["manager"],
        participants=[(cast["people"]["responder"], cast["planned"].participants.first().role)],
        injects=[],
    )
    participant = cast["people"]["participant"]
    participant.is_staff = True
    participant.save()
    client.force_login(participant)
    listing = client.get("/admin/incidents/exercise/").content.decode()
    assert cast["planned"].title in listing and other.title not in listing
    assert client.get(f"/admin/incidents/exercise/{other.pk}/change/").status_code in (302, 404)
    assert client.get(f"/admin/incidents/exercise/{cast['planned'].pk}/change/").status_code == 200


def test_the_exercise_pages_read_in_fixed_queries(client, cast, team):
    """However many injects and participants (and their actions on the drill)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from incidents import services

    def queries(path) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(path).status_code == 200
        return len(ctx.captured_queries)

    roles = team["roles"]
    people = [member(f"p{n}", "Responders") for n in range(3)]
    big = exercises.exercise_plan(
        playbook=cast["playbook"],
        title="Nagy gyakorlat",
        facilitator=cast["people"]["manager"],
        participants=list(
            zip(
                people,
                [roles["crisis-manager"], roles["communications-lead"], roles["technical-lead"]],
                strict=True,
            )
        ),
        injects=[
            InjectDraft(60 * n, f"Inject {n}", "x", roles=[roles["technical-lead"]])
            for n in range(30)
        ],
    )
    big = exercises.exercise_start(exercise=big, actor=cast["people"]["manager"])
    for person in people:
        services.note_add(incident=big.incident, actor=person, text="on it")
    client.force_login(cast["people"]["manager"])
    queries("/exercises/")  # warm the session and permission caches
    assert queries(f"/exercises/{cast['running'].pk}/") == queries(f"/exercises/{big.pk}/")
    few = queries("/exercises/")
    for n in range(5):
        exercises.exercise_plan(
            playbook=cast["playbook"],
            title=f"Még egy {n}",
            facilitator=cast["people"]["manager"],
            participants=[(people[0], roles["crisis-manager"])],
            injects=[],
        )
    assert queries("/exercises/") == few
