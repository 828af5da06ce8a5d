"""The triage inbox through its doors: the API (with OpenAPI), the war-room pages, and
what a person who may not see the incident gets (the same as a made-up id)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group

from incidents.listening import inbox
from incidents.listening.models import Mention
from incidents.models import Incident, Message, Timer
from tests.factories import UserFactory
from tests.incidents.conftest import api

pytestmark = pytest.mark.django_db


@pytest.fixture
def outsider(groups):
    """A responder: may view and triage mentions, but holds no role on the incident."""
    user = UserFactory(username="outsider", email="outsider@example.test")
    user.groups.add(Group.objects.get(name="Responders"))
    return user


@pytest.fixture
def hidden(inbox_desk):
    Incident.objects.filter(pk=inbox_desk["incident"].pk).update(confidential=True)
    return inbox_desk


def test_the_api_walks_a_comment_from_new_to_replied(inbox_desk, broker_calls):
    desk, mention = inbox_desk, inbox_desk["mention"]
    eszter, noa = api(desk["eszter"]), api(desk["noa"])
    url = f"/api/v1/mentions/{mention.pk}/"
    answer = eszter.post(url + "needs-reply/", {}, format="json")
    assert answer.status_code == 200, answer.json()
    assert answer.json()["state"] == "needs_reply" and answer.json()["reply_due_at"]
    answer = eszter.post(url + "assign/", {"assignee": desk["eleni"].pk}, format="json")
    assert answer.json()["assignee"] == desk["eleni"].pk
    mine = api(desk["eleni"]).get("/api/v1/mentions/?mine=true&state=needs_reply").json()
    assert [row["id"] for row in mine["results"]] == [mention.pk]
    answer = eszter.post(url + "reply/", {"template": desk["template"].pk}, format="json")
    assert answer.status_code == 200, answer.json()
    reply = answer.json()["reply"]
    assert Message.objects.get(pk=reply).language == "hu"
    # Approved like any message, through the messages API.
    eszter.post(f"/api/v1/messages/{reply}/submit/", {}, format="json")
    refused = noa.post(f"/api/v1/messages/{reply}/approve/", {}, format="json")
    assert refused.status_code == 400 and "boilerplate" in str(refused.json())
    answer = noa.post(
        f"/api/v1/messages/{reply}/approve/", {"accept_boilerplate": True}, format="json"
    )
    assert answer.status_code == 200, answer.json()
    answer = eszter.post(url + "reply/published/", {}, format="json")
    assert answer.status_code == 400 and "url" in answer.json()
    answer = eszter.post(
        url + "reply/published/", {"url": "https://x.example/acme/7"}, format="json"
    )
    assert answer.status_code == 200, answer.json()
    assert answer.json()["state"] == "replied"
    assert answer.json()["reply_url"] == "https://x.example/acme/7"
    assert not Timer.objects.filter(mention=mention, state="pending").exists()


def test_the_api_refuses_bad_input_on_the_field_and_writes_nothing(inbox_desk, broker_calls):
    desk, mention = inbox_desk, inbox_desk["mention"]
    client = api(desk["eszter"])
    url = f"/api/v1/mentions/{mention.pk}/"
    for path, body, field in [
        ("no-reply/", {"reason": "bored"}, "reason"),
        ("no-reply/", {"reason": "other"}, "note"),
        ("dismiss/", {"reason": ""}, "reason"),
        ("dismiss/", {"reason": "x" * 301}, "reason"),
        ("assign/", {"assignee": 999999}, "assignee"),
        ("needs-reply/", {"incident": 999999}, "incident"),
        ("reply/", {"body": "Too early"}, "non_field_errors"),
    ]:
        answer = client.post(url + path, body, format="json")
        assert answer.status_code == 400, (path, answer.content)
        assert field in answer.json() or field == "non_field_errors", (path, answer.json())
    mention.refresh_from_db()
    assert mention.state == Mention.State.NEW and mention.assignee is None


def test_triage_needs_its_permission(inbox_desk, broker_calls):
    viewer = UserFactory(username="exec2")
    viewer.groups.add(Group.objects.get(name="Legal"))  # may view, not triage
    answer = api(viewer).post(
        f"/api/v1/mentions/{inbox_desk['mention'].pk}/dismiss/", {"reason": "x"}, format="json"
    )
    assert answer.status_code == 403


def test_a_hidden_incidents_comment_answers_like_a_made_up_one_everywhere(
    hidden, outsider, client, broker_calls
):
    mention = hidden["mention"]
    who = api(outsider)
    # (Drafting needs *add message*, which a responder lacks: refused before any look-up.)
    for path, status in (("", 404), ("needs-reply/", 404), ("dismiss/", 404), ("reply/", 403)):
        method = who.get if not path else who.post
        real = method(f"/api/v1/mentions/{mention.pk}/{path}", {"reason": "x"}, format="json")
        fake = method(f"/api/v1/mentions/999999/{path}", {"reason": "x"}, format="json")
        assert real.status_code == fake.status_code == status, path
        assert real.json() == fake.json()
    listed = who.get(f"/api/v1/mentions/?incident={hidden['incident'].reference}").json()
    assert listed["results"] == []
    client.force_login(outsider)
    real, fake = client.get(f"/mentions/{mention.pk}/"), client.get("/mentions/999999/")
    assert real.status_code == fake.status_code == 404

    # The same page, but for the address it was asked at and the (masked) CSRF token.
    def page(answer):
        html = answer.content.decode().replace(f"/mentions/{mention.pk}/", "/mentions/999999/")
        return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)

    assert page(real) == page(fake)
    real = client.post(f"/mentions/{mention.pk}/do/dismiss/", {"dismiss-reason": "x"})
    assert real.status_code == 404
    assert "A pénztár" not in client.get("/mentions/").content.decode()
    # Nor can the hidden incident be chosen, nor the comment be given to them.
    listing = client.get("/mentions/").content.decode()
    assert hidden["incident"].reference not in listing
    with pytest.raises(Exception, match="cannot see"):
        inbox.mention_assign(mention=mention, actor=hidden["noa"], assignee=outsider)


def test_the_openapi_document_describes_the_inbox_actions(client):
    schema = client.get("/api/schema/?format=json").json()
    for path in (
        "needs-reply",
        "no-reply",
        "dismiss",
        "reopen",
        "assign",
        "reply",
        "reply/published",
    ):
        assert f"/api/v1/mentions/{{id}}/{path}/" in schema["paths"], path
    assert "reply_deadlines" in str(schema["components"]["schemas"]["Playbook"])


def test_the_pages_triage_draft_and_publish(inbox_desk, client, broker_calls):
    desk, mention = inbox_desk, inbox_desk["mention"]
    client.force_login(desk["eszter"])
    page = client.get("/mentions/?state=new")
    assert page.status_code == 200 and f'data-mention="{mention.pk}"' in page.content.decode()
    answer = client.post(f"/mentions/{mention.pk}/do/needs-reply/", {})
    assert answer.status_code == 302
    listed = client.get("/mentions/?state=needs_reply").content.decode()
    assert 'class="countdown' in listed and f'data-mention="{mention.pk}"' in listed
    refused = client.post(f"/mentions/{mention.pk}/do/dismiss/", {"dismiss-reason": ""})
    assert refused.status_code == 400 and "errorlist" in refused.content.decode()
    answer = client.post(
        f"/mentions/{mention.pk}/do/draft/", {"draft-template": desk["template"].pk}
    )
    mention.refresh_from_db()
    assert answer.status_code == 302
    assert answer["Location"].endswith(f"/messages/{mention.reply_id}/")
    message_page = client.get(answer["Location"]).content.decode()
    assert f"/mentions/{mention.pk}/" in message_page  # the way back to publish it
    from incidents import comms

    comms.message_submit(message=mention.reply, actor=desk["eszter"])
    comms.message_approve(message=mention.reply, approver=desk["noa"], accept_boilerplate=True)
    # The message's own page offers no publish form: the comment's page records where.
    message_page = client.get(answer["Location"]).content.decode()
    assert "/do/publish/" not in message_page
    page = client.get(f"/mentions/{mention.pk}/").content.decode()
    assert 'id="publish-form"' in page
    bad = client.post(f"/mentions/{mention.pk}/do/publish/", {"publish-url": "nonsense"})
    assert bad.status_code == 400
    ok = client.post(f"/mentions/{mention.pk}/do/publish/", {"publish-by_email": "on"})
    assert ok.status_code == 302
    mention.refresh_from_db()
    assert mention.state == Mention.State.REPLIED and mention.replied_via == "email"
    assert 'id="replied"' in client.get(f"/mentions/{mention.pk}/").content.decode()


def test_the_incident_page_counts_its_comments_to_answer(inbox_desk, client, broker_calls):
    desk = inbox_desk
    client.force_login(desk["eszter"])
    url = f"/incidents/{desk['incident'].reference}/"
    assert 'id="to-answer"' not in client.get(url).content.decode()
    inbox.mention_needs_reply(mention=desk["mention"], actor=desk["noa"])
    page = client.get(url).content.decode()
    assert 'id="to-answer"' in page and "1 waiting" in page
    assert f"?incident={desk['incident'].reference}&amp;state=needs_reply" in page
