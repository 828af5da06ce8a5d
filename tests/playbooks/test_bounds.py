"""Every duration and count has a bound a crisis team would accept, held by the model and the database."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from playbooks import models as pb
from playbooks import services
from tests.factories import (
    CrisisRoleFactory,
    OnCallRotationFactory,
    PlaybookFactory,
    PlaybookStepFactory,
    StakeholderGroupFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

# (model, field, largest allowed, constraint name)
BOUNDS = [
    (pb.Playbook, "review_cycle_days", 1096, "playbook_review_cycle_days_range"),
    (pb.Playbook, "first_statement_minutes", 10080, "playbook_first_statement_minutes_range"),
    (pb.Playbook, "escalation_repeat_count", 20, "playbook_escalation_repeat_count_range"),
    (pb.Playbook, "page_at_once_max_severity", 4, "playbook_page_at_once_max_severity_range"),
    (pb.Playbook, "roll_call_minutes", 1440, "playbook_roll_call_minutes_range"),
    (pb.PlaybookStep, "due_offset_minutes", 43200, "playbookstep_due_offset_minutes_range"),
    (pb.EscalationLevel, "delay_seconds", 86400, "escalationlevel_delay_seconds_range"),
    (pb.EscalationLevel, "position", 50, "escalationlevel_position_range"),
    (pb.UpdateCadence, "every_minutes", 10080, "cadence_every_minutes_range"),
    (pb.OnCallRotation, "handoff_hours", 2160, "rotation_handoff_hours_range"),
]


@pytest.fixture
def rows():
    playbook = PlaybookFactory()
    role = CrisisRoleFactory()
    return {
        pb.Playbook: playbook,
        pb.PlaybookStep: PlaybookStepFactory(playbook=playbook),
        pb.EscalationLevel: pb.EscalationLevel.objects.create(
            playbook=playbook, position=1, delay_seconds=60, target="role", role=role
        ),
        pb.UpdateCadence: pb.UpdateCadence.objects.create(
            playbook=playbook, audience=StakeholderGroupFactory(), every_minutes=60
        ),
        pb.OnCallRotation: OnCallRotationFactory(role=role),
    }


@pytest.mark.parametrize(("model", "field", "top", "constraint"), BOUNDS)
def test_the_model_refuses_a_value_past_the_bound(rows, model, field, top, constraint):
    obj = rows[model]
    setattr(obj, field, top)
    obj.full_clean()
    setattr(obj, field, top + 1)
    with pytest.raises(ValidationError) as exc:
        obj.full_clean()
    assert field in exc.value.message_dict
    assert str(top) in " ".join(exc.value.message_dict[field])
    help_text = str(model._meta.get_field(field).help_text)
    assert help_text, f"{model.__name__}.{field} says its bound in its help text"


@pytest.mark.parametrize(("model", "field", "top", "constraint"), BOUNDS)
def test_the_database_refuses_a_value_past_the_bound(rows, model, field, top, constraint):
    obj = rows[model]
    assert constraint in {c.name for c in model._meta.constraints}
    with pytest.raises(IntegrityError), transaction.atomic():
        model.objects.filter(pk=obj.pk).update(**{field: top + 1})


def test_escalation_positions_start_at_one_in_the_database(rows):
    level = rows[pb.EscalationLevel]
    with pytest.raises(IntegrityError), transaction.atomic():
        pb.EscalationLevel.objects.filter(pk=level.pk).update(position=0)


def test_the_api_reports_the_bound_as_a_field_error(db):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    api = APIClient()
    api.force_authenticate(root)
    answer = api.post(
        "/api/v1/playbooks/",
        {"key": "big", "title": "Big", "scenario": "other", "review_cycle_days": 10**15},
        format="json",
    )
    assert answer.status_code == 400 and "review_cycle_days" in answer.json()
    playbook = PlaybookFactory()
    answer = api.patch(
        f"/api/v1/playbooks/{playbook.pk}/", {"first_statement_minutes": 10**9}, format="json"
    )
    assert answer.status_code == 400 and "first_statement_minutes" in answer.json()
    answer = api.post(
        "/api/v1/playbook-steps/",
        {"playbook": playbook.pk, "position": 1, "phase": "detect", "title": "x",
         "due_offset_minutes": 9999999999},
        format="json",
    )  # fmt: skip
    assert answer.status_code == 400 and "due_offset_minutes" in answer.json()
    rotation = OnCallRotationFactory()
    answer = api.patch(f"/api/v1/rotations/{rotation.pk}/", {"handoff_hours": 10**6}, format="json")
    assert answer.status_code == 400 and "handoff_hours" in answer.json()
    # Nothing out of bounds got in: the changelist and the reminders still work.
    client = api
    assert client.get("/api/v1/playbooks/").status_code == 200


def test_the_admin_form_reports_the_bound(db):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    request = RequestFactory().get("/")
    request.user = root
    form_class = admin.site._registry[pb.Playbook].get_form(request)
    form = form_class(
        data={"key": "big", "title": "Big", "scenario": "other", "review_cycle_days": 10**15,
              "first_statement_minutes": 60, "escalation_repeat_count": 0}
    )  # fmt: skip
    assert not form.is_valid() and "review_cycle_days" in form.errors


def test_a_risk_review_is_due_within_the_bound(db):
    risk = pb.Risk.objects.create(title="R", category="other", likelihood=1, impact=1, velocity=1)
    services.risk_mark_reviewed(risk=risk, next_review_in_days=1096)
    assert risk.next_review_on == timezone.localdate() + dt.timedelta(days=1096)
    with pytest.raises(ValidationError):
        services.risk_mark_reviewed(risk=risk, next_review_in_days=10**9)
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    api = APIClient()
    api.force_authenticate(root)
    answer = api.post(
        f"/api/v1/risks/{risk.pk}/reviewed/", {"next_review_in_days": 1097}, format="json"
    )
    assert answer.status_code == 400 and "next_review_in_days" in answer.json()


@pytest.mark.parametrize("name", ["x" * 300, "Europe/" + "\U00103915" * 80, "../../etc/passwd", ""])
def test_a_time_zone_name_that_is_no_zone_is_refused_not_a_crash(name):
    """zoneinfo opens a file named after the zone: a long name raised OSError (a 500 in
    the API, found by schemathesis on POST /api/v1/rotations/)."""
    from django.core.exceptions import ValidationError

    from playbooks.models import validate_timezone

    with pytest.raises(ValidationError):
        validate_timezone(name)
