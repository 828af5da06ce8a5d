"""The public title: the status page, its feeds and subscribers' e-mails never show the
internal title; the admin and the API set the public one."""

from __future__ import annotations

import feedparser
import pytest
from django.core import mail
from django.db import DataError, IntegrityError, transaction

from incidents import services as incident_services
from incidents.models import Incident, Notification
from tests.incidents.conftest import api
from tests.statuspage.conftest import publish

pytestmark = pytest.mark.django_db

INTERNAL = "Vendor X's API key leaked by Bob"


def _public_texts(client, reference: str) -> list[str]:
    paths = (
        "/status/",
        f"/status/{reference}/",
        "/status/feed.atom",
        f"/status/{reference}/feed.atom",
    )
    bodies = []
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, path
        bodies.append(response.content.decode())
    return bodies


def _internal_incident(desk) -> Incident:
    incident = desk["incident"]
    incident.title = INTERNAL
    incident.category = "service_outage"
    incident.save()
    return incident


def test_it_never_shows_the_internal_title_but_a_neutral_one(client, desk):
    incident = _internal_incident(desk)
    publish(desk, "Card payments fail; we are on it.")  # no subject: the feed needs a heading
    for body in _public_texts(client, incident.reference):
        assert INTERNAL not in body and "Vendor X" not in body
        assert "Service disruption" in body
    feed = feedparser.parse(client.get(f"/status/{incident.reference}/feed.atom").content)
    assert feed.feed.title == f"{incident.reference}: Service disruption"
    assert feed.entries[0].title == f"{incident.reference}: Service disruption"


def test_it_shows_the_public_title_when_set(client, desk, django_capture_on_commit_callbacks):
    incident = _internal_incident(desk)
    publish(desk, "Card payments fail; we are on it.")
    with django_capture_on_commit_callbacks(execute=True):
        incident_services.incident_set_public_title(
            incident=incident, public_title="Card payments unavailable – Ünicode ✓", actor=None
        )
    for body in _public_texts(client, incident.reference):
        assert INTERNAL not in body
        assert "Card payments unavailable – Ünicode ✓" in body
        assert "Service disruption" not in body


def test_the_neutral_title_follows_the_category_and_the_language(desk):
    incident = desk["incident"]
    for category, words in (("data_breach", "Data security incident"), ("other", "Service notice")):
        incident.category = category
        assert incident.public_heading == words
    from django.utils import translation

    incident.category = "service_outage"
    with translation.override("en"):
        assert incident.public_heading == "Service disruption"


def test_a_subscription_e_mail_names_the_incident_by_its_public_title(client, desk):
    incident = _internal_incident(desk)
    publish(desk, "Card payments fail; we are on it.")
    mail.outbox.clear()
    response = client.post(
        "/status/subscribe/",
        {"email": "reader@example.test", "language": "en", "incident": incident.reference},
    )
    assert response.status_code == 200
    sent = Notification.objects.get(to_email="reader@example.test")
    for text in (sent.subject, sent.body_text, sent.body_html):
        assert INTERNAL not in text
    assert "Service disruption" in sent.body_text


def test_the_api_sets_the_public_title_and_refuses_a_too_long_one(superuser, desk):
    incident = desk["incident"]
    client = api(superuser)
    url = f"/api/v1/incidents/{incident.pk}/public-title/"
    answer = client.post(url, {"public_title": "  Tracking delayed  "}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["public_title"] == "Tracking delayed"
    too_long = client.post(url, {"public_title": "x" * 301}, format="json")
    assert too_long.status_code == 400
    assert "public_title" in too_long.json()
    incident.refresh_from_db()
    assert incident.public_title == "Tracking delayed"  # nothing half-written
    cleared = client.post(url, {"public_title": ""}, format="json")
    assert cleared.status_code == 200 and cleared.json()["public_title"] == ""


def test_the_api_answers_a_hidden_incident_like_a_made_up_one(matrix):
    outsider = matrix["people"]["outsider"]
    secret = matrix["secret"]
    client = api(outsider)
    hidden = client.post(f"/api/v1/incidents/{secret.pk}/public-title/", {"public_title": "x"})
    made_up = client.post("/api/v1/incidents/999999/public-title/", {"public_title": "x"})
    assert hidden.status_code == made_up.status_code
    assert hidden.json() == made_up.json()
    secret.refresh_from_db()
    assert secret.public_title == ""


def test_the_admin_edits_the_public_title(admin_client, desk):
    incident = desk["incident"]
    page = admin_client.get(f"/admin/incidents/incident/{incident.pk}/change/")
    assert 'name="public_title"' in page.content.decode()


def test_the_database_bounds_the_public_title(desk):
    incident = desk["incident"]
    with (
        pytest.raises((IntegrityError, DataError)),
        transaction.atomic(),
    ):  # DataError: PostgreSQL varchar
        Incident.objects.filter(pk=incident.pk).update(public_title="x" * 301)


def test_a_template_for_a_public_audience_fills_in_the_public_title(desk):
    from incidents import comms

    incident = _internal_incident(desk)
    public = comms.incident_facts(incident=incident, audience=desk["customers"])
    assert public["incident_title"] == "Service disruption"
    incident.public_title = "Tracking delayed"
    assert (
        comms.incident_facts(incident=incident, audience=desk["customers"])["incident_title"]
        == "Tracking delayed"
    )
    internal = comms.incident_facts(incident=incident, audience=desk["employees"])
    assert desk["employees"].public is False
    assert internal["incident_title"] == INTERNAL
