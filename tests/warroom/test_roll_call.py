"""The role board's roll call (joined, can't, no answer, chased) and its relieve button."""

from __future__ import annotations

import pytest
import time_machine
from django.contrib.auth.models import Group

from crisisdesk.timefmt import format_when
from incidents import escalation, rollcall, services
from incidents.models import Notification, Timer
from tests.warroom.conftest import member

pytestmark = pytest.mark.django_db


def board(client, incident) -> str:
    html = client.get(f"/incidents/{incident.reference}/").content.decode()
    return html.split('id="roles"')[1].split("</section>")[0]


def current(incident, slug):
    return incident.assignments.select_related("role", "user").get(
        role__slug=slug, relieved_at__isnull=True
    )


def answer(client, assignment, what):
    n = Notification.objects.get(role_assignment=assignment, reason="activation")
    return client.post(f"/incidents/rollcall/{rollcall.rollcall_token(n.message_id, what)}/")


def test_the_role_board_shows_each_holders_answer(client, desk, manager):
    incident = desk["incident"]
    client.force_login(manager)
    assert board(client, incident).count('data-answer="pending"') == 4
    answer(client, current(incident, "crisis-manager"), "joining")
    comms = current(incident, "communications-lead")
    answer(client, comms, "cant")  # nobody else in Eszter's rotation: the role is unheld
    tech = current(incident, "technical-lead")
    timer = Timer.objects.get(assignment=tech, level=1)
    with time_machine.travel(timer.due_at, tick=False):
        escalation.timer_fire(timer_id=timer.pk)
    client.force_login(manager)
    html = board(client, incident)
    assert html.count('data-answer="joining"') == 1 and "joined at" in html
    assert 'data-answer="cant"' in html and "can't (answered at" in html  # earlier holders
    assert "Nobody holds this role" in html
    tech.refresh_from_db()
    assert f"chased at {format_when(tech.chased_at)}" in html  # in the viewer's zone, named
    assert html.count('data-answer="pending"') == 2


def test_the_relieve_button_asks_for_confirmation_then_relieves(client, desk, manager):
    incident = desk["incident"]
    client.force_login(manager)
    tech = current(incident, "technical-lead")
    url = f"/incidents/{incident.reference}/roles/{tech.pk}/relieve/"
    assert f'href="{url}"' in board(client, incident)
    page = client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert f'action="{url}"' in text and 'name="confirmed"' in text and "Relieve" in text
    tech.refresh_from_db()
    assert tech.relieved_at is None
    client.post(url)  # not confirmed: asks again, does nothing
    tech.refresh_from_db()
    assert tech.relieved_at is None
    done = client.post(url, {"confirmed": "1"}, follow=True)
    assert "is relieved as Technical lead" in done.content.decode()
    tech.refresh_from_db()
    assert tech.relieved_at is not None
    entry = incident.timeline.filter(kind="role").latest("at", "pk")
    assert entry.actor == manager and "was relieved as Technical lead" in entry.text
    assert Timer.objects.get(assignment=tech, level=1).state == "cancelled"
    # Stale: the holder was already relieved; it says so and changes nothing.
    again = client.post(url, {"confirmed": "1"}, follow=True)
    assert "nothing to relieve" in again.content.decode()
    assert incident.timeline.filter(kind="role", text__contains="was relieved").count() == 1


def test_relieving_a_holder_replaced_since_does_not_relieve_the_new_one(client, desk, manager):
    incident = desk["incident"]
    client.force_login(manager)
    old = current(incident, "technical-lead")
    url = f"/incidents/{incident.reference}/roles/{old.pk}/relieve/"
    services.role_assign(incident=incident, role=old.role, user=manager, actor=manager)
    client.post(url, {"confirmed": "1"}, follow=True)
    assert current(incident, "technical-lead").user == manager


def test_relieving_needs_the_apis_permission(client, desk):
    incident = desk["incident"]
    tech = current(incident, "technical-lead")
    url = f"/incidents/{incident.reference}/roles/{tech.pk}/relieve/"
    reader = member("reader", "Executives")
    client.force_login(reader)
    assert "/relieve/" not in board(client, incident)
    assert client.get(url).status_code == 403
    assert client.post(url, {"confirmed": "1"}).status_code == 403
    tech.refresh_from_db()
    assert tech.relieved_at is None


