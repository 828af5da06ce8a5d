"""Sources, mentions and rules through the API, as each person may see them."""

from __future__ import annotations

import pytest

from incidents import services as incident_services
from incidents.listening import services
from incidents.listening.models import ListeningRule, Mention, Source


@pytest.fixture
def hidden(broker_calls, manager, responder, webhook):
    """A mention on a confidential incident, and one on none."""
    secret = incident_services.incident_open(title="Titkos", confidential=True, actor=manager)
    on_secret, _c, _f = services.mention_record(source=webhook, external_id="s", text="secret")
    Mention.objects.filter(pk=on_secret.pk).update(incident=secret)
    free, _c, _f = services.mention_record(source=webhook, external_id="f", text="free")
    return on_secret, free


def test_a_mention_of_a_hidden_incident_answers_like_a_made_up_one(client, hidden, responder):
    on_secret, free = hidden
    client.force_login(responder)
    listed = client.get("/api/v1/mentions/").json()["results"]
    assert [row["id"] for row in listed] == [free.pk]
    hidden_answer = client.get(f"/api/v1/mentions/{on_secret.pk}/")
    made_up = client.get("/api/v1/mentions/999999/")
    assert hidden_answer.status_code == made_up.status_code == 404
    assert hidden_answer.json() == made_up.json()


def test_a_crisis_manager_sees_both_with_the_incident_reference(client, hidden, manager):
    client.force_login(manager)
    rows = client.get("/api/v1/mentions/?source=social").json()["results"]
    assert len(rows) == 2
    secret = Mention.objects.get(pk=hidden[0].pk).incident
    assert {row["incident"] for row in rows} == {None, secret.reference}


def test_an_outsider_sees_no_mentions(client, hidden, db):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="outsider"))
    assert client.get("/api/v1/mentions/").status_code == 403


def test_a_source_shows_its_secret_once(client, manager):
    client.force_login(manager)
    created = client.post(
        "/api/v1/sources/",
        {"name": "Reviews", "slug": "reviews", "kind": "webhook", "channel": "review"},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    assert len(secret) == 64 and Source.objects.get().secret == secret
    shown = client.get(f"/api/v1/sources/{created.json()['id']}/").json()
    assert "secret" not in shown
    rotated = client.post(f"/api/v1/sources/{created.json()['id']}/rotate-secret/").json()
    assert rotated["secret"] != secret


def test_a_feed_source_needs_its_address(client, manager):
    client.force_login(manager)
    response = client.post(
        "/api/v1/sources/",
        {"name": "Alerts", "slug": "alerts", "kind": "feed"},
        content_type="application/json",
    )
    assert response.status_code == 400 and "feed_url" in response.json()


def test_a_source_with_mentions_is_disabled_not_deleted(client, hidden, manager, webhook):
    client.force_login(manager)
    response = client.delete(f"/api/v1/sources/{webhook.pk}/")
    assert response.status_code == 400
    assert Source.objects.filter(pk=webhook.pk).exists()


def test_rules_are_bounded_with_field_messages(client, manager, risk):
    client.force_login(manager)
    base = {"risk": risk.pk, "name": "Spike", "window_minutes": 10}
    cases = [
        ({**base, "keywords": ["x"] * 51, "threshold_count": 5}, "keywords"),
        ({**base, "keywords": ["x" * 101], "threshold_count": 5}, "keywords"),
        ({**base, "channels": ["myspace"], "threshold_count": 5}, "channels"),
        ({**base, "threshold_count": 0}, "threshold_count"),
        ({**base, "window_minutes": 100_000, "threshold_count": 5}, "window_minutes"),
        ({**base, "negative_percent": 100}, "negative_percent"),
        (base, "threshold_count"),  # nothing would ever fire it
    ]
    for body, field in cases:
        response = client.post("/api/v1/listening-rules/", body, content_type="application/json")
        assert response.status_code == 400, (body, response.content)
        assert field in response.json(), (field, response.json())
    assert not ListeningRule.objects.exists()
    good = client.post(
        "/api/v1/listening-rules/",
        {**base, "keywords": ["adatszivárgás", "διαρροή"], "threshold_count": 5},
        content_type="application/json",
    )
    assert good.status_code == 201, good.content


def test_the_admin_shows_a_new_source_secret_once_and_hides_mentions_of_hidden_incidents(
    client, hidden, responder, manager
):
    responder.is_staff = True
    responder.save()
    client.force_login(responder)
    listing = client.get("/admin/listening/mention/").content.decode()
    assert f"/admin/listening/mention/{hidden[1].pk}/change/" in listing
    assert f"/admin/listening/mention/{hidden[0].pk}/change/" not in listing
    assert client.get(f"/admin/listening/mention/{hidden[0].pk}/change/").status_code in (302, 404)

    manager.is_staff = True
    manager.save()
    client.force_login(manager)
    response = client.post(
        "/admin/listening/source/add/",
        {"name": "Reviews", "slug": "reviews", "kind": "webhook", "channel": "review",
         "poll_minutes": 15, "enabled": "on", "feed_url": ""},
    )  # fmt: skip
    assert response.status_code == 200, response.content
    source = Source.objects.get(slug="reviews")
    assert source.secret in response.content.decode()
    assert (
        source.secret
        not in client.get(f"/admin/listening/source/{source.pk}/change/").content.decode()
    )
