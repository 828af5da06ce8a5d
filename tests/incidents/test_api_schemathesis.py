"""Schemathesis against /api/schema/: generated requests, authenticated as a crisis
manager, never get a 5xx and every documented response conforms to the schema."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from incidents import services as incident_services
from incidents.permissions import ensure_groups
from tests.factories import UserFactory


@pytest.fixture
def api_schema(db, broker_calls, comms_desk):
    # As Django's test client does: the WSGI handler must not close the test's
    # database connection at the end of each request.
    from django.core import signals
    from django.db import close_old_connections

    ensure_groups()
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def token(api_schema, comms_desk):
    from django.contrib.auth.models import Group

    manager = UserFactory(username="schemathesis")
    manager.groups.add(Group.objects.get(name="Crisis managers"))
    # Something to find: a resolved incident with a post-mortem beside the open one.
    done = incident_services.incident_open(title="Lezárt", playbook=comms_desk["incident"].playbook)
    incident_services.incident_resolve(incident=done, actor=manager)
    return Token.objects.create(user=manager).key


# The schema is generated without touching the database, so it loads at collection.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@schema.parametrize()
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_never_fails_and_keeps_to_its_schema(case, token):
    case.call_and_validate(
        headers={"Authorization": f"Token {token}"},
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )
