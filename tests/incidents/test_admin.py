"""The incidents admin: opening through the service, actions, read-only record."""

import pytest
from django.urls import reverse

from incidents.models import Incident, Notification, Timer

pytestmark = pytest.mark.django_db


def test_it_opens_an_incident_from_the_admin_through_the_service(
    admin_client, team, make_playbook, broker_calls
):
    playbook = make_playbook()
    response = admin_client.post(
        reverse("admin:incidents_incident_add"),
        {
            "title": "Vásárlói adatok szivárogtak ki",
            "summary": "",
            "severity": 1,
            "category": "",
            "playbook": playbook.pk,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    incident = Incident.objects.get()
    assert response["Location"] == reverse("admin:incidents_incident_change", args=[incident.pk])
    assert incident.category == playbook.scenario
    assert Timer.objects.filter(incident=incident, kind="escalation", level=1).exists()
    assert incident.tasks.count() == 2

    page = admin_client.get(response["Location"]).content.decode()
    for text in ("Vásárlói adatok szivárogtak ki", "append-only", "Escalation level"):
        assert text in page


def test_it_refuses_a_draft_playbook_in_the_add_form(admin_client, team):
    from tests.factories import PlaybookFactory

    draft = PlaybookFactory()
    response = admin_client.post(
        reverse("admin:incidents_incident_add"),
        {"title": "x", "severity": 2, "playbook": draft.pk},
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert Incident.objects.count() == 0


def test_its_actions_call_the_life_cycle_services(admin_client, team, make_playbook, broker_calls):
    from incidents import services

    incident = services.incident_open(title="Outage", playbook=make_playbook())
    changelist = reverse("admin:incidents_incident_changelist")
    for action, status in (
        ("acknowledge", "acknowledged"),
        ("resolve", "resolved"),
        ("close", "closed"),
        ("reopen", "open"),
    ):
        response = admin_client.post(
            changelist, {"action": action, "_selected_action": [incident.pk]}, follow=True
        )
        assert response.status_code == 200
        incident.refresh_from_db()
        assert incident.status == status, action
    kinds = list(incident.timeline.values_list("kind", flat=True))
    for kind in ("acknowledged", "resolved", "closed", "reopened"):
        assert kind in kinds
    # An action that does not apply says so instead of failing.
    response = admin_client.post(
        changelist, {"action": "close", "_selected_action": [incident.pk]}, follow=True
    )
    assert "Only a resolved incident can be closed" in response.content.decode()


def test_it_never_deletes_an_incident_and_shows_the_outbox(
    admin_client, team, make_playbook, broker_calls
):
    from incidents import services

    incident = services.incident_open(title="Outage", playbook=make_playbook())
    assert (
        admin_client.get(reverse("admin:incidents_incident_delete", args=[incident.pk])).status_code
        == 403
    )
    Notification.objects.create(
        incident=incident,
        to_email="a@example.test",
        reason="escalation",
        dedupe_key="k",
        message_id="<m@x>",
        subject="s",
        body_text="b",
    )
    for name in ("notification", "timer"):
        assert admin_client.get(reverse(f"admin:incidents_{name}_changelist")).status_code == 200
    n = Notification.objects.get(dedupe_key="k")
    assert (
        admin_client.get(reverse("admin:incidents_notification_change", args=[n.pk])).status_code
        == 200
    )
