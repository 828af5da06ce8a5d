"""GET /api/v1/users/: whom escalation levels can name, for those who edit them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from rest_framework.test import APIClient

from incidents.permissions import ensure_groups
from tests.factories import CrisisRoleFactory, UserFactory

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def team():
    ensure_groups()
    manager = UserFactory(username="manager", first_name="Mária", last_name="Kovács")
    manager.groups.add(Group.objects.get(name="Crisis managers"))
    responder = UserFactory(username="responder")
    responder.groups.add(Group.objects.get(name="Responders"))
    CrisisRoleFactory(slug="crisis-manager", name="Crisis manager").holders.add(manager)
    return manager, responder


def test_crisis_managers_list_users_with_roles_and_groups(team):
    manager, responder = team
    answer = client_for(manager).get("/api/v1/users/", {"search": "Kovács"})
    assert answer.status_code == 200, answer.content
    (row,) = answer.json()["results"]
    assert row == {
        "id": manager.pk,
        "username": "manager",
        "full_name": "Mária Kovács",
        "email": "manager@example.test",
        "crisis_roles": ["crisis-manager"],
        "groups": ["Crisis managers"],
    }
    by_role = client_for(manager).get("/api/v1/users/", {"crisis_roles": "crisis-manager"})
    assert [u["username"] for u in by_role.json()["results"]] == ["manager"]
    assert client_for(manager).post("/api/v1/users/", {}, format="json").status_code == 405


def test_a_responder_without_the_permission_gets_403(team):
    _manager, responder = team
    assert client_for(responder).get("/api/v1/users/").status_code == 403
    assert APIClient().get("/api/v1/users/").status_code in (401, 403)
    responder.user_permissions.add(Permission.objects.get(codename="view_user"))
    responder = type(responder).objects.get(pk=responder.pk)
    assert client_for(responder).get("/api/v1/users/").status_code == 200
