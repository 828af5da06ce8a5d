"""The preparedness API: the register, roles, rotations, stakeholders and playbooks."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from incidents.permissions import ensure_groups
from playbooks.models import Playbook, Risk
from playbooks.seed import demo_seed
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    demo_seed()
    ensure_groups()


def client_for(*groups):
    user = UserFactory()
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
    client = APIClient()
    client.force_authenticate(user)
    return client, user


def test_the_risk_register_validates_and_derives_the_score(desk):
    client, user = client_for("Crisis managers")
    bad = client.post(
        "/api/v1/risks/",
        {"title": "", "category": "nonsense", "likelihood": 9, "impact": 0, "velocity": 3},
        format="json",
    )
    assert bad.status_code == 400
    assert {"title", "category", "likelihood", "impact"} <= set(bad.json())
    created = client.post(
        "/api/v1/risks/",
        {"title": "Zsarolóvírus", "category": "data_breach", "likelihood": 4, "impact": 5,
         "velocity": 5, "owner": user.pk},
        format="json",
    )  # fmt: skip
    assert created.status_code == 201, created.content
    assert created.json()["score"] == 20
    rid = created.json()["id"]
    assert client.patch(f"/api/v1/risks/{rid}/", {"impact": 2}, format="json").json()["score"] == 8
    listed = client.get("/api/v1/risks/", {"category": "data_breach", "ordering": "-likelihood"})
    assert listed.status_code == 200 and listed.json()["count"] >= 1
    history = Risk.objects.get(pk=rid).history.all()
    assert [h.impact for h in history.order_by("history_date")][-2:] == [5, 2]

    readers, _ = client_for("Executives")
    assert readers.get("/api/v1/risks/").status_code == 200
    assert readers.post("/api/v1/risks/", {}, format="json").status_code == 403


def test_who_is_on_call_now_and_the_stakeholders(desk):
    client, _ = client_for("Crisis managers")
    now = client.get("/api/v1/rotations/now/").json()
    assert len(now) == 7 and all(row["user"] for row in now)
    groups = client.get("/api/v1/stakeholder-groups/").json()["results"]
    customers = next(g for g in groups if g["slug"] == "customers")
    contact = client.post(
        "/api/v1/contacts/",
        {
            "group": customers["id"],
            "name": "Αλέξης",
            "email": "alexis@example.test",
            "language": "el",
        },
        format="json",
    )
    assert contact.status_code == 201 and contact.json()["name"] == "Αλέξης"
    bad = client.post(
        "/api/v1/contacts/", {"group": customers["id"], "name": "x", "email": "nope"}, format="json"
    )
    assert bad.status_code == 400 and "email" in bad.json()
    found = client.get("/api/v1/contacts/", {"search": "Αλέξης"}).json()
    assert found["count"] == 1


def test_playbooks_are_read_with_their_content_and_versioned_by_actions(desk):
    client, _ = client_for("Crisis managers")
    listing = client.get("/api/v1/playbooks/", {"status": "published", "key": "data-breach"}).json()
    [playbook] = listing["results"]
    assert playbook["steps"] and playbook["templates"] and playbook["escalation_levels"]
    draft = client.post(f"/api/v1/playbooks/{playbook['id']}/new_version/")
    assert draft.status_code == 201 and draft.json()["version"] == playbook["version"] + 1
    published = client.post(f"/api/v1/playbooks/{draft.json()['id']}/publish/")
    assert published.status_code == 200 and published.json()["status"] == "published"
    assert Playbook.objects.get(pk=playbook["id"]).status == "retired"
    again = client.post(f"/api/v1/playbooks/{playbook['id']}/publish/")
    assert again.status_code == 400
    responder, _ = client_for("Responders")
    assert responder.post(f"/api/v1/playbooks/{playbook['id']}/new_version/").status_code == 403


def test_overrides_win_over_the_rotation_and_bad_ranges_are_refused(desk):
    from django.utils import timezone

    client, _ = client_for("Crisis managers")
    rotation = client.get("/api/v1/rotations/", {"ordering": "name"}).json()["results"][0]
    stand_in = UserFactory(first_name="Réka", last_name="Szabó")
    now = timezone.now()
    bad = client.post(
        "/api/v1/rotation-overrides/",
        {"rotation": rotation["id"], "user": stand_in.pk, "starts_at": now.isoformat(),
         "ends_at": (now - timezone.timedelta(hours=1)).isoformat()},
        format="json",
    )  # fmt: skip
    assert bad.status_code == 400 and "ends_at" in bad.json()
    made = client.post(
        "/api/v1/rotation-overrides/",
        {"rotation": rotation["id"], "user": stand_in.pk,
         "starts_at": (now - timezone.timedelta(minutes=1)).isoformat(),
         "ends_at": (now + timezone.timedelta(hours=2)).isoformat(), "reason": "sick day"},
        format="json",
    )  # fmt: skip
    assert made.status_code == 201, made.content
    holders = {row["user"] for row in client.get("/api/v1/rotations/now/").json()}
    assert stand_in.pk in holders


def test_playbooks_as_yaml_and_contacts_as_csv_through_the_api(desk):
    client, _ = client_for("Crisis managers")
    exported = client.get("/api/v1/playbooks/export/", {"key": "data-breach"})
    assert exported.status_code == 200 and exported["Content-Type"].startswith("application/yaml")
    text = exported.content.decode()
    assert "key: data-breach" in text
    assert client.get("/api/v1/playbooks/export/", {"key": "nope"}).status_code == 404
    copy = text.replace("key: data-breach", "key: data-breach-eu")
    imported = client.post("/api/v1/playbooks/import/", {"yaml": copy}, format="json")
    assert imported.status_code == 201, imported.content
    assert Playbook.objects.filter(key="data-breach-eu").exists()
    broken = client.post(
        "/api/v1/playbooks/import/", {"yaml": "format: nope\n  - ["}, format="json"
    )
    assert broken.status_code == 400 and broken.json()["errors"]

    from playbooks.models import Stakeholder

    before = Stakeholder.objects.count()
    bad = client.post(
        "/api/v1/contacts/import/",
        {
            "csv": "name,email,group\nÁgnes,agnes@example.test,customers\nBad,not-an-email,customers\n"
        },
        format="json",
    )
    assert bad.status_code == 400
    assert [(r["row"], r["field"]) for r in bad.json()["rows"]] == [(3, "email")]
    assert Stakeholder.objects.count() == before  # nothing written
    good = client.post(
        "/api/v1/contacts/import/",
        {"csv": "name,email,group\nÁgnes,agnes@example.test,customers\n"},
        format="json",
    )
    assert good.status_code == 201 and good.json()["created"] == 1
    csv_text = client.get("/api/v1/contacts/export/").content.decode()
    assert "agnes@example.test" in csv_text and "Ágnes" in csv_text


def test_draft_content_is_edited_and_published_content_is_frozen(desk):
    client, _ = client_for("Crisis managers")
    created = client.post(
        "/api/v1/playbooks/",
        {"key": "supplier-fraud", "title": "Supplier fraud", "scenario": "legal_regulatory"},
        format="json",
    )
    assert created.status_code == 201 and created.json()["status"] == "draft"
    pid = created.json()["id"]
    again = client.post(
        "/api/v1/playbooks/",
        {"key": "supplier-fraud", "title": "x", "scenario": "other"},
        format="json",
    )
    assert again.status_code == 400 and "key" in again.json()
    step = client.post(
        "/api/v1/playbook-steps/",
        {"playbook": pid, "position": 1, "phase": "detect", "title": "Freeze payments"},
        format="json",
    )
    assert step.status_code == 201, step.content
    level = client.post(
        "/api/v1/escalation-levels/",
        {"playbook": pid, "position": 1, "delay_seconds": 300, "target": "role"},
        format="json",
    )
    assert level.status_code == 400  # a role target needs its role
    published = Playbook.objects.filter(key="data-breach", status="published").get()
    frozen = client.post(
        "/api/v1/playbook-steps/",
        {"playbook": published.pk, "position": 99, "phase": "detect", "title": "Sneak in"},
        format="json",
    )
    assert frozen.status_code == 400 and "new version" in str(frozen.json())
    step_id = published.steps.first().pk
    assert client.delete(f"/api/v1/playbook-steps/{step_id}/").status_code == 400
    assert (
        client.patch(
            f"/api/v1/playbooks/{published.pk}/", {"title": "x"}, format="json"
        ).status_code
        == 400
    )


def test_reviews_and_retiring_through_the_api(desk):
    from django.utils import timezone

    client, _ = client_for("Crisis managers")
    risk = Risk.objects.first()
    reviewed = client.post(
        f"/api/v1/risks/{risk.pk}/reviewed/", {"next_review_in_days": 30}, format="json"
    )
    assert reviewed.json()["next_review_on"] == str(
        timezone.localdate() + timezone.timedelta(days=30)
    )
    assert (
        client.post(
            f"/api/v1/risks/{risk.pk}/reviewed/", {"next_review_in_days": 0}, format="json"
        ).status_code
        == 400
    )
    playbook = Playbook.objects.filter(status="published").first()
    assert client.post(f"/api/v1/playbooks/{playbook.pk}/reviewed/").json()[
        "last_reviewed_on"
    ] == str(timezone.localdate())
    assert client.post(f"/api/v1/playbooks/{playbook.pk}/retire/").json()["status"] == "retired"
