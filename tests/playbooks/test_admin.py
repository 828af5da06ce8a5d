"""The admin: every page renders for a superuser, and its actions and imports work."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from playbooks.models import Playbook, Risk, Stakeholder
from playbooks.seed import demo_seed

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(settings, tmp_path):
    """The demo desk plus one incident, so every admin model has at least one row."""
    settings.VAR_DIR = tmp_path
    demo_seed()
    from incidents import services as incident_services

    incident = incident_services.incident_open(
        title="Admin walk", playbook=Playbook.objects.filter(status="published").first()
    )
    # One row of every other registered model, so each change page is walked too.
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token

    from incidents.models import Notification
    from playbooks.models import ReviewReminder
    from tests.factories import UserFactory

    user = UserFactory(username="walker")
    Group.objects.create(name="Night shift")
    Token.objects.create(user=user)
    ReviewReminder.objects.create(user=user, sent_on=timezone.localdate(), items=2)
    Notification.objects.create(
        incident=incident,
        to_email="a@example.test",
        reason="escalation",
        dedupe_key="walk",
        message_id="<walk@example.test>",
        subject="s",
        body_text="b",
    )
    # Listening: a feed source that failed, a rule that fired, its mentions.
    from incidents.listening import services as listening_services
    from incidents.listening.models import ListeningRule, Mention

    source = listening_services.source_create(
        name="Alerts", slug="alerts", kind="feed", feed_url="https://example.test/feed.xml"
    )
    ListeningRule.objects.create(
        risk=Risk.objects.first(), name="Walk spike", keywords=["walk"], threshold_count=1
    )
    listening_services.mention_record(source=source, external_id="w", text="A walk mention")
    assert Mention.objects.filter(incident__isnull=False).exists()
    from incidents import comms
    from incidents.models import ActionItem

    closed = incident_services.incident_open(title="Walked post-mortem")
    incident_services.incident_resolve(incident=closed, actor=user)
    ActionItem.objects.create(
        postmortem=closed.postmortem, title="Rehearse", kind="corrective", owner=user
    )
    from incidents.models import Subscription
    from incidents.subscribers import subscribers_group
    from playbooks.models import Stakeholder, StakeholderGroup

    Subscription.objects.create(
        contact=Stakeholder.objects.create(
            group=subscribers_group(), name="s@example.test", email="s@example.test"
        )
    )
    comms.message_draft(
        incident=incident,
        author=user,
        audience=StakeholderGroup.objects.first(),
        channel="email",
        subject="Walk",
        body="A message drafted from scratch so the message pages are walked too.",
    )
    from incidents.demo import demo_exercise

    assert demo_exercise() is not None  # the exercise pages, with participants and injects


def test_every_admin_list_add_and_change_page_renders(admin_client, desk):
    walked = 0
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        base = f"admin:{opts.app_label}_{opts.model_name}"
        assert admin_client.get(reverse(f"{base}_changelist")).status_code == 200, opts.label
        if model_admin.has_add_permission(_request(admin_client)):
            assert admin_client.get(reverse(f"{base}_add")).status_code == 200, opts.label
        obj = model.objects.first()
        if obj is not None:
            response = admin_client.get(reverse(f"{base}_change", args=[obj.pk]))
            assert response.status_code == 200, opts.label
            walked += 1
    assert walked == len(admin.site._registry)


def _request(client):
    from django.test import RequestFactory

    from tests.factories import UserFactory

    request = RequestFactory().get("/")
    request.user = UserFactory(username="root")
    return request


def test_the_heat_map_counts_open_risks_per_cell_and_links_to_them(admin_client):
    from tests.factories import RiskFactory

    RiskFactory(likelihood=4, impact=5, title="Breach A")
    RiskFactory(likelihood=4, impact=5, title="Breach B")
    RiskFactory(likelihood=1, impact=2, title="Minor")
    RiskFactory(likelihood=4, impact=5, title="Closed one", status="closed")
    RiskFactory(
        likelihood=2,
        impact=2,
        title="Stale",
        next_review_on=timezone.localdate() - dt.timedelta(days=3),
    )

    page = admin_client.get(reverse("admin:playbooks_risk_heatmap")).content.decode()
    cell = re.search(
        r'<td class="cd-critical" data-likelihood="4" data-impact="5" data-count="(\d+)"', page
    )
    assert cell and cell.group(1) == "2"
    assert 'data-likelihood="1" data-impact="2" data-count="1"' in page
    assert 'data-likelihood="3" data-impact="3" data-count="0"' in page
    assert "?likelihood=4&amp;impact=5" in page
    assert "Stale" in page.split('id="overdue"')[1]

    listed = admin_client.get(
        reverse("admin:playbooks_risk_changelist") + "?likelihood=4&impact=5"
    ).content.decode()
    assert "Breach A" in listed and "Breach B" in listed and "Minor" not in listed

    with_closed = admin_client.get(
        reverse("admin:playbooks_risk_heatmap") + "?closed=1"
    ).content.decode()
    assert 'data-likelihood="4" data-impact="5" data-count="3"' in with_closed


def test_the_index_links_to_the_heat_map(admin_client):
    assert reverse("admin:playbooks_risk_heatmap") in admin_client.get("/admin/").content.decode()


def test_playbook_actions_go_through_the_services(admin_client, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    demo_seed()
    v1 = Playbook.objects.get(key="data-breach", status="published")
    changelist = reverse("admin:playbooks_playbook_changelist")

    response = admin_client.post(changelist, {"action": "new_version", "_selected_action": [v1.pk]})
    draft = Playbook.objects.get(key="data-breach", status="draft")
    assert response["Location"] == reverse("admin:playbooks_playbook_change", args=[draft.pk])

    admin_client.post(changelist, {"action": "publish", "_selected_action": [draft.pk]})
    v1.refresh_from_db()
    draft.refresh_from_db()
    assert (v1.status, draft.status) == ("retired", "published")

    Playbook.objects.filter(pk=draft.pk).update(last_reviewed_on=dt.date(2020, 1, 1))
    admin_client.post(changelist, {"action": "mark_reviewed", "_selected_action": [draft.pk]})
    draft.refresh_from_db()
    assert draft.last_reviewed_on == timezone.localdate()

    export = admin_client.post(
        changelist, {"action": "export_yaml", "_selected_action": [draft.pk]}
    )
    assert export["Content-Type"].startswith("application/yaml")
    assert "key: data-breach" in export.content.decode()

    # Publishing something that is not a draft is refused with a message, not a 500.
    again = admin_client.post(
        changelist, {"action": "publish", "_selected_action": [v1.pk]}, follow=True
    )
    assert "Only a draft can be published" in again.content.decode()


def test_a_published_version_cannot_be_changed_in_the_admin(admin_client, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    demo_seed()
    playbook = Playbook.objects.get(key="service-outage", status="published")
    url = reverse("admin:playbooks_playbook_change", args=[playbook.pk])
    page = admin_client.get(url).content.decode()
    assert "read-only" in page
    admin_client.post(url, {"title": "Hijacked", "key": playbook.key, "scenario": "other"})
    playbook.refresh_from_db()
    assert playbook.title == "Service outage"


def test_the_yaml_import_page_lists_every_error_and_imports_nothing(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    url = reverse("admin:playbooks_playbook_import")
    bad = (
        "format: crisisdesk-playbooks/1\nplaybooks:\n  - key: x\n    title: X\n    scenario: nope\n"
    )
    page = admin_client.post(
        url, {"file": SimpleUploadedFile("p.yaml", bad.encode())}
    ).content.decode()
    assert "Nothing was imported" in page and "line 5: playbooks[0].scenario" in page
    assert Playbook.objects.count() == 0

    from playbooks.starter import STARTER_FILE

    response = admin_client.post(
        url, {"file": SimpleUploadedFile("s.yaml", STARTER_FILE.read_bytes())}
    )
    assert response.status_code == 302
    assert Playbook.objects.filter(status="published").count() == 5


def test_the_csv_import_page_reports_rows_and_imports_nothing_on_error(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.factories import StakeholderGroupFactory

    group = StakeholderGroupFactory(slug="customers")
    url = reverse("admin:playbooks_stakeholder_import")
    bad = "name,email\nGood,good@example.test\nBad,broken\n"
    page = admin_client.post(
        url, {"file": SimpleUploadedFile("c.csv", bad.encode()), "group": group.pk}
    ).content.decode()
    assert "row 3, email" in page
    assert Stakeholder.objects.count() == 0
    good = "name,email\nΕλένη,eleni@example.test\n"
    response = admin_client.post(
        url, {"file": SimpleUploadedFile("c.csv", good.encode()), "group": group.pk}
    )
    assert response.status_code == 302
    assert Stakeholder.objects.get().name == "Ελένη"


def test_risk_channels_are_checkboxes_and_saved_as_a_list(admin_client):
    response = admin_client.post(
        reverse("admin:playbooks_risk_add"),
        {
            "title": "Influencer boycott",
            "category": "social_media_storm",
            "likelihood": 3,
            "impact": 4,
            "velocity": 5,
            "channels": ["social_media", "news_media"],
            "status": "identified",
            "mitigations": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    risk = Risk.objects.get()
    assert risk.channels == ["social_media", "news_media"] and risk.score == 12


def test_a_non_staff_user_is_sent_to_the_login(client):
    from tests.factories import UserFactory

    client.force_login(UserFactory())
    response = client.get(reverse("admin:playbooks_risk_heatmap"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
