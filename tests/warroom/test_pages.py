"""The war room's pages: what each shows, the actions through the services, stale actions."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from incidents import services
from incidents.models import Incident, Task, TimelineEntry, Timer
from playbooks.models import UserProfile

pytestmark = pytest.mark.django_db


def test_it_sends_anonymous_people_to_sign_in(client):
    for path in ("/", "/incidents/", "/incidents/new/", "/incidents/INC-2026-0001/"):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")


def test_it_signs_in_and_out(client, responder):
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b"Sign in to the war room" in page.content
    bad = client.post("/accounts/login/", {"username": "resp", "password": "nope"})
    assert b"do not match" in bad.content
    ok = client.post("/accounts/login/", {"username": "resp", "password": "pw-for-tests-only"})
    assert ok.status_code == 302 and ok["Location"] == "/"
    assert client.get("/").status_code == 200
    out = client.post("/accounts/logout/")
    assert out.status_code == 302
    assert client.get("/").status_code == 302


def test_it_shows_the_dashboard(client, desk, manager):
    incident = desk["incident"]
    drill = services.incident_open(title="Fire drill", drill=True, playbook=incident.playbook)
    client.force_login(manager)
    html = client.get("/").content.decode()
    assert incident.reference in html and drill.reference in html
    active, drills = html.split('id="drills"')
    assert incident.reference in active and drill.reference not in active.split('id="active"')[1]
    assert drill.reference in drills
    assert "noa@example.test" in html  # on call now, with e-mail
    assert 'class="countdown' in html
    assert "/incidents/new/" in html and "/api/docs/" in html and "/incidents/trends/" in html


def test_the_dashboard_shows_the_next_update_due_to_each_audience(client, desk, manager):
    incident = desk["incident"]
    Timer.objects.create(
        incident=incident,
        kind=Timer.Kind.UPDATE_CADENCE,
        audience=desk["customers"],
        due_at=timezone.now() + dt.timedelta(minutes=45),
    )
    UserProfile.objects.create(user=desk["noa"], phone="+972 3 555 0101")
    client.force_login(manager)
    html = client.get("/").content.decode()
    row = html.split(f'data-reference="{incident.reference}"')[1].split("</tr>")[0]
    cell = row.split("Next updates")[1]
    assert desk["customers"].name in cell and "in 44 min" in cell
    assert 'href="tel:+97235550101"' in html  # on call now, with a phone to call


def test_it_counts_down_and_turns_red_when_missed(client, desk, manager):
    incident = desk["incident"]
    client.force_login(manager)
    with time_machine.travel(timezone.now() + dt.timedelta(hours=2)):
        html = client.get("/").content.decode()
        row = html.split(f'data-reference="{incident.reference}"')[1].split("</tr>")[0]
    assert "countdown overdue" in row and "overdue by 1 h" in row  # the statement deadline
    assert 'class="overdue-flag">2<' in row  # both tasks (due at 0 and 30 min)


def test_it_opens_an_incident_from_a_playbook(client, desk, responder):
    client.force_login(responder)
    playbook = desk["incident"].playbook
    form = client.get("/incidents/new/").content.decode()
    assert f'value="{playbook.pk}"' in form
    response = client.post(
        "/incidents/new/",
        {"playbook": playbook.pk, "title": "Shop down", "summary": "500s", "severity": "1"},
    )
    incident = Incident.objects.get(title="Shop down")
    assert (
        response.status_code == 302 and response["Location"] == f"/incidents/{incident.reference}/"
    )
    assert (
        incident.playbook == playbook and incident.severity == 1 and incident.opened_by == responder
    )
    assert incident.tasks.count() == 2


def test_it_shows_field_errors(client, desk, responder):
    client.force_login(responder)
    response = client.post("/incidents/new/", {"title": "  ", "severity": "9"})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="errorlist') >= 2
    assert not Incident.objects.filter(title="").exists()


def test_executives_may_not_open_incidents(client, desk):
    from tests.warroom.conftest import member

    client.force_login(member("ceo", "Executives"))
    assert client.get("/incidents/new/").status_code == 403
    assert "/incidents/new/" not in client.get("/").content.decode()


def test_it_lists_filters_and_searches(client, desk, manager):
    incident = desk["incident"]
    other = services.incident_open(title="Recall of batch 7", severity=3, drill=True)
    services.incident_resolve(incident=other, actor=None)
    client.force_login(manager)
    html = client.get("/incidents/").content.decode()
    assert incident.reference in html and other.reference in html
    assert other.reference not in client.get("/incidents/?status=active").content.decode()
    assert incident.reference not in client.get("/incidents/?status=past").content.decode()
    assert incident.reference not in client.get("/incidents/?severity=3").content.decode()
    assert incident.reference not in client.get("/incidents/?drill=yes").content.decode()
    assert other.reference not in client.get("/incidents/?category=data_breach").content.decode()
    found = client.get("/incidents/", {"q": "batch 7"}).content.decode()
    assert other.reference in found and incident.reference not in found
    assert other.reference in client.get("/incidents/", {"q": other.reference}).content.decode()


def test_it_paginates(client, desk, manager):
    for n in range(26):
        services.incident_open(title=f"Bulk {n}")
    client.force_login(manager)
    first = client.get("/incidents/").content.decode()
    assert "Page 1 of 2" in first and 'rel="next"' in first
    assert "Page 2 of 2" in client.get("/incidents/?page=2").content.decode()


def test_the_incident_page_shows_everything(client, desk, manager):
    incident = desk["incident"]
    client.force_login(manager)
    html = client.get(f"/incidents/{incident.reference}/").content.decode()
    for part in (
        'id="actions"',
        'id="countdowns"',
        'id="tasks"',
        'id="roles"',
        'id="timeline"',
        'id="escalation"',
        'hx-trigger="every 5s"',
        "Level 3",
        "Acknowledge",
    ):
        assert part in html, part
    assert f"/incidents/{incident.reference}/postmortem/" in html
    assert "Noa" in html or "נועה" in html  # the role board


def test_it_walks_the_life_cycle(client, desk, manager):
    incident = desk["incident"]
    base = f"/incidents/{incident.reference}/"
    client.force_login(manager)
    assert client.post(base + "do/acknowledge/").status_code == 302
    incident.refresh_from_db()
    assert incident.status == "acknowledged" and incident.acknowledged_by == manager
    client.post(base + "do/severity/", {"severity": "1", "reason": "spreading"})
    # Irreversible: GET and an unconfirmed POST only ask.
    ask = client.get(base + "do/contain/")
    assert ask.status_code == 200 and b'name="confirmed"' in ask.content
    assert client.post(base + "do/contain/").status_code == 200
    incident.refresh_from_db()
    assert incident.status == "acknowledged"
    client.post(base + "do/contain/", {"confirmed": "1"})
    client.post(base + "do/resolve/", {"confirmed": "1", "summary": "fixed"})
    incident.refresh_from_db()
    assert incident.status == "resolved" and hasattr(incident, "postmortem")
    client.post(base + "do/close/", {"confirmed": "1"})
    incident.refresh_from_db()
    assert incident.status == "closed"
    client.post(base + "do/reopen/", {"confirmed": "1", "reason": "again"})
    incident.refresh_from_db()
    assert incident.status == "open"
    assert client.post(base + "do/explode/").status_code == 404


def test_a_stale_action_says_what_happened(client, desk, manager):
    incident = desk["incident"]
    services.incident_resolve(incident=incident, actor=desk["noa"])
    client.force_login(manager)
    response = client.post(f"/incidents/{incident.reference}/do/acknowledge/", follow=True)
    html = response.content.decode()
    assert response.status_code == 200
    assert (
        "Nothing to acknowledge" in html and "Resolved" in html and "resolved the incident" in html
    )
    again = client.post(
        f"/incidents/{incident.reference}/do/contain/", {"confirmed": "1"}, follow=True
    ).content.decode()
    assert "Only an open or acknowledged incident can be marked contained." in again


def test_it_completes_and_skips_tasks(client, desk, manager):
    incident = desk["incident"]
    first, second = incident.tasks.order_by("position")
    client.force_login(manager)
    url = f"/incidents/{incident.reference}/tasks/"
    client.post(f"{url}{first.pk}/", {"outcome": "done", "note": "called legal"})
    client.post(f"{url}{second.pk}/", {"outcome": "skipped", "note": "not needed"})
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.done_by) == ("done", manager)
    assert second.status == "skipped"
    assert TimelineEntry.objects.filter(incident=incident, text__contains="called legal").exists()
    stale = client.post(f"{url}{first.pk}/", {"outcome": "skipped"}, follow=True).content.decode()
    assert "was already marked done" in stale
    first.refresh_from_db()
    assert first.status == "done"


def test_it_adds_a_note_with_htmx_and_without(client, desk, manager):
    incident = desk["incident"]
    client.force_login(manager)
    url = f"/incidents/{incident.reference}/notes/"
    partial = client.post(url, {"text": "Press called"}, headers={"HX-Request": "true"})
    assert partial.status_code == 200 and b'id="timeline"' in partial.content
    assert b"Press called" in partial.content and b"<html" not in partial.content
    empty = client.post(url, {"text": " "}, headers={"HX-Request": "true"})
    assert empty["HX-Retarget"] == "#note-errors"
    plain = client.post(url, {"text": "Second note"})
    assert plain.status_code == 302
    assert TimelineEntry.objects.filter(incident=incident, kind="note").count() == 2


def test_the_timeline_partial_answers_204_when_nothing_is_new(client, desk, manager):
    incident = desk["incident"]
    client.force_login(manager)
    url = f"/incidents/{incident.reference}/timeline/"
    full = client.get(url)
    assert full.status_code == 200 and b"<html" not in full.content
    newest = incident.timeline.order_by("-pk").first()
    assert client.get(url, {"latest": newest.pk}).status_code == 204
    services.note_add(incident=incident, actor=None, text="new")
    assert client.get(url, {"latest": newest.pk}).status_code == 200


def test_the_polled_timeline_brings_the_status_and_actions_along(client, desk, manager):
    incident = desk["incident"]
    client.force_login(manager)
    page = client.get(f"/incidents/{incident.reference}/").content.decode()
    assert "hx-swap-oob" not in page and "Acknowledge</button>" in page
    services.incident_acknowledge(incident=incident, actor=desk["noa"], via="e-mail link")
    polled = client.get(f"/incidents/{incident.reference}/timeline/").content.decode()
    badges = polled.split('<p id="badges" hx-swap-oob="true">')[1].split("</p>")[0]
    assert "Acknowledged" in badges
    actions = polled.split('id="actions" hx-swap-oob="true"')[1]
    assert "Acknowledge</button>" not in actions and "Resolve…" in actions


def test_the_other_pages_link_back_to_the_incident(client, desk, manager):
    incident = desk["incident"]
    manager.is_staff = True
    manager.save()
    client.force_login(manager)
    services.incident_resolve(incident=incident, actor=None)
    for path in ("communications/", "postmortem/"):
        html = client.get(f"/incidents/{incident.reference}/{path}").content.decode()
        assert f'href="/incidents/{incident.reference}/"' in html, path


def test_task_counts_are_server_side(client, desk, manager):
    incident = desk["incident"]
    client.force_login(manager)
    Task.objects.filter(incident=incident).update(due_at=timezone.now() - dt.timedelta(minutes=5))
    html = client.get(f"/incidents/{incident.reference}/").content.decode()
    assert "2 overdue" in html


def test_the_role_board_shows_a_role_nobody_holds(client, desk, manager):
    incident = desk["incident"]
    role = incident.assignments.get(role__slug="communications-lead").role
    services.role_relieve(incident=incident, role=role, actor=manager)
    client.force_login(manager)
    html = client.get(f"/incidents/{incident.reference}/").content.decode()
    board = html.split('id="roles"')[1].split("</section>")[0]
    assert "Nobody holds this role" in board and role.name in board


def test_the_dashboard_refreshes_its_incidents(client, desk, manager):
    client.force_login(manager)
    html = client.get("/").content.decode()
    assert 'id="live"' in html and 'hx-select="#live"' in html and 'hx-trigger="every 15s"' in html


def test_it_hands_a_role_to_someone(client, desk, manager):
    incident = desk["incident"]
    role = incident.assignments.get(role__slug="communications-lead").role
    client.force_login(manager)
    page = client.get(f"/incidents/{incident.reference}/").content.decode()
    assert 'id="role-form"' in page
    response = client.post(
        f"/incidents/{incident.reference}/roles/", {"role": role.pk, "user": manager.pk}
    )
    assert response.status_code == 302
    current = incident.assignments.get(role=role, relieved_at__isnull=True)
    assert current.user == manager and current.assigned_by == manager
    assert incident.assignments.filter(role=role, relieved_at__isnull=False).count() == 1
    bad = client.post(f"/incidents/{incident.reference}/roles/", {"role": role.pk}, follow=True)
    assert "Choose a role and a person." in bad.content.decode()


def test_the_demo_login_reaches_the_dashboard(client, broker_calls):
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    username, password = out.getvalue().split("Demo login: ")[1].split()[0:3:2]
    response = client.post("/accounts/login/", {"username": username, "password": password})
    assert response.status_code == 302 and response["Location"] == "/"
    dashboard = client.get("/")
    html = dashboard.content.decode()
    assert dashboard.status_code == 200 and "War room" in html and "On call now" in html
    assert "Open an incident" in html and "/admin/" in html
