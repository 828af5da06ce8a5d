"""The communications timeline in the admin and as a page for the crisis team."""

from __future__ import annotations

import pytest
from django.urls import reverse

from incidents import comms
from incidents.models import Message
from tests.incidents.conftest import (
    FACTS,
    written_in_every_language,  # noqa: E402
)
from tests.incidents.test_comms import approved, desk  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


def test_a_team_goes_from_template_to_sent_and_corrected_in_the_admin(client, desk):  # noqa: F811
    from django.contrib.auth.models import Permission

    author, lawyer = desk["eszter"], desk["lawyer"]
    for user in (author, lawyer):
        user.is_staff = True
        user.save()
        user.user_permissions.add(*Permission.objects.filter(content_type__app_label="incidents"))
    client.force_login(author)
    response = client.post(
        reverse("admin:incidents_message_add"),
        {
            "incident": desk["incident"].pk,
            "template": desk["template"].pk,
            "audience": desk["customers"].pk,
            "channel": "email",
            "language": "en",
            "subject": "",
            "body": "",
            **FACTS,
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    message = Message.objects.get()
    assert "card data of 1,200 customers" in message.body and message.author == author

    change = reverse("admin:incidents_message_change", args=[message.pk])
    page = client.get(change).content.decode()
    assert "reads as boilerplate" in page
    inline_forms = {
        f"{p}-{k}": 0 for p in ("revisions", "deliveries") for k in ("TOTAL_FORMS", "INITIAL_FORMS")
    }
    edit = client.post(
        change,
        {"subject": message.subject, "body": message.body + " We are truly sorry.", **inline_forms},
    )
    assert edit.status_code == 302
    message.refresh_from_db()
    assert message.revisions.count() == 1 and not message.reads_as_boilerplate
    # The variants are on the admin page, each flagged until written in its own language
    # (they are written in the war room, which the page links to).
    page = client.get(change).content.decode()
    assert "not translated" in page and 'lang="he"' in page
    assert reverse("warroom:message", args=[desk["incident"].reference, message.pk]) in page
    message = written_in_every_language(message)

    changelist = reverse("admin:incidents_message_changelist")
    client.post(changelist, {"action": "submit", "_selected_action": [message.pk]})
    own = client.post(
        changelist, {"action": "approve", "_selected_action": [message.pk]}, follow=True
    )
    assert "their own message" in own.content.decode()

    client.force_login(lawyer)
    client.post(changelist, {"action": "approve", "_selected_action": [message.pk]})
    client.post(changelist, {"action": "send", "_selected_action": [message.pk]})
    message.refresh_from_db()
    assert message.status == "sent" and message.deliveries.count() == 4

    response = client.post(changelist, {"action": "correct", "_selected_action": [message.pk]})
    correction = Message.objects.get(corrects=message)
    assert response["Location"] == reverse("admin:incidents_message_change", args=[correction.pk])

    timeline = client.get(
        reverse("incidents:communications", args=[desk["incident"].reference])
    ).content.decode()
    assert (
        f'id="message-{message.pk}"' in timeline and f"Corrects message #{message.pk}" in timeline
    )
    assert "Approved by" in timeline and "anna@example.test" in timeline and "Edited by" in timeline


def test_publishing_asks_where_it_was_published(client, desk):  # noqa: F811
    desk["lawyer"].is_staff = desk["lawyer"].is_superuser = True
    desk["lawyer"].save()
    client.force_login(desk["lawyer"])
    message = comms.message_draft(
        incident=desk["incident"],
        author=desk["eszter"],
        audience=desk["customers"],
        channel="website",
        body="We are on it.",
    )
    message = written_in_every_language(message)
    comms.message_submit(message=message, actor=desk["eszter"])
    comms.message_approve(message=message, approver=desk["lawyer"])
    changelist = reverse("admin:incidents_message_changelist")
    form = client.post(changelist, {"action": "publish", "_selected_action": [message.pk]})
    assert form.status_code == 200 and "Published where" in form.content.decode()
    client.post(
        changelist,
        {
            "action": "publish",
            "_selected_action": [message.pk],
            "apply": "1",
            "where": "https://status.example.test/inc",
        },
    )
    message.refresh_from_db()
    assert (
        message.status == "published"
        and message.published_where == "https://status.example.test/inc"
    )


def test_the_timeline_page_filters_and_is_for_whoever_may_read_messages(client, desk):  # noqa: F811
    from django.contrib.auth.models import Group

    from incidents.permissions import ensure_groups
    from tests.factories import UserFactory

    url = reverse("incidents:communications", args=[desk["incident"].reference])
    assert client.get(url).status_code == 302  # anonymous: to the login
    client.force_login(UserFactory(is_staff=True))  # staff, but not allowed to read messages
    assert client.get(url).status_code == 403
    ensure_groups()
    reader = UserFactory()  # not staff: an executive reads the messages
    reader.groups.add(Group.objects.get(name="Executives"))
    memo = comms.message_draft(
        incident=desk["incident"],
        author=desk["eszter"],
        audience=desk["employees"],
        channel="internal",
        body="Internal memo text",
    )
    sent = approved(desk)
    client.force_login(reader)
    page = client.get(url + "?channel=internal").content.decode()
    assert "Internal memo text" in page and sent.subject not in page
    page = client.get(url + "?audience=customers").content.decode()
    assert "Internal memo text" not in page
    assert memo.pk
    he = client.get(url, HTTP_ACCEPT_LANGUAGE="he").content.decode()
    assert 'dir="rtl"' in he
