"""A playbook version says which severities page escalation level 1 at once (issue 10)."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import RequestFactory
from rest_framework.test import APIClient

from playbooks import services
from playbooks.models import EscalationLevel, Playbook
from playbooks.seed import starter_load
from tests.factories import (
    CrisisRoleFactory,
    PlaybookFactory,
    PlaybookStepFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def test_it_is_empty_by_default_and_takes_1_to_4():
    playbook = PlaybookFactory()
    assert playbook.page_at_once_max_severity is None
    playbook.full_clean()
    for good in (1, 2, 3, 4):
        playbook.page_at_once_max_severity = good
        playbook.full_clean()
    for bad in (0, 5):
        playbook.page_at_once_max_severity = bad
        with pytest.raises(ValidationError) as exc:
            playbook.full_clean()
        assert "page_at_once_max_severity" in exc.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        Playbook.objects.filter(pk=playbook.pk).update(page_at_once_max_severity=0)


def test_the_services_set_it_on_a_draft_and_copy_it_into_a_new_version():
    playbook = services.playbook_create(
        data={"key": "outage", "title": "Outage", "scenario": "service_outage"}
    )
    services.playbook_update(playbook=playbook, data={"page_at_once_max_severity": 2})
    with pytest.raises(ValidationError) as exc:
        services.playbook_update(playbook=playbook, data={"page_at_once_max_severity": 7})
    assert "page_at_once_max_severity" in exc.value.message_dict
    playbook.refresh_from_db()
    assert playbook.page_at_once_max_severity == 2
    PlaybookStepFactory(playbook=playbook, position=1)
    EscalationLevel.objects.create(
        playbook=playbook, position=1, delay_seconds=300, target="role", role=CrisisRoleFactory()
    )
    services.playbook_publish(playbook=playbook)
    draft = services.playbook_new_version(playbook=playbook)
    assert draft.version == 2 and draft.page_at_once_max_severity == 2


def test_the_api_shows_it_and_reports_a_bad_value_on_the_field():
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    api = APIClient()
    api.force_authenticate(root)
    playbook = PlaybookFactory()
    answer = api.patch(
        f"/api/v1/playbooks/{playbook.pk}/", {"page_at_once_max_severity": 9}, format="json"
    )
    assert answer.status_code == 400 and "page_at_once_max_severity" in answer.json()
    answer = api.patch(
        f"/api/v1/playbooks/{playbook.pk}/", {"page_at_once_max_severity": 1}, format="json"
    )
    assert answer.status_code == 200, answer.json()
    assert answer.json()["page_at_once_max_severity"] == 1
    answer = api.patch(
        f"/api/v1/playbooks/{playbook.pk}/", {"page_at_once_max_severity": None}, format="json"
    )
    assert answer.status_code == 200 and answer.json()["page_at_once_max_severity"] is None


def test_the_admin_form_has_it():
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    request = RequestFactory().get("/")
    request.user = root
    form_class = admin.site._registry[Playbook].get_form(request)
    data = {"key": "outage", "title": "Outage", "scenario": "other", "review_cycle_days": 180,
            "first_statement_minutes": 60, "escalation_repeat_count": 0,
            "roll_call_minutes": 10, "reply_minutes": 60, "reply_warn_minutes": 15,
            "reply_deadlines": "[]"}  # fmt: skip
    form = form_class(data={**data, "page_at_once_max_severity": 5})
    assert not form.is_valid() and "page_at_once_max_severity" in form.errors
    form = form_class(data={**data, "page_at_once_max_severity": 1})
    assert form.is_valid(), form.errors


def test_every_starter_playbook_pages_a_sev1_at_once():
    starter_load()
    published = Playbook.objects.filter(status=Playbook.Status.PUBLISHED)
    assert published.count() == 5
    assert {p.page_at_once_max_severity for p in published} == {1}
