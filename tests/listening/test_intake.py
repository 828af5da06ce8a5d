"""The signed webhook intake: what it accepts, and what it refuses without writing."""

from __future__ import annotations

import json
import time

import pytest

from incidents.listening.models import Mention, SeenSignature
from incidents.listening.signing import sign
from tests.listening.conftest import mention, signed_post

pytestmark = pytest.mark.django_db


def test_it_accepts_a_signed_mention_and_computes_its_sentiment(client, webhook):
    payload = mention(1, text="Δεν είναι καλό, απάτη!", language="el", reach=1200)
    response = signed_post(client, webhook, payload)
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 1
    row = Mention.objects.get()
    assert (row.source, row.external_id, row.channel) == (webhook, "m-1", "twitter")
    assert row.text == "Δεν είναι καλό, απάτη!"
    assert row.sentiment == -1 and not row.sentiment_given
    assert row.reach == 1200 and row.language == "el"


def test_it_keeps_a_sentiment_the_sender_gives(client, webhook):
    signed_post(client, webhook, mention(1, text="Terrible", sentiment=0.4))
    row = Mention.objects.get()
    assert row.sentiment == 1 and row.sentiment_given


def test_it_is_idempotent_on_the_item_id(client, webhook):
    assert signed_post(client, webhook, mention(1)).status_code == 202
    # A retry signed anew (a new timestamp): accepted, no second row.
    again = signed_post(client, webhook, mention(1), timestamp=int(time.time()) + 1)
    assert again.status_code == 202
    assert again.json()["duplicates"] == 1 and again.json()["accepted"] == 0
    assert Mention.objects.count() == 1


def test_it_takes_several_items_at_once(client, webhook):
    response = signed_post(client, webhook, {"items": [mention(1), mention(2), mention(1)]})
    assert response.status_code == 202
    assert response.json()["accepted"] == 2 and response.json()["duplicates"] == 1


def test_it_refuses_a_bad_signature_and_writes_nothing(client, webhook):
    response = signed_post(client, webhook, mention(1), signature="sha256=" + "0" * 64)
    assert response.status_code == 401
    assert not Mention.objects.exists() and not SeenSignature.objects.exists()


def test_it_refuses_a_missing_signature(client, webhook):
    body = json.dumps(mention(1)).encode()
    response = client.post(
        f"/api/v1/intake/{webhook.slug}/", data=body, content_type="application/json"
    )
    assert response.status_code == 401
    assert not Mention.objects.exists()


def test_it_refuses_a_signature_made_with_another_secret(client, webhook):
    body = json.dumps(mention(1)).encode()
    ts = str(int(time.time()))
    response = signed_post(
        client, webhook, None, raw=body, signature=sign(secret="x" * 64, timestamp=ts, body=body)
    )
    assert response.status_code == 401


@pytest.mark.parametrize("offset", [-301, 400])
def test_it_refuses_a_stale_or_future_timestamp(client, webhook, offset):
    response = signed_post(client, webhook, mention(1), timestamp=int(time.time()) + offset)
    assert response.status_code == 401
    assert "300" in response.json()["detail"]
    assert not Mention.objects.exists()


def test_it_refuses_a_replayed_request_and_writes_nothing_more(client, webhook):
    body = json.dumps(mention(1)).encode()
    ts = str(int(time.time()))
    signature = sign(secret=webhook.secret, timestamp=ts, body=body)
    assert (
        signed_post(client, webhook, None, raw=body, timestamp=ts, signature=signature).status_code
        == 202
    )
    replay = signed_post(client, webhook, None, raw=body, timestamp=ts, signature=signature)
    assert replay.status_code == 409
    assert Mention.objects.count() == 1 and SeenSignature.objects.count() == 1


def test_it_refuses_an_oversized_body_before_reading_it(client, webhook):
    payload = mention(1, text="x" * 300_000)
    response = signed_post(client, webhook, payload)
    assert response.status_code == 413
    assert not Mention.objects.exists() and not SeenSignature.objects.exists()


def test_it_answers_bad_fields_with_messages_and_writes_nothing(client, webhook):
    bad = {"items": [mention(1), {"id": "m-2", "channel": "myspace", "text": ""}]}
    response = signed_post(client, webhook, bad)
    assert response.status_code == 400
    errors = response.json()["items[1]"]
    assert "channel" in errors and "text" in errors
    assert not Mention.objects.exists() and not SeenSignature.objects.exists()


def test_it_refuses_a_control_character_in_the_text(client, webhook):
    response = signed_post(client, webhook, mention(1, text="nul\x00byte"))
    assert response.status_code == 400
    assert not Mention.objects.exists()


def test_it_refuses_a_body_that_is_not_json(client, webhook):
    response = signed_post(client, webhook, None, raw=b"\xff\xfe not json")
    assert response.status_code == 400
    assert not Mention.objects.exists()


def test_an_unknown_or_disabled_source_answers_alike(client, webhook):
    webhook.enabled = False
    webhook.save()
    disabled = signed_post(client, webhook, mention(1))
    webhook.slug = "made-up"
    made_up = signed_post(client, webhook, mention(1))
    assert disabled.status_code == made_up.status_code == 404
    assert disabled.json() == made_up.json()


def test_the_schema_documents_the_intake(client):
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/intake/{slug}/"]["post"]
    assert "X-CrisisDesk-Signature" in {p["name"] for p in operation["parameters"]}
    assert "<timestamp>.<body>" in operation["description"]
    assert {"202", "401", "409", "413"} <= set(operation["responses"])
