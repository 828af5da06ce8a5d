"""The war room's Mentions page: list and filters, by hand, CSV import, who sees what."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile

from incidents import services as incident_services
from incidents.listening import services
from incidents.listening.models import Mention
from tests.factories import UserFactory


@pytest.fixture
def listed(broker_calls, manager, webhook):
    secret = incident_services.incident_open(title="Titkos", confidential=True, actor=manager)
    hidden, _c, _f = services.mention_record(
        source=webhook, external_id="h", channel="news", text="Hidden leak story"
    )
    Mention.objects.filter(pk=hidden.pk).update(incident=secret)
    services.mention_record(
        source=webhook, external_id="a", channel="twitter", text="Great service, thanks"
    )
    services.mention_record(
        source=webhook, external_id="b", channel="forum", text="Δεν είναι καλό, απάτη"
    )
    return secret


def test_it_lists_mentions_newest_first_without_hidden_ones(client, listed, responder):
    client.force_login(responder)
    page = client.get("/mentions/").content.decode()
    assert page.index("Δεν είναι καλό") < page.index("Great service")
    assert "Hidden leak story" not in page
    client.force_login(UserFactory(username="exec2"))
    assert client.get("/mentions/").status_code == 403


def test_it_filters_by_channel_and_sentiment(client, listed, manager):
    client.force_login(manager)
    page = client.get("/mentions/?sentiment=-1").content.decode()
    assert "Δεν είναι καλό" in page and "Great service" not in page
    page = client.get("/mentions/?channel=news").content.decode()
    assert "Hidden leak story" in page and "Great service" not in page
    # A bad filter value is ignored, not an error.
    assert client.get("/mentions/?sentiment=9").status_code == 200


def test_it_filters_by_source_and_risk(client, listed, manager, risk):
    client.force_login(manager)
    reviews = services.source_create(name="Review site", slug="reviews", kind="webhook")
    services.mention_record(
        source=reviews, external_id="r", channel="forum", text="Refunds take weeks"
    )
    Mention.objects.filter(text__startswith="Great service").update(risk=risk)
    page = client.get(f"/mentions/?risk={risk.pk}").content.decode()
    assert "Great service" in page
    assert "Δεν είναι καλό" not in page and "Refunds take weeks" not in page
    page = client.get("/mentions/?source=reviews").content.decode()
    assert "Refunds take weeks" in page
    assert "Great service" not in page and "Δεν είναι καλό" not in page


def test_a_mention_is_added_by_hand(client, groups, responder):
    client.force_login(responder)
    response = client.post(
        "/mentions/",
        {"add-text": "Phone call: a customer says the checkout charged twice", "add-channel": "phone",
         "add-author": "Kovács Anna", "add-language": "en"},
    )  # fmt: skip
    assert response.status_code == 302
    row = Mention.objects.get()
    assert row.source.slug == "by-hand" and row.channel == "phone"
    assert row.added_by == responder


def test_a_bad_mention_by_hand_is_refused_with_field_errors(client, groups, responder):
    client.force_login(responder)
    response = client.post(
        "/mentions/", {"add-text": "bad\x00", "add-channel": "myspace", "add-url": "not a url"}
    )
    assert response.status_code == 400
    form = response.context["add_form"]
    assert {"text", "channel", "url"} <= set(form.errors)
    assert not Mention.objects.exists()


def upload(client, text: str):
    return client.post(
        "/mentions/",
        {"csv-file": SimpleUploadedFile("m.csv", text.encode("utf-8"), content_type="text/csv")},
    )


def test_a_csv_import_writes_every_row(client, groups, responder):
    client.force_login(responder)
    response = upload(
        client,
        "\ufeffid;text;channel;author;sentiment;reach;published_at\n"
        "1;Ελληνικά: απάτη;forum;Ελένη;;10;2026-11-26T09:00:00+02:00\n"
        "2;זה לא טוב;review;נועה;negative;;\n",
    )
    assert response.status_code == 302, response.content
    rows = {m.external_id: m for m in Mention.objects.all()}
    assert set(rows) == {"1", "2"} and rows["1"].reach == 10 and rows["2"].sentiment == -1


def test_a_csv_with_bad_rows_names_each_and_writes_nothing(client, groups, responder):
    client.force_login(responder)
    response = upload(
        client,
        "text,channel,reach,published_at,url\nfine,forum,,,\n,myspace,x,yesterday,ftp//bad\n",
    )
    assert response.status_code == 400
    errors = response.context["import_errors"]
    for field in ("text", "channel", "reach", "published_at", "url"):
        assert any(e.startswith(f"row 3, {field}:") for e in errors), (field, errors)
    assert not Mention.objects.exists()


def test_a_csv_with_an_unknown_column_is_refused(client, groups, responder):
    client.force_login(responder)
    response = upload(client, "text,secret\nhello,1\n")
    assert response.status_code == 400
    assert "secret" in response.context["import_errors"][0]
    assert not Mention.objects.exists()


def test_whoever_may_only_read_cannot_post(client, groups):
    reader = UserFactory(username="reader")
    reader.groups.add(Group.objects.get(name="Executives"))
    reader.user_permissions.add(*Permission.objects.filter(codename="view_mention"))
    client.force_login(reader)
    assert client.get("/mentions/").status_code == 200
    assert client.post("/mentions/", {"add-text": "x", "add-channel": "other"}).status_code == 403
    assert not Mention.objects.exists()
