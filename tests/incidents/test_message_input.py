"""Messages: a language the desk speaks and a subject that fits, checked by the service."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from incidents import comms
from incidents.permissions import ensure_groups
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def writer(broker_calls, comms_desk):
    ensure_groups()
    user = UserFactory(username="writer")
    user.groups.add(Group.objects.get(name="Communications"))
    client = APIClient()
    client.force_authenticate(user)
    return client, user


def test_the_service_refuses_an_unknown_language_and_a_long_subject(comms_desk, writer):
    _client, user = writer
    base = {
        "incident": comms_desk["incident"],
        "author": user,
        "audience": comms_desk["customers"],
        "channel": "website",
        "body": "We are investigating.",
    }
    with pytest.raises(ValidationError) as exc:
        comms.message_draft(**base, language="xx", subject="s" * 1000)
    assert set(exc.value.message_dict) == {"language", "subject"}
    message = comms.message_draft(**base, language="he")
    with pytest.raises(ValidationError) as exc:
        comms.message_edit(message=message, editor=user, subject="s" * 401, body="Still.")
    assert set(exc.value.message_dict) == {"subject"}


def test_the_api_answers_400_with_field_messages(comms_desk, writer):
    client, _user = writer
    draft = {
        "incident": comms_desk["incident"].pk,
        "audience": comms_desk["customers"].pk,
        "channel": "website",
        "body": "We are investigating.",
    }
    bad = client.post("/api/v1/messages/", {**draft, "language": "xx"}, format="json")
    assert bad.status_code == 400 and "language" in bad.json(), bad.content
    long = client.post("/api/v1/messages/", {**draft, "subject": "s" * 1000}, format="json")
    assert long.status_code == 400 and "subject" in long.json(), long.content
    made = client.post("/api/v1/messages/", draft, format="json")
    assert made.status_code == 201
    edit = client.post(
        f"/api/v1/messages/{made.json()['id']}/edit/",
        {"subject": "s" * 1000, "body": "x"},
        format="json",
    )
    assert edit.status_code == 400 and "subject" in edit.json(), edit.content


def test_the_admin_form_says_the_same(comms_desk, writer, admin_client):
    page = admin_client.post(
        "/admin/incidents/message/add/",
        {
            "incident": comms_desk["incident"].pk,
            "audience": comms_desk["customers"].pk,
            "channel": "website",
            "language": "xx",
            "subject": "Update",
            "body": "We are investigating.",
        },
    )
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert "language" in form.errors and "“xx” is not one of" in str(form.errors["language"])
