"""Action items are written by services only: the admin (page and inline) and the API
agree on what may be set, and an item that becomes done carries when it was done."""

from __future__ import annotations

import pytest

from incidents import services as incident_services
from incidents.models import ActionItem, TimelineEntry
from tests.factories import UserFactory
from tests.incidents.test_api import api, desk, member  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def resolved(desk):  # noqa: F811
    manager = member("manager", "Crisis managers", is_staff=True)
    incident = incident_services.incident_resolve(incident=desk["incident"], actor=manager)
    return {"incident": incident, "postmortem": incident.postmortem, "manager": manager}


def test_it_records_an_item_added_through_the_api_on_the_timeline(resolved):
    responder = member("responder", "Responders")
    created = api(responder).post(
        "/api/v1/action-items/",
        {"postmortem": resolved["postmortem"].pk, "title": "Rotate the keys", "kind": "corrective"},
        format="json",
    )
    assert created.status_code == 201, created.content
    entry = TimelineEntry.objects.filter(incident=resolved["incident"]).latest("at", "pk")
    assert "Rotate the keys" in entry.text and entry.actor == responder
    assert entry.data["action_item_id"] == created.json()["id"]


def test_it_keeps_an_item_with_its_post_mortem_and_refuses_setting_done_by_hand(resolved, desk):  # noqa: F811
    responder = member("responder", "Responders")
    item = ActionItem.objects.create(
        postmortem=resolved["postmortem"], title="Train the team", kind="preventive"
    )
    other = incident_services.incident_open(title="Second", actor=resolved["manager"])
    incident_services.incident_resolve(incident=other, actor=resolved["manager"])
    moved = api(responder).patch(
        f"/api/v1/action-items/{item.pk}/", {"postmortem": other.postmortem.pk}, format="json"
    )
    assert moved.status_code == 400 and "postmortem" in moved.json()
    renamed = api(responder).patch(
        f"/api/v1/action-items/{item.pk}/",
        {"title": "Train the whole team", "done_at": "2020-01-01T00:00:00Z"},
        format="json",
    )
    assert renamed.status_code == 200
    item.refresh_from_db()
    assert item.title == "Train the whole team" and item.done_at is None


def _change_form(item: ActionItem, **overrides) -> dict:
    data = {
        "postmortem": item.postmortem_id,
        "title": item.title,
        "description": item.description,
        "owner": item.owner_id or "",
        "due_on": "",
        "kind": item.kind,
        "status": item.status,
        "playbook": item.playbook_id or "",
    }
    data.update(overrides)
    return data


def test_it_stamps_done_when_the_admin_marks_an_item_done_and_clears_it_when_reopened(
    resolved, client
):
    admin_user = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    item = ActionItem.objects.create(
        postmortem=resolved["postmortem"], title="Train the team", kind="preventive"
    )
    url = f"/admin/incidents/actionitem/{item.pk}/change/"
    response = client.post(url, _change_form(item, status="done"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    item.refresh_from_db()
    assert item.status == "done" and item.done_at is not None
    response = client.post(url, _change_form(item, status="open"))
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == "open" and item.done_at is None


def test_it_adds_items_from_the_post_mortem_page_through_the_service(resolved, client):
    admin_user = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    pm = resolved["postmortem"]
    url = f"/admin/incidents/postmortem/{pm.pk}/change/"
    page = client.get(url)
    form = page.context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in form.fields}
    prefix = "action_items"
    data.update(
        {
            f"{prefix}-TOTAL_FORMS": "1",
            f"{prefix}-INITIAL_FORMS": "0",
            f"{prefix}-MIN_NUM_FORMS": "0",
            f"{prefix}-MAX_NUM_FORMS": "1000",
            f"{prefix}-0-title": "Add a status page",
            f"{prefix}-0-kind": "preventive",
            f"{prefix}-0-status": "done",
            f"{prefix}-0-postmortem": str(pm.pk),
        }
    )
    for formset in page.context["inline_admin_formsets"]:
        if formset.formset.prefix != prefix:
            mgmt = formset.formset.management_form
            for name, field in mgmt.fields.items():
                data[f"{formset.formset.prefix}-{name}"] = mgmt.initial.get(name, 0)
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    item = ActionItem.objects.get(postmortem=pm, title="Add a status page")
    assert item.done_at is not None
    assert TimelineEntry.objects.filter(data__action_item_id=item.pk).exists()
