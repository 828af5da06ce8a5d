"""The permission matrix, continued: every way round the selectors that once leaked a
confidential incident (admin history and its revision forms, form choices, the admin's
view-on-site shortcut, idempotent replays), tested as an outsider would try them."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.contenttypes.models import ContentType

from incidents import services as incident_services
from incidents.models import ActionItem, Incident, Message, PostMortem
from tests.incidents.conftest import CAN_READ, api, member

pytestmark = pytest.mark.django_db

MADE_UP = 987654

# Staff who may not see the confidential incident, and staff who may.
HIDDEN_FROM = ("outsider", "executive", "unassigned", "communications")
SHOWN_TO = ("assigned", "manager")


def _staff(matrix, persona):
    if persona == "communications":
        user = member("comms", "Communications")
    else:
        user = matrix["people"][persona]
    user.is_staff = True
    user.save()
    return user


def _secret_records(matrix) -> dict[str, object]:
    """One record of each audited incidents model that belongs to the secret incident."""
    secret = matrix["secret"]
    pm = PostMortem.objects.get(incident=secret)
    item = ActionItem.objects.create(
        postmortem=pm, title="Rotate the board's keys", kind=ActionItem.Kind.CORRECTIVE
    )
    return {
        "incident": secret,
        "message": Message.objects.filter(incident=secret).first(),
        "postmortem": pm,
        "actionitem": item,
    }


# Every page of the desk carries a sign-out form whose CSRF token is new on each
# response: the only difference two answers may have.
CSRF_TOKEN = re.compile(r'value="[A-Za-z0-9]{64}"')


def _text(response) -> str:
    return CSRF_TOKEN.sub('value="CSRF"', response.content.decode())


def _reveals(html: str, incident: Incident) -> bool:
    return incident.title in html or incident.reference in html


def _same_answer(real, made_up, real_id, made_up_id) -> bool:
    def norm(response):
        text = _text(response).replace(str(made_up_id), "ID")
        return response.status_code, text.replace(str(real_id), "ID")

    return norm(real) == norm(made_up)


# ------------------------------------------------------------------ 1. admin history


@pytest.mark.parametrize("persona", HIDDEN_FROM)
def test_it_answers_history_of_a_hidden_record_like_a_made_up_one(client, matrix, persona):
    client.force_login(_staff(matrix, persona))
    secret = matrix["secret"]
    for model, obj in _secret_records(matrix).items():
        base = f"/admin/incidents/{model}"
        real = client.get(f"{base}/{obj.pk}/history/")
        made_up = client.get(f"{base}/{MADE_UP}/history/")
        assert real.status_code == 404, (persona, model, real.status_code)
        assert _same_answer(real, made_up, obj.pk, MADE_UP), (persona, model)
        assert not _reveals(_text(real), secret), (persona, model)
        hid = obj.history.earliest("history_date").history_id
        revision = client.get(f"{base}/{obj.pk}/history/{hid}/")
        made_up_revision = client.get(f"{base}/{MADE_UP}/history/{hid}/")
        assert revision.status_code == 404, (persona, model, revision.status_code)
        assert _same_answer(revision, made_up_revision, obj.pk, MADE_UP), (persona, model)
        assert not _reveals(_text(revision), secret), (persona, model)


@pytest.mark.parametrize("persona", SHOWN_TO)
def test_it_shows_history_to_those_who_may_see_the_record(client, matrix, persona):
    client.force_login(_staff(matrix, persona))
    for model, obj in _secret_records(matrix).items():
        if persona == "assigned" and model == "message":
            continue  # responders do not read messages in the admin
        page = client.get(f"/admin/incidents/{model}/{obj.pk}/history/")
        assert page.status_code == 200, (persona, model)
        hid = obj.history.earliest("history_date").history_id
        assert client.get(f"/admin/incidents/{model}/{obj.pk}/history/{hid}/").status_code == 200


def test_it_answers_history_without_the_permission_like_a_made_up_record(client, matrix):
    """No model permission at all: the same 404 for a real and a made-up object, playbooks too."""
    client.force_login(_staff(matrix, "outsider"))
    public = matrix["public"]
    playbook = public.playbook
    for base, pk in (
        ("/admin/incidents/incident", public.pk),
        ("/admin/playbooks/playbook", playbook.pk),
    ):
        real = client.get(f"{base}/{pk}/history/")
        made_up = client.get(f"{base}/{MADE_UP}/history/")
        assert real.status_code == 404, base
        assert _same_answer(real, made_up, pk, MADE_UP), base


# ------------------------------------------------------------------ 2. no revert


def _form_data(obj, **changes) -> dict:
    """What a browser would post for `obj` (JSON fields as text), with `changes`."""
    import json

    from django.forms.models import model_to_dict

    data = {
        k: json.dumps(v) if isinstance(v, dict | list) else v
        for k, v in model_to_dict(obj).items()
        if v is not None
    }
    data.update(changes)
    return data


def _revision_post(client, model, obj, hid, **changes):
    data = _form_data(obj, **changes)
    return client.post(f"/admin/incidents/{model}/{obj.pk}/history/{hid}/", data)


@pytest.mark.parametrize("persona", ["unassigned", "manager", "superuser"])
def test_it_never_writes_through_a_history_revision_form(client, matrix, persona):
    if persona == "superuser":
        user = member("root", is_staff=True, is_superuser=True)
    else:
        user = _staff(matrix, persona)
    client.force_login(user)
    records = _secret_records(matrix)
    secret = matrix["secret"]
    incident_services.incident_reopen(incident=secret, actor=None)
    incident_services.incident_acknowledge(incident=secret, actor=matrix["people"]["manager"])
    before = {model: type(obj).objects.filter(pk=obj.pk).values().get() for model, obj in
              records.items()}  # fmt: skip
    changes = {
        "incident": {"title": "Changed", "status": "open", "acknowledged_by": ""},
        "message": {"body": "Changed", "subject": "Changed"},
        "postmortem": {"summary": "Changed"},
        "actionitem": {"title": "Changed", "status": "done"},
    }
    for model, obj in records.items():
        oldest = obj.history.earliest("history_date")
        response = _revision_post(client, model, oldest.instance, oldest.history_id,
                                  **changes[model])  # fmt: skip
        if persona == "unassigned":
            assert response.status_code == 404, (model, response.status_code)
        else:
            assert response.status_code == 405, (model, response.status_code)
        after = type(obj).objects.filter(pk=obj.pk).values().get()
        assert after == before[model], model
        if persona != "unassigned":
            page = client.get(f"/admin/incidents/{model}/{obj.pk}/history/{oldest.history_id}/")
            assert page.status_code == 200
            html = _text(page)
            # Read-only: no field to type in, no button to revert with.
            assert 'name="title"' not in html and 'name="body"' not in html, model
            assert 'name="summary"' not in html and 'name="_save"' not in html, model
    secret.refresh_from_db()
    assert secret.status == "acknowledged" and secret.acknowledged_by is not None


def test_it_never_reverts_a_playbook_version_through_history(admin_client, matrix):
    playbook = matrix["public"].playbook
    oldest = playbook.history.earliest("history_date")
    before = type(playbook).objects.filter(pk=playbook.pk).values().get()
    data = _form_data(oldest.instance, title="Changed", status="draft")
    url = f"/admin/playbooks/playbook/{playbook.pk}/history/{oldest.history_id}/"
    assert admin_client.post(url, data).status_code == 405
    assert type(playbook).objects.filter(pk=playbook.pk).values().get() == before
    assert 'name="_save"' not in _text(admin_client.get(url))


# ------------------------------------------------------------------ 3. form choices


def test_it_offers_only_visible_records_in_add_forms_and_the_browsable_api(client, matrix):
    secret, public = matrix["secret"], matrix["public"]
    for incident in (secret, public):  # active again: the message form offers active ones
        incident_services.incident_reopen(incident=incident, actor=None)
    _secret_records(matrix)
    comms_staff = _staff(matrix, "communications")
    responder = _staff(matrix, "unassigned")

    client.force_login(comms_staff)
    page = client.get("/admin/incidents/message/add/")
    assert page.status_code == 200
    assert not _reveals(_text(page), secret) and public.reference in _text(page)

    client.force_login(responder)
    page = client.get("/admin/incidents/actionitem/add/")
    assert page.status_code == 200
    assert not _reveals(_text(page), secret) and public.reference in _text(page)
    for model, field, term in (
        ("actionitem", "postmortem", "INC"),
        ("message", "incident", "Vez"),
        ("timelineentry", "incident", "Vez"),
    ):
        found = client.get(
            "/admin/autocomplete/",
            {"app_label": "incidents", "model_name": model, "field_name": field, "term": term},
        )
        assert not _reveals(_text(found), secret), model

    browsing = api(responder)
    for url in (
        "/api/v1/action-items/",
        "/api/v1/assignments/",
        "/api/v1/timeline/",
        "/api/v1/postmortems/",
        "/api/v1/incidents/",
        "/api/v1/tasks/",
    ):
        page = browsing.get(url, {"format": "api"})
        assert page.status_code == 200, url
        assert not _reveals(_text(page), secret), url
    item = ActionItem.objects.create(
        postmortem=public.postmortem, title="Public item", kind=ActionItem.Kind.DETECTIVE
    )
    page = browsing.get(f"/api/v1/action-items/{item.pk}/", {"format": "api"})
    assert page.status_code == 200 and not _reveals(_text(page), secret)


# ------------------------------------------------------------------ 4. view on site


@pytest.mark.parametrize("persona", ["unassigned", "outsider"])
def test_it_answers_the_admin_shortcut_alike_for_hidden_and_made_up(
    client, matrix, settings, persona
):
    settings.DEBUG = True
    client.force_login(_staff(matrix, persona))
    records = _secret_records(matrix)
    for model, obj in records.items():
        ct = ContentType.objects.get_for_model(type(obj)).pk
        real = client.get(f"/admin/r/{ct}/{obj.pk}/")
        made_up = client.get(f"/admin/r/{ct}/{MADE_UP}/")
        assert real.status_code == 404, (model, real.status_code)
        assert _same_answer(real, made_up, obj.pk, MADE_UP), model
        assert not _reveals(_text(real), matrix["secret"]), model
    # A public record without a page of its own answers the same, as does a made-up type.
    ct = ContentType.objects.get_for_model(Incident).pk
    public = client.get(f"/admin/r/{ct}/{matrix['public'].pk}/")
    made_up = client.get(f"/admin/r/{ct}/{MADE_UP}/")
    assert _same_answer(public, made_up, matrix["public"].pk, MADE_UP)
    bad_type = client.get(f"/admin/r/{MADE_UP}/{MADE_UP}/")
    assert bad_type.status_code == 404
    assert _text(bad_type).replace(str(MADE_UP), "X") == _text(made_up).replace(
        str(MADE_UP), "X"
    ).replace(str(ct), "X")


# ------------------------------------------------------------------ 5. schema


def test_the_public_schema_and_docs_carry_no_data(client, matrix):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    docs = client.get("/api/docs/")
    assert schema.status_code == 200 and docs.status_code == 200
    for incident in (matrix["secret"], matrix["public"]):
        for response in (schema, docs):
            assert not _reveals(_text(response), incident)


# ------------------------------------------------------------------ 6. idempotent replays


def test_it_replays_an_idempotency_key_only_while_the_incident_is_visible(matrix):
    from incidents.models import IdempotencyKey

    responder = matrix["people"]["unassigned"]
    client = api(responder)
    body = {"title": "Titkos felvásárlás", "confidential": True}
    first = client.post("/api/v1/incidents/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-9")
    assert first.status_code == 201, first.content
    again = client.post("/api/v1/incidents/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-9")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    opened = Incident.objects.get(pk=first.json()["id"])

    # Relieved: the holder of the key may no longer see it, so the replay says nothing of it.
    role = matrix["secret"].assignments.first().role
    incident_services.role_assign(incident=opened, role=role, user=responder)
    incident_services.role_relieve(incident=opened, role=role)
    replay = client.post("/api/v1/incidents/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-9")
    assert replay.status_code == 400, replay.content
    assert opened.reference not in _text(replay) and str(opened.pk) not in _text(replay)
    assert Incident.objects.filter(title=body["title"]).count() == 1

    # Keys are per person: someone else's identical key opens their own incident.
    other = api(matrix["people"]["assigned"])
    theirs = other.post("/api/v1/incidents/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-9")
    assert theirs.status_code == 201 and theirs.json()["id"] != opened.pk
    assert IdempotencyKey.objects.filter(key="k-9").count() == 2


def test_the_service_opens_once_per_key(matrix):
    manager = matrix["people"]["manager"]
    first = incident_services.incident_open(title="Egyszer", actor=manager, idempotency_key="s-1")
    again = incident_services.incident_open(title="Egyszer", actor=manager, idempotency_key="s-1")
    assert again.pk == first.pk and again.replayed and not first.replayed
    assert Incident.objects.filter(title="Egyszer").count() == 1


# ------------------------------------------------------------------ 7. 403, not 400


def test_publishing_a_post_mortem_without_the_permission_is_403(matrix):
    pm = matrix["public"].postmortem
    responder = api(matrix["people"]["unassigned"])
    edit = {"summary": "Kártyaadatok."}
    assert responder.post(f"/api/v1/postmortems/{pm.pk}/edit/", edit).status_code == 200
    assert responder.post(f"/api/v1/postmortems/{pm.pk}/submit/").status_code == 200
    refused = responder.post(f"/api/v1/postmortems/{pm.pk}/publish/")
    assert refused.status_code == 403, refused.content
    pm.refresh_from_db()
    assert pm.status == "in_review"
    # A rule, not a permission, is still a 400.
    manager = api(matrix["people"]["manager"])
    assert manager.post(f"/api/v1/postmortems/{pm.pk}/publish/").status_code == 201
    assert manager.post(f"/api/v1/postmortems/{pm.pk}/publish/").status_code == 400


# ------------------------------------------------------------------ 8. the opener is on it


def test_whoever_opens_a_confidential_incident_can_see_it(client, matrix):
    responder = matrix["people"]["unassigned"]
    assert CAN_READ["unassigned"] == (True, False)
    opened = api(responder).post(
        "/api/v1/incidents/", {"title": "Saját titok", "confidential": True}, format="json"
    )
    assert opened.status_code == 201
    assert api(responder).get(f"/api/v1/incidents/{opened.json()['id']}/").status_code == 200
    assert (
        api(matrix["people"]["executive"])
        .get(f"/api/v1/incidents/{opened.json()['id']}/")
        .status_code
        == 404
    )

    staff = _staff(matrix, "unassigned")
    client.force_login(staff)
    added = client.post(
        "/admin/incidents/incident/add/",
        {"title": "Admin titok", "severity": 2, "confidential": "on", "category": "other"},
    )
    assert added.status_code == 302, _text(added)[:2000]
    incident = Incident.objects.get(title="Admin titok")
    assert incident.confidential
    assert client.get(f"/admin/incidents/incident/{incident.pk}/change/").status_code == 200


# ------------------------------------------------------------------ 9. acknowledge links


@pytest.fixture
def paged_secret(matrix):
    """A confidential incident whose level-1 page went to the on-call crisis manager."""
    import time_machine

    from incidents import acklinks, escalation
    from incidents.models import Notification, Timer

    desk = matrix["desk"]
    secret = incident_services.incident_open(
        title="Titkos adatszivárgás", confidential=True, playbook=matrix["public"].playbook
    )
    level1 = Timer.objects.get(incident=secret, kind="escalation", level=1)
    with time_machine.travel(level1.due_at, tick=False):
        escalation.timer_fire(timer_id=level1.pk)
    page = Notification.objects.get(incident=secret, reason="escalation")
    assert page.recipient == desk["noa"]
    url = f"/incidents/ack/{acklinks.ack_token(page.message_id)}/"
    return {"incident": secret, "page": page, "url": url, "holder": desk["noa"]}


def _dead_link_page(client):
    from incidents import acklinks

    forged = acklinks.ack_token("<made-up@example.test>")
    return client.get(f"/incidents/ack/{forged}/")


def _same_page(response, reference):
    return response.status_code, _text(response).replace(reference, "")


def test_an_acknowledge_link_dies_when_its_holder_is_relieved(client, paged_secret, matrix):
    secret, url = paged_secret["incident"], paged_secret["url"]
    assert secret.title in _text(client.get(url))  # live: the holder may see it
    role = secret.assignments.get(user=paged_secret["holder"], relieved_at__isnull=True).role
    after_the_page = paged_secret["page"].created_at + dt.timedelta(minutes=1)
    incident_services.role_assign(
        incident=secret, role=role, user=matrix["people"]["assigned"], now=after_the_page
    )
    shown, dead = client.get(url), _dead_link_page(client)
    assert not _reveals(_text(shown), secret)
    assert (shown.status_code, _text(shown)) == (dead.status_code, _text(dead))
    posted = client.post(url)
    assert (posted.status_code, _text(posted)) == (dead.status_code, _text(dead))
    secret.refresh_from_db()
    assert secret.status == "open" and secret.acknowledged_by is None


def test_a_used_link_says_nothing_of_the_incident(client, paged_secret):
    secret, url = paged_secret["incident"], paged_secret["url"]
    done = client.post(url)
    assert done.status_code == 200 and "is acknowledged" in _text(done)
    dead = _dead_link_page(client)
    for response in (client.get(url), client.post(url)):
        assert not _reveals(_text(response), secret)
        assert (response.status_code, _text(response)) == (dead.status_code, _text(dead))


def test_a_link_made_unnecessary_by_a_colleague_says_who_and_when_only(client, paged_secret):
    """The holder may still see the incident: the link may say who acknowledged first."""
    secret, url = paged_secret["incident"], paged_secret["url"]
    colleague = member("colleague", "Crisis managers", first_name="Kolléga")
    incident_services.incident_acknowledge(incident=secret, actor=colleague)
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 200
        text = _text(response)
        assert "Kolléga" in text and "acknowledged it at" in text
        # The reference, who and when: nothing else of the incident.
        assert secret.title not in text and secret.get_severity_display() not in text
        assert secret.get_status_display() not in text


def test_the_link_service_burns_and_acknowledges_once(paged_secret):
    from incidents.acklinks import ack_token

    page, secret = paged_secret["page"], paged_secret["incident"]
    token = ack_token(page.message_id)
    first = incident_services.incident_acknowledge_by_link(token=token)
    again = incident_services.incident_acknowledge_by_link(token=token)
    assert (first.state, again.state) == ("done", "dead")
    assert again.incident is None
    secret.refresh_from_db()
    page.refresh_from_db()
    assert secret.acknowledged_by == paged_secret["holder"] and page.ack_token_used_at


# ------------------------------------------------------------------ 10. paged, while not closed


def test_being_paged_shows_a_confidential_incident_until_it_closes(paged_secret, matrix):
    from incidents.selectors import incidents_visible_to

    secret = paged_secret["incident"]
    pager = member("pager", "Responders")
    paged_only = member("night", "Responders")
    from incidents.models import Notification

    Notification.objects.create(
        incident=secret,
        recipient=paged_only,
        to_email="night@example.test",
        reason="escalation",
        dedupe_key="night",
        message_id="<night@example.test>",
        status=Notification.Status.SENT,  # delivered: resolving cancels only unsent pages
        subject="s",
        body_text="b",
    )

    def sees(user):
        return incidents_visible_to(user).filter(pk=secret.pk).exists()

    assigned = paged_secret["holder"]
    assert sees(paged_only) and sees(assigned) and not sees(pager)
    incident_services.incident_resolve(incident=secret, actor=None)
    assert sees(paged_only)  # resolved is not closed: the post-mortem is still written
    incident_services.incident_close(incident=secret, actor=None)
    assert not sees(paged_only)
    assert api(paged_only).get(f"/api/v1/incidents/{secret.pk}/").status_code == 404
    assert sees(assigned)  # holding a role on it, the crisis manager still sees it


def test_the_migration_withdraws_the_grants_paging_left_behind(matrix):
    import importlib

    from django.apps import apps
    from guardian.shortcuts import assign_perm, get_perms

    migration = importlib.import_module("incidents.migrations.0008_withdraw_paging_grants")
    secret = matrix["secret"]
    once_paged = member("once-paged", "Responders")
    assign_perm("incidents.view_incident", once_paged, secret)  # what paging used to do
    opener = member("opener", "Responders")
    opened = incident_services.incident_open(title="Nyitott", confidential=True, actor=opener)
    migration.withdraw(apps, None)
    assert "view_incident" not in get_perms(once_paged, secret)
    assert "view_incident" in get_perms(matrix["people"]["assigned"], secret)  # holds a role
    assert "view_incident" in get_perms(opener, opened)