def test_a_hidden_incident_or_another_incidents_assignment_is_404(client, desk, manager, responder):
    incident = desk["incident"]
    secret = services.incident_open(title="Secret", confidential=True, playbook=incident.playbook)
    tech = current(secret, "technical-lead")
    client.force_login(responder)
    made_up = client.get("/incidents/INC-1999-9999/roles/1/relieve/")
    hidden = client.get(f"/incidents/{secret.reference}/roles/{tech.pk}/relieve/")
    assert made_up.status_code == hidden.status_code == 404
    client.force_login(manager)
    wrong = client.get(f"/incidents/{incident.reference}/roles/{tech.pk}/relieve/")
    assert wrong.status_code == 404


def test_a_holder_nobody_can_replace_shows_as_unanswered(client, desk, manager):
    incident = desk["incident"]
    noa = current(incident, "crisis-manager")  # alone in her rotation
    for level in (1, 2):
        timer = Timer.objects.get(assignment=noa, level=level)
        with time_machine.travel(timer.due_at, tick=False):
            escalation.timer_fire(timer_id=timer.pk)
    assert current(incident, "crisis-manager") == noa
    client.force_login(manager)
    with time_machine.travel(timer.due_at, tick=False):
        html = board(client, incident)
    assert "unanswered: nobody else to ask" in html


def test_a_holder_answers_their_own_roll_call_from_the_role_board(client, desk, manager):
    incident = desk["incident"]
    crisis = current(incident, "crisis-manager")
    tech = current(incident, "technical-lead")
    join_url = f"/incidents/{incident.reference}/roles/{crisis.pk}/answer/"
    for holder in (crisis.user, tech.user):
        holder.groups.add(Group.objects.get(name="Responders"))
    # Only the holder sees (and may use) the answer buttons for their own role.
    client.force_login(tech.user)
    assert join_url not in board(client, incident)
    assert client.post(join_url, {"answer": "joining"}).status_code == 404
    crisis.refresh_from_db()
    assert crisis.answer == "pending"

    client.force_login(crisis.user)
    assert f'action="{join_url}"' in board(client, incident)
    done = client.post(join_url, {"answer": "joining"}, follow=True)
    assert "You are joining as" in done.content.decode()
    crisis.refresh_from_db()
    assert crisis.answer == "joining"
    assert Timer.objects.get(assignment=crisis, level=1).state == "cancelled"
    again = client.post(join_url, {"answer": "cant", "confirmed": "1"}, follow=True)
    assert "already answered" in again.content.decode()
    crisis.refresh_from_db()
    assert crisis.answer == "joining" and crisis.relieved_at is None

    # Can't asks first, then relieves and says who the role went to (or that nobody is left).
    client.force_login(tech.user)
    cant_url = f"/incidents/{incident.reference}/roles/{tech.pk}/answer/"
    ask = client.post(cant_url, {"answer": "cant"})
    assert ask.status_code == 200 and 'name="confirmed"' in ask.content.decode()
    assert 'name="answer" value="cant"' in ask.content.decode()
    tech.refresh_from_db()
    assert tech.answer == "pending"
    relieved = client.post(cant_url, {"answer": "cant", "confirmed": "1"}, follow=True)
    assert "You are relieved as" in relieved.content.decode()
    tech.refresh_from_db()
    assert tech.answer == "cant" and tech.relieved_at is not None
    assert incident.timeline.filter(
        kind="roll_call", actor=tech.user, text__contains="can't take"
    ).exists()


def test_the_escalation_panel_says_when_level_one_pages_at_once(client, desk, manager):
    incident = desk["incident"]
    client.force_login(manager)
    policy = {**incident.escalation_policy, "page_at_once_max_severity": incident.severity}
    type(incident).objects.filter(pk=incident.pk).update(escalation_policy=policy)
    html = client.get(f"/incidents/{incident.reference}/").content.decode()
    assert "at once: this severity pages level 1 without waiting" in html
    policy["page_at_once_max_severity"] = None
    type(incident).objects.filter(pk=incident.pk).update(escalation_policy=policy)
    html = client.get(f"/incidents/{incident.reference}/").content.decode()
    assert "at once: this severity" not in html
