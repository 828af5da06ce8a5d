from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from incidents.permissions import ensure_groups
from tests.factories import UserFactory
from tests.incidents.conftest import (  # noqa: F401 - fixtures shared with the API tests
    PERSONAS,
    broker_calls,
    comms_desk,
    make_playbook,
    matrix,
    team,
)


@pytest.fixture
def desk(broker_calls, comms_desk):  # noqa: F811
    ensure_groups()
    return comms_desk


def member(username, *groups, **extra):
    user = UserFactory(username=username, email=f"{username}@example.test", **extra)
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
    return user


@pytest.fixture
def responder(desk):
    return member("resp", "Responders")


@pytest.fixture
def manager(desk):
    return member("boss", "Crisis managers")


__all__ = ["PERSONAS", "member"]
