"""Post-mortem pages and exports: HTML, Markdown, PDF (read back and rendered), trends."""

from __future__ import annotations

import datetime as dt
import io

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from incidents import comms
from incidents import services as incident_services
from incidents.models import PostMortem
from tests.factories import UserFactory
from tests.incidents.conftest import written_in_every_language  # noqa: E402

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(broker_calls, comms_desk):
    return comms_desk


def person(username, *perms):
    user = UserFactory(username=username, email=f"{username}@example.test")
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


@pytest.fixture
def resolved(desk):
    """A SEV1 that paged, spoke, corrected itself and was resolved, over three hours."""
    start = timezone.now().replace(microsecond=0) + dt.timedelta(minutes=1)
    with time_machine.travel(start, tick=False) as clock:
        incident = incident_services.incident_open(
            title="Adatszivárgás: ügyféladatok", severity=1, playbook=desk["incident"].playbook
        )
        clock.move_to(start + dt.timedelta(minutes=3))
        incident_services.incident_acknowledge(incident=incident, actor=desk["noa"], via="test")
        clock.move_to(start + dt.timedelta(minutes=50))
        message = comms.message_draft(
            incident=incident,
            author=desk["eszter"],
            audience=desk["customers"],
            channel="website",
            body="Διερευνούμε ένα περιστατικό. אנו בודקים את האירוע.",
        )
        message = written_in_every_language(message)
        comms.message_submit(message=message, actor=desk["eszter"])
        comms.message_approve(message=message, approver=desk["lawyer"])
        comms.message_publish(message=message, actor=desk["eszter"], where="status page")
        clock.move_to(start + dt.timedelta(minutes=180))
        incident_services.incident_resolve(incident=incident, actor=desk["noa"])
    pm = incident.postmortem
    from incidents import postmortem

    postmortem.postmortem_edit(
        postmortem=pm, actor=desk["noa"], summary="Egy exportfájl nyilvános volt."
    )
    return incident


