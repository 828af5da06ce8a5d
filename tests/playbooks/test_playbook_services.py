"""One place for the playbook rules: the admin and the API call the same services."""

from __future__ import annotations

import datetime as dt
import inspect

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from playbooks import services
from playbooks.models import EscalationLevel, Playbook, PlaybookStep, Risk
from tests.factories import CrisisRoleFactory, PlaybookFactory, PlaybookStepFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def root():
    return UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def api(root):
    client = APIClient()
    client.force_authenticate(root)
    return client


@pytest.fixture
def browser(root):
    client = Client()
    client.force_login(root)
    return client


@pytest.fixture
def published():
    playbook = PlaybookFactory(title="Outage")
    PlaybookStepFactory(playbook=playbook, position=1)
    EscalationLevel.objects.create(
        playbook=playbook, position=1, delay_seconds=60, target="role", role=CrisisRoleFactory()
    )
    return services.playbook_publish(playbook=playbook)


def test_the_services_take_keyword_only_arguments():
    for name in (
        "playbook_create",
        "playbook_update",
        "playbook_delete",
        "playbook_content_save",
        "playbook_content_delete",
    ):
        params = inspect.signature(getattr(services, name)).parameters.values()
        assert params and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params), name


def test_a_frozen_playbook_refuses_edits_alike_in_the_admin_and_the_api(published, api, browser):
    with pytest.raises(ValidationError) as exc:
        services.playbook_update(playbook=published, data={"title": "Changed"})
    message = exc.value.messages[0]
    assert "cannot be changed" in message

    answer = api.patch(f"/api/v1/playbooks/{published.pk}/", {"title": "x"}, format="json")
    assert answer.status_code == 400 and message in str(answer.json())

    inlines = {}
    for prefix in ("steps", "templates", "escalation_levels", "cadences"):
        inlines.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    page = browser.post(
        reverse("admin:playbooks_playbook_change", args=[published.pk]), {**inlines}
    )
    assert page.status_code == 200 and "cannot be changed" in page.content.decode()
    published.refresh_from_db()
    assert published.title == "Outage"

    with pytest.raises(ValidationError, match="cannot be changed"):
        services.playbook_content_save(
            instance=PlaybookStep(playbook=published, position=2, phase="detect", title="Sneak")
        )
    with pytest.raises(ValidationError, match="cannot be changed"):
        services.playbook_content_delete(instance=published.steps.get())
    with pytest.raises(ValidationError, match="cannot be changed"):
        services.playbook_delete(playbook=published)
    answer = api.delete(f"/api/v1/playbooks/{published.pk}/")
    assert answer.status_code == 400 and message in str(answer.json())


def test_create_update_and_delete_go_through_the_services(api, root):
    playbook = services.playbook_create(
        data={"key": "fraud", "title": "Fraud", "scenario": "other"}
    )
    assert (playbook.version, playbook.status) == (1, "draft")
    with pytest.raises(ValidationError) as exc:
        services.playbook_create(data={"key": "fraud", "title": "Again", "scenario": "other"})
    assert "key" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        services.playbook_update(playbook=playbook, data={"key": "other-key"})
    assert "key" in exc.value.message_dict
    updated = services.playbook_update(playbook=playbook, data={"title": "Supplier fraud"})
    assert updated.title == "Supplier fraud"
    services.playbook_delete(playbook=playbook)
    assert not Playbook.objects.filter(key="fraud").exists()


def test_escalation_positions_are_one_to_n_through_the_api(api):
    playbook = PlaybookFactory()
    role = CrisisRoleFactory()

    def add(position):
        return api.post(
            "/api/v1/escalation-levels/",
            {"playbook": playbook.pk, "position": position, "delay_seconds": 60,
             "target": "role", "role": role.pk},
            format="json",
        )  # fmt: skip

    zero = add(0)
    assert zero.status_code == 400 and "position" in zero.json()
    gap = add(2)
    assert gap.status_code == 400 and "position" in gap.json()
    assert add(1).status_code == 201
    duplicate = add(1)
    assert duplicate.status_code == 400 and "position" in duplicate.json()
    assert add(2).status_code == 201
    assert add(3).status_code == 201
    middle = playbook.escalation_levels.get(position=2)
    moved = api.patch(f"/api/v1/escalation-levels/{middle.pk}/", {"position": 7}, format="json")
    assert moved.status_code == 400 and "position" in moved.json()
    assert api.delete(f"/api/v1/escalation-levels/{middle.pk}/").status_code == 204
    # The later level moves up: the e-mails say the same number as the playbook.
    assert list(playbook.escalation_levels.values_list("position", flat=True)) == [1, 2]


def test_escalation_positions_are_one_to_n_in_the_admin(browser):
    playbook = PlaybookFactory()
    role = CrisisRoleFactory()
    data = {
        "key": playbook.key, "title": playbook.title, "scenario": playbook.scenario,
        "review_cycle_days": 180, "first_statement_minutes": 60, "escalation_repeat_count": 0,
        "roll_call_minutes": 10, "reply_minutes": 60, "reply_warn_minutes": 15,
        "reply_deadlines": "[]",
        "steps-TOTAL_FORMS": "0", "steps-INITIAL_FORMS": "0",
        "templates-TOTAL_FORMS": "0", "templates-INITIAL_FORMS": "0",
        "cadences-TOTAL_FORMS": "0", "cadences-INITIAL_FORMS": "0",
        "escalation_levels-TOTAL_FORMS": "2", "escalation_levels-INITIAL_FORMS": "0",
    }  # fmt: skip
    for n, position in enumerate((1, 3)):
        data.update(
            {
                f"escalation_levels-{n}-position": str(position),
                f"escalation_levels-{n}-delay_seconds": "60",
                f"escalation_levels-{n}-target": "role",
                f"escalation_levels-{n}-role": str(role.pk),
            }
        )
    url = reverse("admin:playbooks_playbook_change", args=[playbook.pk])
    page = browser.post(url, data)
    assert page.status_code == 200 and "1, 2" in page.content.decode()
    assert not playbook.escalation_levels.exists()
    data["escalation_levels-1-position"] = "2"
    assert browser.post(url, data).status_code == 302
    assert list(playbook.escalation_levels.values_list("position", flat=True)) == [1, 2]


def test_publishing_rules_are_documented_and_answered_per_field(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    publish = schema["paths"]["/api/v1/playbooks/{id}/publish/"]["post"]
    assert "step" in publish["description"] and "escalation level" in publish["description"]
    playbook = PlaybookFactory()
    answer = api.post(f"/api/v1/playbooks/{playbook.pk}/publish/")
    assert answer.status_code == 400
    assert set(answer.json()) >= {"steps", "escalation_levels"}, answer.json()


def test_a_closed_risk_is_never_overdue_in_the_api(api):
    past = timezone.localdate() - dt.timedelta(days=3)
    closed = Risk.objects.create(
        title="Old", category="other", likelihood=1, impact=1, velocity=1,
        status=Risk.Status.CLOSED, next_review_on=past,
    )  # fmt: skip
    open_ = Risk.objects.create(
        title="Open", category="other", likelihood=1, impact=1, velocity=1, next_review_on=past
    )
    assert api.get(f"/api/v1/risks/{closed.pk}/").json()["review_overdue"] is False
    assert api.get(f"/api/v1/risks/{open_.pk}/").json()["review_overdue"] is True
