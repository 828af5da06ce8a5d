"""The REST API: the same services as the admin, clear errors, idempotent opening,
and a permission matrix with no leaks of confidential incidents."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from incidents import services as incident_services
from incidents.models import Incident
from incidents.permissions import ensure_groups
from tests.factories import UserFactory
from tests.incidents.conftest import CAN_READ, PERSONAS, api, member

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(broker_calls, comms_desk):
    ensure_groups()
    return comms_desk


def test_opening_is_idempotent_by_key_and_bad_input_gets_field_messages(desk):
    manager = member("manager", "Crisis managers")
    client = api(manager)
    body = {"title": "Adatszivárgás", "severity": 1, "playbook": desk["incident"].playbook_id}
    first = client.post("/api/v1/incidents/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201, first.content
    again = client.post("/api/v1/incidents/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = client.post("/api/v1/incidents/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert other.json()["id"] != first.json()["id"]
    assert Incident.objects.filter(title="Adatszivárgás").count() == 2
    assert first.json()["title"] == "Adatszivárgás"  # Unicode end to end

    bad = client.post("/api/v1/incidents/", {"severity": 9}, format="json")
    assert bad.status_code == 400
    assert set(bad.json()) >= {"title", "severity"}
    draft = desk["incident"].playbook
    from playbooks.services import playbook_new_version

    new_draft = playbook_new_version(playbook=draft)
    refused = client.post(
        "/api/v1/incidents/", {"title": "x", "playbook": new_draft.pk}, format="json"
    )
    assert refused.status_code == 400 and "playbook" in refused.json()
    assert client.get("/api/v1/incidents/999999/").status_code == 404
    assert Incident.objects.filter(title="x").count() == 0


def test_the_life_cycle_through_the_api_writes_the_timeline(desk):
    manager = member("manager", "Crisis managers")
    client = api(manager)
    incident = desk["incident"]
    url = f"/api/v1/incidents/{incident.pk}"
    assert client.post(f"{url}/acknowledge/").json()["status"] == "acknowledged"
    severity = client.post(f"{url}/severity/", {"severity": 7}, format="json")
    assert severity.status_code == 400 and "severity" in severity.json()
    assert client.post(f"{url}/severity/", {"severity": 2}, format="json").json()["severity"] == 2
    assert client.post(f"{url}/contain/").json()["status"] == "contained"
    assert (
        client.post(f"{url}/resolve/", {"summary": "Fixed."}, format="json").json()["status"]
        == "resolved"
    )
    closed = client.post(f"{url}/close/")
    assert closed.json()["status"] == "closed"
    assert client.post(f"{url}/close/").status_code == 400  # already closed: a clear error
    assert client.post(f"{url}/reopen/", {"reason": "Back."}, format="json").json()["status"] == (
        "open"
    )
    kinds = [
        e["kind"] for e in client.get(f"/api/v1/timeline/?incident={incident.pk}").json()["results"]
    ]
    assert {"acknowledged", "severity", "contained", "resolved", "closed", "reopened"} <= set(kinds)

    note = client.post(
        "/api/v1/timeline/", {"incident": incident.pk, "text": "Called the bank."}, format="json"
    )
    assert note.status_code == 201 and note.json()["kind"] == "note"
    entry = note.json()["id"]
    assert (
        client.patch(f"/api/v1/timeline/{entry}/", {"text": "x"}, format="json").status_code == 405
    )
    assert client.delete(f"/api/v1/timeline/{entry}/").status_code == 405
    empty = client.post("/api/v1/timeline/", {"incident": incident.pk, "text": ""}, format="json")
    assert empty.status_code == 400 and "text" in empty.json()

    task = client.get(f"/api/v1/tasks/?incident={incident.pk}").json()["results"][0]
    done = client.post(f"/api/v1/tasks/{task['id']}/complete/", {"note": "ok"}, format="json")
    assert done.json()["status"] == "done"

    # The audit history recorded who changed the incident, through the API.
    history = incident.history.order_by("history_date")
    assert history.filter(history_user=manager).exists()
    assert {h.severity for h in history} >= {1, 2}


def test_one_voice_through_the_api(desk):
    writer = member("writer", "Communications")
    lawyer = member("lawyer2", "Legal")
    incident = desk["incident"]
    w, law = api(writer), api(lawyer)
    draft = w.post(
        "/api/v1/messages/",
        {
            "incident": incident.pk,
            "audience": desk["customers"].pk,
            "channel": "website",
            "body": "We are investigating.",
        },
        format="json",
    )
    assert draft.status_code == 201, draft.content
    mid = draft.json()["id"]
    # One variant per language the customers read, each still to be written.
    assert draft.json()["languages_needed"] == ["en", "el", "he", "hu"]
    assert draft.json()["facts_not_translated"] == {
        "el": ["message"], "he": ["message"], "hu": ["message"]
    }  # fmt: skip
    words = {
        "el": {"body": "Το εξετάζουμε."},
        "he": {"body": "אנחנו בודקים."},
        "hu": {"body": "Vizsgáljuk."},
    }
    unknown = w.post(
        f"/api/v1/messages/{mid}/edit/",
        {"subject": "", "body": "We are on it.", "translations": {"fr": {"body": "Non."}}},
        format="json",
    )
    assert unknown.status_code == 400 and "translations.fr" in unknown.json()
    edited = w.post(
        f"/api/v1/messages/{mid}/edit/",
        {"subject": "", "body": "We are on it.", "translations": words},
        format="json",
    )
    assert edited.status_code == 200, edited.content
    assert edited.json()["facts_not_translated"] == {}
    assert edited.json()["translations"]["hu"]["body"] == "Vizsgáljuk."
    assert w.post(f"/api/v1/messages/{mid}/submit/").json()["status"] == "in_review"
    own = w.post(f"/api/v1/messages/{mid}/approve/", {}, format="json")
    assert own.status_code == 403
    approved = law.post(f"/api/v1/messages/{mid}/approve/", {"note": "ok"}, format="json")
    assert approved.status_code == 200, approved.content
    assert approved.json()["status"] == "approved"
    missing_where = w.post(f"/api/v1/messages/{mid}/publish/", {}, format="json")
    assert missing_where.status_code == 400 and "where" in missing_where.json()
    published = w.post(
        f"/api/v1/messages/{mid}/publish/", {"where": "https://s.example"}, format="json"
    )
    assert published.json()["status"] == "published"
    assert w.post(
        f"/api/v1/messages/{mid}/edit/", {"subject": "", "body": "x"}, format="json"
    ).status_code in (400, 409)
    fix = w.post(f"/api/v1/messages/{mid}/correct/", {"body": "Correction: 1,200."}, format="json")
    assert fix.status_code == 201 and fix.json()["corrects"] == mid
    bad_template = w.post(
        "/api/v1/messages/",
        {
            "incident": incident.pk,
            "audience": desk["customers"].pk,
            "channel": "email",
            "template": 999999,
        },
        format="json",
    )
    assert bad_template.status_code == 400 and "template" in bad_template.json()


# ------------------------------------------------------------------ permission matrix

ENDPOINTS = {
    "incidents": "/api/v1/incidents/",
    "tasks": "/api/v1/tasks/",
    "assignments": "/api/v1/assignments/",
    "timeline": "/api/v1/timeline/",
    "messages": "/api/v1/messages/",
    "timers": "/api/v1/timers/",
    "notifications": "/api/v1/notifications/",
    "postmortems": "/api/v1/postmortems/",
}
# Executives read incidents, timelines, messages and post-mortems, not the machinery.
EXECUTIVE_READS = {"incidents", "timeline", "messages", "postmortems"}


def _incident_ids(rows, name):
    return {row["id"] if name == "incidents" else row["incident"] for row in rows}


@pytest.mark.parametrize("persona", PERSONAS)
def test_permission_matrix_api(matrix, persona):
    client = api(matrix["people"][persona])
    public, secret = matrix["public"], matrix["secret"]
    may_read, may_see_secret = CAN_READ[persona]
    for name, url in ENDPOINTS.items():
        allowed = may_read and (persona != "executive" or name in EXECUTIVE_READS)
        response = client.get(url)
        if not allowed:
            assert response.status_code in (401, 403), (persona, name, response.status_code)
            continue
        assert response.status_code == 200, (persona, name)
        seen = _incident_ids(response.json()["results"], name)
        assert (secret.pk in seen) == may_see_secret, (persona, name, "list")
        # Filters and search never reveal it either.
        if name != "incidents" and not may_see_secret:
            filtered = client.get(url, {"incident": secret.pk})
            assert filtered.status_code == 400 or filtered.json()["results"] == [], (persona, name)
        searched = client.get(url, {"search": "Vezérigazgatói"}).json()
        if not may_see_secret:
            assert secret.pk not in _incident_ids(searched["results"], name), (persona, name)
    # Details: the secret incident is 404 (its existence is secret), the public one readable.
    detail = client.get(f"/api/v1/incidents/{secret.pk}/")
    if not may_read:
        assert detail.status_code in (401, 403)
    else:
        assert detail.status_code == (200 if may_see_secret else 404)
        assert client.get(f"/api/v1/incidents/{public.pk}/").status_code == 200
    # Naming its id anywhere answers exactly as an id that does not exist.
    if may_read and not may_see_secret:
        for name, url in ENDPOINTS.items():
            if name == "incidents" or (persona == "executive" and name not in EXECUTIVE_READS):
                continue
            real = client.get(url, {"incident": secret.pk})
            made_up = client.get(url, {"incident": 999999})
            assert (real.status_code, real.json()) == (made_up.status_code, made_up.json()), name

        def answer(incident_id):
            response = client.post(
                "/api/v1/timeline/", {"incident": incident_id, "text": "x"}, format="json"
            )
            return response.status_code, str(response.json()).replace(str(incident_id), "ID")

        assert answer(secret.pk) == answer(999999)
    # Acting on the secret incident is refused without leaking it.
    if not may_see_secret:
        acted = client.post(f"/api/v1/incidents/{secret.pk}/reopen/", {}, format="json")
        assert acted.status_code in (401, 403, 404), (persona, acted.status_code)
        secret.refresh_from_db()
        assert secret.status == "resolved"


@pytest.mark.parametrize("persona", PERSONAS)
def test_permission_matrix_pages(client, matrix, persona):
    from django.contrib.auth.models import Permission

    user = matrix["people"][persona]
    if user is not None:
        # Pages are read by anyone allowed to read post-mortems.
        if persona != "outsider":
            user.user_permissions.add(Permission.objects.get(codename="view_postmortem"))
        client.force_login(user)
    may_read, may_see_secret = CAN_READ[persona]
    for incident, visible in ((matrix["public"], True), (matrix["secret"], may_see_secret)):
        for path in (
            f"/incidents/{incident.reference}/postmortem/",
            f"/incidents/{incident.reference}/postmortem.md",
        ):
            response = client.get(path)
            if user is None:
                assert response.status_code == 302, path
            elif persona == "outsider":
                assert response.status_code == 403, path
            else:
                assert response.status_code == (200 if visible else 404), (persona, path)
    # A made-up or tampered acknowledge link says nothing about any incident.
    from incidents import acklinks

    forged = acklinks.ack_token("<made-up@example.test>")[:-4] + "AAAA"
    for token in (forged, "not-a-token"):
        page = client.get(f"/incidents/ack/{token}/").content.decode()
        assert matrix["secret"].title not in page and matrix["secret"].reference not in page
    trends = client.get("/incidents/trends/")
    if user is not None and persona != "outsider":
        assert ("1 incident, drills excluded." in trends.content.decode()) == (not may_see_secret)


@pytest.mark.parametrize("persona", ["executive", "assigned", "unassigned", "manager"])
def test_permission_matrix_admin(client, matrix, persona):
    """Staff in each group see a confidential incident in the admin only if they may."""
    from incidents.models import Message, Notification

    staff = matrix["people"][persona]
    staff.is_staff = True
    staff.save()
    client.force_login(staff)
    secret, public = matrix["secret"], matrix["public"]
    may_see_secret = CAN_READ[persona][1]
    listing = client.get("/admin/incidents/incident/")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert public.reference in html and (secret.reference in html) == may_see_secret
    found = client.get("/admin/incidents/incident/", {"q": "Vezérigazgatói"}).content.decode()
    assert (secret.reference in found) == may_see_secret
    change = client.get(f"/admin/incidents/incident/{secret.pk}/change/")
    assert change.status_code == (200 if may_see_secret else 302)
    for model in ("message", "timer", "notification", "postmortem", "actionitem"):
        listing = client.get(f"/admin/incidents/{model}/")
        if listing.status_code == 403:  # no permission for this model at all
            continue
        assert listing.status_code == 200, model
        if not may_see_secret:
            html = listing.content.decode()
            assert secret.reference not in html and "Vezérigazgatói" not in html, model
    for model, row in (
        ("message", Message.objects.filter(incident=secret).first()),
        ("notification", Notification.objects.filter(incident=secret).first()),
    ):
        page = client.get(f"/admin/incidents/{model}/{row.pk}/change/")
        if not may_see_secret:
            assert page.status_code in (302, 403, 404), model
    communications = client.get(f"/incidents/{secret.reference}/communications/")
    assert communications.status_code == (200 if may_see_secret else 404)


# ------------------------------------------------------------------ queries and schema


@pytest.mark.parametrize(
    "url",
    ["/api/v1/incidents/", "/api/v1/tasks/", "/api/v1/timeline/", "/api/v1/messages/",
     "/api/v1/assignments/", "/api/v1/notifications/", "/api/v1/postmortems/"],
)  # fmt: skip
def test_list_endpoints_take_the_same_queries_for_5_and_50_rows(desk, url):
    from incidents import comms
    from incidents.models import Notification

    manager = member("manager", "Crisis managers")
    client = api(manager)

    client.get(url)  # warm the permission cache of this user

    def count(page_size):
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(url, {"page_size": page_size, "page": 1})
        assert response.status_code == 200
        return len(ctx.captured_queries), len(response.json()["results"])

    for i in range(12):
        incident = incident_services.incident_open(
            title=f"Incident {i}", playbook=desk["incident"].playbook
        )
        incident_services.note_add(incident=incident, actor=manager, text="n")
        Notification.objects.create(
            incident=incident,
            to_email="a@example.test",
            reason="escalation",
            dedupe_key=f"q:{i}",
            message_id=f"<q-{i}@example.test>",
            subject="s",
            body_text="b",
        )
        comms.message_draft(
            incident=incident,
            author=manager,
            audience=desk["customers"],
            channel="website",
            body="Draft.",
        )
        incident_services.incident_resolve(incident=incident, actor=manager)
    small = count(5)
    large = count(50)
    assert small[1] == 5 and large[1] > 5
    assert small[0] == large[0], (small, large)


def test_the_schema_documents_every_endpoint_and_the_docs_need_no_cdn(desk, client):
    manager = member("manager", "Crisis managers")
    client.force_login(manager)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for name in list(ENDPOINTS) + [
        "risks",
        "roles",
        "rotations",
        "stakeholder-groups",
        "contacts",
        "playbooks",
    ]:
        assert f"/api/v1/{name}/" in paths, name
    for action in ("acknowledge", "severity", "contain", "resolve", "close", "reopen"):
        assert f"/api/v1/incidents/{{id}}/{action}/" in paths
    for action in ("edit", "submit", "approve", "send", "publish", "correct"):
        assert f"/api/v1/messages/{{id}}/{action}/" in paths
    assert "400" in paths["/api/v1/incidents/"]["post"]["responses"]
    for path, methods in paths.items():
        for method, operation in methods.items():
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            if "{id}" in path:
                assert "404" in operation["responses"], (method, path)
    docs = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs and "cdn" not in docs.lower() and "jsdelivr" not in docs


def test_the_schema_is_valid_openapi_without_warnings(tmp_path):
    from django.core.management import call_command

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text(encoding="utf-8")
    assert text.startswith("openapi: 3") and "Idempotency-Key" in text


def test_post_mortems_and_action_items_through_the_api(desk):
    manager = member("manager", "Crisis managers")
    responder = member("responder", "Responders")
    incident = desk["incident"]
    incident_services.incident_resolve(incident=incident, actor=manager)
    pm = incident.postmortem.pk
    r = api(responder)
    edited = r.post(f"/api/v1/postmortems/{pm}/edit/", {"summary": "Kártyaadatok."}, format="json")
    assert edited.status_code == 200 and edited.json()["summary"] == "Kártyaadatok."
    assert r.post(f"/api/v1/postmortems/{pm}/submit/").json()["status"] == "in_review"
    assert r.post(f"/api/v1/postmortems/{pm}/publish/").status_code == 403  # no permission
    published = api(manager).post(f"/api/v1/postmortems/{pm}/publish/")
    assert published.status_code == 201 and published.json()["number"] == 1

    item = r.post(
        "/api/v1/action-items/",
        {"postmortem": pm, "title": "Rotate the keys", "kind": "corrective",
         "owner": responder.pk, "due_on": "2026-12-01", "playbook": incident.playbook_id},
        format="json",
    )  # fmt: skip
    assert item.status_code == 201, item.content
    iid = item.json()["id"]
    assert (
        r.post(
            f"/api/v1/action-items/{iid}/status/", {"status": "bogus"}, format="json"
        ).status_code
        == 400
    )
    assert r.post(f"/api/v1/action-items/{iid}/revise_playbook/").status_code == 403
    revised = api(manager).post(f"/api/v1/action-items/{iid}/revise_playbook/")
    assert revised.json()["produced_version"] is not None
    done = r.post(f"/api/v1/action-items/{iid}/status/", {"status": "done"}, format="json")
    assert done.json()["status"] == "done" and done.json()["done_at"]
    bad = r.post(
        "/api/v1/action-items/", {"postmortem": 999999, "title": "", "kind": "x"}, format="json"
    )
    assert bad.status_code == 400 and {"postmortem", "title", "kind"} <= set(bad.json())


def test_the_audit_history_shows_who_changed_what_in_the_admin(desk, client):
    admin_user = UserFactory(username="auditor", is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    admin_client = client
    incident = desk["incident"]
    response = admin_client.post(
        f"/api/v1/incidents/{incident.pk}/severity/", {"severity": 3, "reason": "smaller"}
    )
    assert response.status_code == 200, response.content
    page = admin_client.get(f"/admin/incidents/incident/{incident.pk}/history/")
    assert page.status_code == 200
    html = page.content.decode()
    assert admin_user.username in html
    latest = incident.history.latest("history_date")
    assert latest.severity == 3 and latest.history_user == admin_user
    assert "severity" in latest.diff_against(latest.prev_record).changed_fields


def test_paging_someone_about_a_confidential_incident_lets_them_open_it(
    team, make_playbook, broker_calls
):
    from django.utils import timezone

    from incidents import escalation
    from incidents.models import Timer
    from incidents.selectors import incidents_visible_to
    from playbooks.models import EscalationLevel

    ensure_groups()
    playbook = make_playbook()
    outsider = member("night-duty", "Responders")
    level = EscalationLevel.objects.get(playbook=playbook, position=1)
    level.target, level.role = EscalationLevel.Target.USERS, None
    level.save()
    level.users.set([outsider])
    secret = incident_services.incident_open(title="Titkos", confidential=True, playbook=playbook)
    assert not incidents_visible_to(outsider).filter(pk=secret.pk).exists()
    timer = Timer.objects.get(incident=secret, kind="escalation", level=1)
    escalation.timer_fire(timer_id=timer.pk, now=timer.due_at + timezone.timedelta(seconds=1))
    assert secret.notifications.filter(recipient=outsider).exists()
    assert incidents_visible_to(outsider).filter(pk=secret.pk).exists()
    assert api(outsider).get(f"/api/v1/incidents/{secret.pk}/").status_code == 200


def test_starting_a_post_mortem_and_scheduling_a_message_through_the_api(desk):
    from django.utils import timezone

    manager = member("manager", "Crisis managers")
    client = api(manager)
    incident = desk["incident"]
    started = client.post(f"/api/v1/incidents/{incident.pk}/start-postmortem/")
    assert started.status_code == 200 and started.json()["incident"] == incident.pk
    assert (
        client.post(f"/api/v1/incidents/{incident.pk}/start-postmortem/").json()["id"]
        == (started.json()["id"])
    )
    writer, lawyer = member("writer", "Communications"), member("lawyer2", "Legal")
    mid = api(writer).post(
        "/api/v1/messages/",
        {"incident": incident.pk, "audience": desk["customers"].pk, "channel": "email",
         "subject": "Update", "body": "Dear {recipient_name}, an update."},
        format="json",
    ).json()["id"]  # fmt: skip
    default = api(writer).post(
        f"/api/v1/messages/{mid}/drop-language/", {"language": "en"}, format="json"
    )
    assert default.status_code == 400 and "language" in default.json()
    for code in ("el", "he", "hu"):
        dropped = api(writer).post(
            f"/api/v1/messages/{mid}/drop-language/", {"language": code}, format="json"
        )
        assert dropped.status_code == 200, dropped.content
    assert dropped.json()["dropped_languages"] == ["el", "he", "hu"]
    assert dropped.json()["translations"] == {}
    api(writer).post(f"/api/v1/messages/{mid}/submit/")
    api(lawyer).post(f"/api/v1/messages/{mid}/approve/", {}, format="json")
    past = api(writer).post(
        f"/api/v1/messages/{mid}/schedule/", {"at": "2001-01-01T00:00:00Z"}, format="json"
    )
    assert past.status_code == 400 and "at" in past.json()
    at = (timezone.now() + timezone.timedelta(hours=1)).isoformat()
    scheduled = api(writer).post(f"/api/v1/messages/{mid}/schedule/", {"at": at}, format="json")
    assert scheduled.status_code == 200, scheduled.content
    assert incident.timers.filter(kind="message_send", message_id=mid, state="pending").exists()


def test_handing_a_role_over_through_the_api_relieves_the_previous_holder(desk):
    manager = member("manager", "Crisis managers")
    client = api(manager)
    incident = desk["incident"]
    current = incident.assignments.filter(relieved_at__isnull=True).first()
    newcomer = member("newcomer", "Responders")
    handed = client.post(
        "/api/v1/assignments/",
        {"incident": incident.pk, "role": current.role_id, "user": newcomer.pk},
        format="json",
    )
    assert handed.status_code == 201, handed.content
    current.refresh_from_db()
    assert current.relieved_at is not None
    relieved = client.post(f"/api/v1/assignments/{handed.json()['id']}/relieve/")
    assert relieved.status_code == 200 and relieved.json()["relieved_at"]


def test_notifications_filter_by_several_incidents_and_by_time_without_leaking(matrix):
    import datetime as dt

    from django.utils import timezone

    from incidents.models import Notification

    public, secret, people = matrix["public"], matrix["secret"], matrix["people"]
    third = incident_services.incident_open(title="Harmadik", playbook=public.playbook)
    t = timezone.now().replace(microsecond=0)
    for i, incident in enumerate((public, secret, third)):
        Notification.objects.create(
            incident=incident, to_email=f"n{i}@example.test", reason="task_due",
            dedupe_key=f"filters:{i}", message_id=f"<filters-{i}@example.test>", subject="s",
            body_text="b", created_at=t - dt.timedelta(hours=i), status="sent",
            sent_at=t - dt.timedelta(hours=i) + dt.timedelta(minutes=5),
        )  # fmt: skip

    def ids(client, params):
        response = client.get("/api/v1/notifications/", params)
        assert response.status_code == 200, response.json()
        return {row["message_id"].strip("<>").split("@")[0] for row in response.json()["results"]}

    manager = api(people["manager"])
    two = {"filters-0", "filters-1", f"matrix-{public.pk}", f"matrix-{secret.pk}"}
    assert ids(manager, {"incident": [public.pk, secret.pk]}) >= two
    assert ids(manager, {"incident__in": f"{public.pk},{secret.pk}"}) >= two
    assert not ids(manager, {"incident": [public.pk, secret.pk]}) & {"filters-2"}
    window = {"created_after": (t - dt.timedelta(minutes=90)).isoformat(),
              "created_before": (t - dt.timedelta(minutes=30)).isoformat()}  # fmt: skip
    assert ids(manager, {**window, "reason": "task_due"}) == {"filters-1"}
    sent = {"sent_after": (t - dt.timedelta(minutes=50)).isoformat(), "reason": "task_due"}
    assert ids(manager, sent) == {"filters-0"}
    sent_before = {"sent_before": (t - dt.timedelta(minutes=50)).isoformat(), "reason": "task_due"}
    assert ids(manager, sent_before) == {"filters-1", "filters-2"}

    # Someone who may not see the confidential incident: its id is a made-up id.
    unassigned = api(people["unassigned"])
    for key, real, made_up in [
        ("incident", [public.pk, secret.pk], [public.pk, 999999]),
        ("incident__in", f"{public.pk},{secret.pk}", f"{public.pk},999999"),
        ("incident", [secret.pk], [999999]),
        ("incident__in", f"{secret.pk}", "999999"),
        # Past any id's range: refused alike, never sent to the database (on SQLite
        # the query itself would fail with an OverflowError, a 500).
        ("incident", [secret.pk], [2**77]),
        ("incident__in", f"{secret.pk}", f"{-(2**70)}"),
    ]:
        a = unassigned.get("/api/v1/notifications/", {key: real})
        b = unassigned.get("/api/v1/notifications/", {key: made_up})
        assert (a.status_code, a.json()) == (b.status_code, b.json()), key
    mine = ids(unassigned, {"incident__in": f"{public.pk},{third.pk}"})
    assert "filters-1" not in mine and {"filters-0", "filters-2"} <= mine

    schema = api(people["manager"]).get("/api/schema/", {"format": "json"}).json()
    params = schema["paths"]["/api/v1/notifications/"]["get"]["parameters"]
    by_name = {p["name"]: p for p in params}
    for name in ("incident", "incident__in", "created_after", "created_before", "sent_after",
                 "sent_before"):  # fmt: skip
        assert by_name[name].get("description"), name
    assert by_name["incident"]["schema"]["type"] == "array"
    assert by_name["incident__in"]["explode"] is False
