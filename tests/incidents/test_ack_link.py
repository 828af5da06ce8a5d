"""The one-click acknowledge link: confirmation on GET, acknowledgement on POST, once."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from incidents import acklinks, escalation, services
from incidents.models import Incident, Notification, Timer

pytestmark = pytest.mark.django_db


@pytest.fixture
def paged(team, make_playbook, broker_calls):
    incident = services.incident_open(title="Δεδομένα πελατών εκτέθηκαν", playbook=make_playbook())
    level1 = Timer.objects.get(incident=incident, kind="escalation", level=1)
    with time_machine.travel(level1.due_at, tick=False):
        escalation.timer_fire(timer_id=level1.pk)
    notification = Notification.objects.get(incident=incident)
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


def test_it_refuses_a_used_link_with_a_clear_page(client, paged):
    _incident, _n, url = paged
    client.post(url)
    again = client.post(url)
    assert again.status_code == 410
    assert "already been used" in again.content.decode()
    assert "already been used" in client.get(url).content.decode()


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
    assert "not valid" in response.content.decode()
    assert client.post("/incidents/ack/garbage/").status_code == 404


def test_it_refuses_an_expired_link(client, paged):
    incident, _n, url = paged
    with time_machine.travel(
        dt.datetime.now(dt.UTC) + acklinks.ACK_MAX_AGE + dt.timedelta(minutes=1)
    ):
        response = client.post(url)
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    incident.refresh_from_db()
    assert incident.status == Incident.Status.OPEN


def test_it_renders_right_to_left_in_hebrew(client, paged):
    _incident, _n, url = paged
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="he").content.decode()
    assert 'dir="rtl"' in page and 'lang="he"' in page