def test_the_report_page_shows_facts_chart_and_narrative(client, resolved):
    reader = person("reader", "view_postmortem")
    client.force_login(reader)
    response = client.get(reverse("incidents:postmortem", args=[resolved.reference]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html and "Milestones, escalations and messages" in html
    assert "Egy exportfájl nyilvános volt." in html
    assert 'data-key="first_statement"' in html and "outcome-met" in html
    assert "Διερευνούμε" in html


def test_the_report_and_communications_pages_show_their_messages_never_as_notices(
    client, resolved, desk
):
    # Both pages list messages; base.html shows the messages framework's notices under
    # that context name, so a page that passed its own "messages" printed each group's
    # Python repr in the notice bar (and read every message's incident again to do it).
    from django.contrib.messages import get_messages

    reader = person("reader2", "view_postmortem", "view_incident", "view_message")
    client.force_login(reader)
    for path in (
        reverse("incidents:postmortem", args=[resolved.reference]),
        f"/incidents/{resolved.reference}/communications/",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.content.decode()
        assert 'class="flash"' not in html, path
        assert "AudienceMessages(" not in html and "&lt;Message:" not in html, path
        assert "Διερευνούμε" in html, path
        assert list(get_messages(response.wsgi_request)) == []
    # The standalone report (the file behind the PDF and the e-mailed link) too.
    report = postmortem_html(resolved)
    assert 'class="flash"' not in report and "AudienceMessages(" not in report


def postmortem_html(incident) -> str:
    from incidents import postmortem

    return postmortem.report_html(postmortem.report_build(incident))


def test_who_may_read_a_report(client, resolved, desk):
    url = reverse("incidents:postmortem", args=[resolved.reference])
    assert client.get(url).status_code == 302  # anonymous: log in first
    client.force_login(person("nobody"))
    assert client.get(url).status_code == 403  # no permission to read post-mortems

    secret = incident_services.incident_open(
        title="Executive scandal", confidential=True, playbook=desk["incident"].playbook
    )
    secret_url = reverse("incidents:postmortem", args=[secret.reference])
    outsider = person("outsider", "view_postmortem")
    client.force_login(outsider)
    assert client.get(url).status_code == 200
    for view in ("postmortem", "postmortem_markdown", "postmortem_pdf"):
        assert client.get(reverse(f"incidents:{view}", args=[secret.reference])).status_code == 404
    trends = client.get(reverse("incidents:trends")).content.decode()
    # The outsider's trends count only the incidents they may see.
    assert "2 incidents, drills excluded." in trends

    # Assigned to it: visible; relieved: hidden again.
    role = desk["incident"].assignments.first().role
    incident_services.role_assign(incident=secret, role=role, user=outsider, actor=None)
    assert client.get(secret_url).status_code == 200
    incident_services.role_relieve(incident=secret, role=role, actor=None)
    assert client.get(secret_url).status_code == 404

    manager = person("manager", "view_postmortem", "view_confidential_incident")
    client.force_login(manager)
    assert client.get(secret_url).status_code == 200


def test_the_markdown_export(client, resolved):
    client.force_login(person("reader", "view_postmortem"))
    response = client.get(reverse("incidents:postmortem_markdown", args=[resolved.reference]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    assert f"{resolved.reference}-postmortem.md" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode()
    assert text.startswith(f"# {resolved.reference} · Adatszivárgás: ügyféladatok")
    assert "## Milestones" in text and "| First public statement |" in text
    assert "&amp;" not in text and "&#x27;" not in text  # not HTML-escaped


def test_the_pdf_has_its_text_chart_and_page_numbers(client, resolved, tmp_path, settings):
    import pypdfium2

    client.force_login(person("reader", "view_postmortem"))
    response = client.get(reverse("incidents:postmortem_pdf", args=[resolved.reference]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    pdf = pypdfium2.PdfDocument(io.BytesIO(response.content))
    pages = len(pdf)
    assert pages >= 2
    text = "\n".join(pdf[i].get_textpage().get_text_range() for i in range(pages))
    assert resolved.reference in text
    assert "Adatszivárgás" in text and "Διερευνούμε" in text
    assert f"Page 1 / {pages}" in text and f"Page {pages} / {pages}" in text
    assert "First public statement" in text and "Full timeline" in text
    assert "attached to this PDF as timeline.csv" in text

    # Look at the pages as images: drawn, not blank, and the chart's marks are there.
    images = [pdf[i].render(scale=1.5).to_pil().convert("RGB") for i in range(pages)]
    for number, image in enumerate(images, start=1):
        image.save(tmp_path / f"postmortem-page{number}.png")
    first = pixels(images[0])
    assert sum(1 for p in first if sum(p) < 600) / len(first) > 0.01
    message_blue = sum(
        1
        for image in images
        for r, g, b in pixels(image)
        if abs(r - 46) < 30 and abs(g - 144) < 30 and b > 220
    )
    assert message_blue > 20, "the chart's message marks were not drawn"
    pdf.close()


def pixels(image) -> list[tuple[int, int, int]]:
    data = image.tobytes()
    return list(zip(data[0::3], data[1::3], data[2::3], strict=True))


def test_starting_a_post_mortem_on_demand_and_reading_a_frozen_revision(client, desk, resolved):
    active = incident_services.incident_open(
        title="Still burning", playbook=desk["incident"].playbook
    )
    client.force_login(person("lead", "view_postmortem", "add_postmortem"))
    page = client.get(reverse("incidents:postmortem", args=[active.reference])).content.decode()
    assert "No post-mortem started yet." in page
    response = client.post(reverse("incidents:postmortem_start", args=[active.reference]))
    assert response.status_code == 302
    assert PostMortem.objects.filter(incident=active).exists()

    from incidents import postmortem

    pm = postmortem.postmortem_submit(postmortem=resolved.postmortem, actor=desk["noa"])
    publisher = person("publisher", "publish_postmortem", "view_postmortem")
    revision = postmortem.postmortem_publish(postmortem=pm, actor=publisher)
    client.force_login(publisher)
    page = client.get(
        reverse("incidents:postmortem_revision", args=[resolved.reference, revision.number])
    )
    assert page.status_code == 200
    assert "Egy exportfájl nyilvános volt." in page.content.decode()
    assert (
        client.get(
            reverse("incidents:postmortem_revision", args=[resolved.reference, 9])
        ).status_code
        == 404
    )


def test_the_trends_page_renders_for_a_reader(client, resolved):
    client.force_login(person("exec", "view_postmortem"))
    response = client.get(reverse("incidents:trends"))
    assert response.status_code == 200
    html = response.content.decode()
    assert timezone.localtime(resolved.opened_at).strftime("%Y-%m") in html
    assert "Drills" in html


def test_the_crisis_team_writes_and_publishes_in_the_admin(admin_client, resolved, desk):
    pm = resolved.postmortem
    url = reverse("admin:incidents_postmortem_change", args=[pm.pk])
    assert admin_client.get(url).status_code == 200
    form = {
        "summary": "Egy exportfájl nyilvános volt.",
        "impact": "1,200 customers for 3 hours.",
        "went_well": "",
        "went_poorly": "",
        "got_lucky": "",
        "root_cause": "",
        "lessons": "",
        "action_items-TOTAL_FORMS": "1",
        "action_items-INITIAL_FORMS": "0",
        "action_items-0-title": "Add an export check to the playbook",
        "action_items-0-kind": "preventive",
        "action_items-0-owner": str(desk["eleni"].pk),
        "action_items-0-due_on": "2026-12-31",
        "action_items-0-status": "open",
        "action_items-0-playbook": str(resolved.playbook_id),
        "revisions-TOTAL_FORMS": "0",
        "revisions-INITIAL_FORMS": "0",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    pm.refresh_from_db()
    assert pm.impact == "1,200 customers for 3 hours." and pm.updated_by.is_superuser
    [item] = pm.action_items.all()
    assert item.owner == desk["eleni"]

    changelist = reverse("admin:incidents_postmortem_changelist")
    for action in ("submit", "publish"):
        admin_client.post(changelist, {"action": action, "_selected_action": [pm.pk]})
    pm.refresh_from_db()
    assert (pm.status, pm.revisions.count()) == ("published", 1)

    # Editing the published report in the admin starts revision 2; revision 1 stays.
    form.update(
        {
            "lessons": "Check exports weekly.",
            "action_items-INITIAL_FORMS": "1",
            "action_items-0-id": str(item.pk),
            "action_items-0-postmortem": str(pm.pk),
            "revisions-TOTAL_FORMS": "1",
            "revisions-INITIAL_FORMS": "1",
            "revisions-0-id": str(pm.revisions.get().pk),
            "revisions-0-postmortem": str(pm.pk),
        }
    )
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    pm.refresh_from_db()
    assert (pm.status, pm.revision, pm.lessons) == ("draft", 2, "Check exports weekly.")
    assert pm.revisions.get().narrative["lessons"] == ""

    items = reverse("admin:incidents_actionitem_changelist")
    admin_client.post(items, {"action": "revise_playbook", "_selected_action": [item.pk]})
    item.refresh_from_db()
    assert item.produced_version.version == resolved.playbook.version + 1
    page = admin_client.get(reverse("incidents:postmortem", args=[resolved.reference]))
    assert f"version {item.produced_version.version} (Draft)" in page.content.decode()
