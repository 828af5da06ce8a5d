"""A playbook's reply deadlines (the listening inbox) travel through the API, the YAML
export and import, bounded by the model."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from playbooks.models import Playbook
from playbooks.playbook_io import playbooks_export_yaml, playbooks_import_yaml
from tests.factories import PlaybookFactory, UserFactory

pytestmark = pytest.mark.django_db

DEADLINES = [
    {"channel": "twitter", "severity": 1, "minutes": 30},
    {"channel": "review", "minutes": 120},
]


def test_the_api_carries_them_and_refuses_a_bad_entry_on_the_field():
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    api = APIClient()
    api.force_authenticate(root)
    playbook = PlaybookFactory()
    url = f"/api/v1/playbooks/{playbook.pk}/"
    answer = api.patch(
        url, {"reply_deadlines": [{"channel": "twitter", "minutes": -5}]}, format="json"
    )
    assert answer.status_code == 400 and "reply_deadlines" in answer.json()
    answer = api.patch(url, {"reply_warn_minutes": 10081}, format="json")
    assert answer.status_code == 400 and "reply_warn_minutes" in answer.json()
    answer = api.patch(
        url,
        {"reply_deadlines": DEADLINES, "reply_minutes": 45, "reply_warn_minutes": 10},
        format="json",
    )
    assert answer.status_code == 200, answer.json()
    assert answer.json()["reply_deadlines"] == DEADLINES and answer.json()["reply_minutes"] == 45
    playbook.refresh_from_db()
    assert playbook.reply_minutes_for(channel="twitter", severity=1) == 30


def test_yaml_round_trip_keeps_them():
    owner = UserFactory(username="owner")
    playbook = PlaybookFactory(
        key="storm", owner=owner, reply_minutes=45, reply_warn_minutes=10, reply_deadlines=DEADLINES
    )
    text = playbooks_export_yaml(playbooks=Playbook.objects.filter(pk=playbook.pk))
    assert "reply_deadlines:" in text and "reply_minutes: 45" in text
    # The same document again: nothing new. With a deadline changed: a new version with it.
    assert playbooks_import_yaml(text=text, actor=owner).created == []
    changed = text.replace("minutes: 120", "minutes: 90")
    created = playbooks_import_yaml(text=changed, actor=owner).created
    assert len(created) == 1 and created[0].reply_deadlines[1]["minutes"] == 90
    assert created[0].reply_minutes == 45 and created[0].reply_warn_minutes == 10
