"""The one-click acknowledge link: confirmation on GET, acknowledgement on POST, once."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine

from incidents import acklinks, escalation, services
from incidents.models import Incident, Notification, Timer
from playbooks.models import OnCallRotation
from tests.pages import same_page, without_csrf

pytestmark = pytest.mark.django_db


@pytest.fixture
def paged(team, make_playbook, broker_calls):
    incident = services.incident_open(title="Δεδομένα πελατών εκτέθηκαν", playbook=make_playbook())
    level1 = Timer.objects.get(incident=incident, kind="escalation", level=1)
    with time_machine.travel(level1.due_at, tick=False):
        escalation.timer_fire(timer_id=level1.pk)
    notification = Notification.objects.get(incident=incident, reason="escalation")
    token = acklinks.ack_token(notification.message_id)
    return incident, notification, f"/incidents/ack/{token}/"


def test_it_only_asks_for_confirmation_on_get_so_link_scanners_never_acknowledge(client, paged):
    incident, notification, url = paged
    for _ in range(3):
        response = client.get(url)
        assert response.status_code == 200
        assert "I acknowledge" in response.content.decode()
    incident.refresh_from_db()
    assert incident.status == Incident.Status.OPEN
    assert notification.ack_token_used_at is None


def test_it_acknowledges_on_post_as_the_recipient_and_stops_escalation(client, paged):
    incident, notification, url = paged
    response = client.post(url)
    assert response.status_code == 200
    assert "is acknowledged" in response.content.decode()
    incident.refresh_from_db()
    assert incident.status == Incident.Status.ACKNOWLEDGED
    assert incident.acknowledged_by == notification.recipient
    assert not Timer.objects.filter(incident=incident, kind="escalation", state="pending").exists()
    entry = incident.timeline.get(kind="acknowledged")
    assert entry.actor == notification.recipient and entry.data["via"] == "e-mail link"


def test_it_refuses_a_used_link_like_any_dead_link(client, paged):
    incident, _n, url = paged
    client.post(url)
    again = client.post(url)
    assert again.status_code == 404
    assert "does not work" in again.content.decode()
    assert without_csrf(client.get(url)) == without_csrf(again)
    assert incident.title not in again.content.decode()


def test_it_says_who_acknowledged_when_someone_else_was_first(client, paged, team):
    incident, _n, url = paged
    services.incident_acknowledge(incident=incident, actor=team["people"]["eszter"])
    page = client.post(url).content.decode()
    assert "no longer needs acknowledging" in page and "Eszter" in page


def test_it_refuses_a_tampered_link(client, paged):
    _incident, _n, url = paged
    tampered = url[:-3] + ("A" if url[-3] != "A" else "B") + url[-2:]
    response = client.get(tampered)
    assert response.status_code == 404
    assert "does not work" in response.content.decode()
    assert client.post("/incidents/ack/garbage/").status_code == 404


def test_it_refuses_an_expired_link(client, paged):
    incident, _n, url = paged
    with time_machine.travel(
        dt.datetime.now(dt.UTC) + acklinks.ACK_MAX_AGE + dt.timedelta(minutes=1)
    ):
        response = client.post(url)
    assert response.status_code == 404
    assert "does not work" in response.content.decode()
    assert without_csrf(response) == without_csrf(client.get("/incidents/ack/garbage/"))
    incident.refresh_from_db()
    assert incident.status == Incident.Status.OPEN


def test_it_renders_right_to_left_in_hebrew(client, paged):
    _incident, _n, url = paged
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="he").content.decode()
    assert 'dir="rtl"' in page and 'lang="he"' in page


@pytest.fixture
def two_paged(paged, team):
    """Level 1 paged Noa (whose rotation keeps Jerusalem time), level 2 paged Eleni."""
    incident, noa_page, noa_url = paged
    OnCallRotation.objects.filter(members__user=team["people"]["noa"]).update(
        timezone="Asia/Jerusalem"
    )
    level2 = Timer.objects.get(incident=incident, kind="escalation", level=2)
    with time_machine.travel(level2.due_at, tick=False):
        escalation.timer_fire(timer_id=level2.pk)
    eleni_page = Notification.objects.get(incident=incident, timer=level2)
    eleni_url = f"/incidents/ack/{acklinks.ack_token(eleni_page.message_id)}/"
    return incident, noa_url, eleni_url


def in_jerusalem(incident) -> str:
    incident.refresh_from_db()
    local = incident.acknowledged_at.astimezone(ZoneInfo("Asia/Jerusalem"))
    return f"{local:%Y-%m-%d %H:%M %Z} (Asia/Jerusalem)"


def test_a_second_recipient_is_told_who_acknowledged_and_when_in_their_time_zone(client, two_paged):
    incident, noa_url, eleni_url = two_paged
    assert client.post(eleni_url).status_code == 200  # Eleni was first
    for page in (client.get(noa_url), client.post(noa_url)):
        text = page.content.decode()
        assert f"Ελένη Παπαδοπούλου acknowledged it at {in_jerusalem(incident)}." in text
        assert incident.reference in text


def test_the_holders_own_time_zone_wins_over_their_rotations(client, two_paged, team):
    from playbooks.models import UserProfile

    incident, noa_url, eleni_url = two_paged
    UserProfile.objects.create(user=team["people"]["noa"], time_zone="Europe/Budapest")
    client.post(eleni_url)
    incident.refresh_from_db()
    local = incident.acknowledged_at.astimezone(ZoneInfo("Europe/Budapest"))
    text = client.get(noa_url).content.decode()
    assert f"acknowledged it at {local:%Y-%m-%d %H:%M %Z} (Europe/Budapest)." in text


def test_a_used_link_says_nothing_even_to_its_holder(client, two_paged):
    """Used is dead: the link may have been forwarded; the incident's page has the rest."""
    incident, noa_url, _eleni_url = two_paged
    client.post(noa_url)
    page = client.get(noa_url)
    assert page.status_code == 404
    text = page.content.decode()
    assert "does not work" in text
    for secret in (incident.reference, incident.title, "נועה"):
        assert secret not in text


def test_a_holder_who_may_no_longer_see_the_incident_is_told_nothing_of_it(client, two_paged, team):
    incident, noa_url, eleni_url = two_paged
    client.post(eleni_url)
    Incident.objects.filter(pk=incident.pk).update(confidential=True)
    after_the_pages = Notification.objects.filter(incident=incident, reason="escalation").latest(
        "created_at"
    )
    with time_machine.travel(after_the_pages.created_at + dt.timedelta(minutes=1)):
        services.role_relieve(incident=incident, role=team["roles"]["crisis-manager"])
    dead = client.get("/incidents/ack/garbage/")
    for page in (client.get(noa_url), client.post(noa_url)):
        text = page.content.decode()
        assert same_page(page, dead)
        for secret in (incident.reference, incident.title, "Ελένη", "Παπαδοπούλου"):
            assert secret not in text
