"""The public status page: what it shows, in which order and language, and what never."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.utils import timezone

from incidents import comms
from incidents import services as incident_services
from incidents.models import Message
from tests.factories import StakeholderGroupFactory
from tests.statuspage.conftest import publish

pytestmark = pytest.mark.django_db


def _statements(html: str) -> list[str]:
    return re.findall(r'id="statement-(\d+)"', html)


def test_it_shows_a_published_statement_to_anyone_without_the_war_room(client, desk):
    message = publish(desk, "Card payments fail since 10:05; we are on it.")
    response = client.get("/status/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Card payments fail since 10:05; we are on it." in html
    assert desk["incident"].public_heading in html
    assert f'id="statement-{message.pk}"' in html
    # No sign-in, nothing of the war room: its navigation, its sign-out, the admin.
    assert 'href="/incidents/' not in html
    assert "/accounts/" not in html
    assert "csrfmiddlewaretoken" not in html
    assert "Set-Cookie" not in str(response.headers)
    page = client.get(f"/status/{desk['incident'].reference}/")
    assert page.status_code == 200
    assert "Card payments fail since 10:05" in page.content.decode()


def test_it_lists_incidents_and_statements_newest_first(client, desk):
    first = publish(desk, "First words.")
    other = incident_services.incident_open(title="Warehouse flooded", playbook=None)
    incident_services.incident_set_public_title(
        incident=other, public_title="Warehouse closed", actor=None
    )
    incident_services.incident_set_public_title(
        incident=desk["incident"], public_title="Card payments failing", actor=None
    )
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=5)):
        publish(desk, "About the warehouse.", incident=other)
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=10)):
        latest = publish(desk, "Second words.")
    html = client.get("/status/").content.decode()
    # The card incident changed last, so it is first; its newest statement first.
    assert html.index("Card payments failing") < html.index("Warehouse closed")
    ids = _statements(html)
    assert ids.index(str(latest.pk)) < ids.index(str(first.pk))
    detail = client.get(f"/status/{desk['incident'].reference}/").content.decode()
    assert _statements(detail) == [str(latest.pk), str(first.pk)]
    assert "Warehouse closed" not in detail


def test_it_shows_only_sent_or_published_public_statements_to_public_audiences(client, desk):
    shown = publish(desk, "Shown: the public statement.")
    draft = comms.message_draft(
        incident=desk["incident"],
        author=desk["eszter"],
        audience=desk["customers"],
        channel="website",
        body="Draft never shown.",
    )
    staff = publish(desk, "Only for staff, never shown.", audience=desk["employees"])
    internal = publish(desk, "Internal note, never shown.", is_public=False)
    html = client.get("/status/").content.decode()
    assert "Shown: the public statement." in html
    for hidden in ("Draft never shown.", "Only for staff", "Internal note"):
        assert hidden not in html
    assert set(_statements(html)) == {str(shown.pk)}
    assert draft.status == Message.Status.DRAFT and staff.is_final and internal.is_final


def test_it_says_so_when_nothing_is_going_on(client, desk):
    # The incident exists, but nothing public went out about it.
    html = client.get("/status/").content.decode()
    assert "No incidents at the moment." in html
    assert desk["incident"].reference not in html
    assert client.get(f"/status/{desk['incident'].reference}/").status_code == 404


def test_it_never_shows_a_confidential_incident(client, matrix):
    """The permission matrix's incidents: the same statement to the same public audience
    on both; only the public incident's shows, and the secret one answers like a
    made-up reference everywhere."""
    desk = {**matrix["desk"], "eszter": matrix["people"]["manager"]}
    desk["customers"].public = True
    desk["customers"].save()
    secret, public = matrix["secret"], matrix["public"]
    for incident in (public, secret):
        publish(desk, f"Statement about {incident.reference}", incident=incident)
    for who in ("anonymous", "manager"):  # signed in or not: the page is the same
        if matrix["people"][who]:
            client.force_login(matrix["people"][who])
        for path in ("/status/", "/status/feed.atom", f"/status/{public.reference}/"):
            body = client.get(path).content.decode()
            assert public.reference in body
            assert secret.title not in body and secret.reference not in body
        for suffix in ("/", "/feed.atom"):
            hidden = client.get(f"/status/{secret.reference}{suffix}")
            made_up = client.get(f"/status/INC-2026-9999{suffix}")
            assert hidden.status_code == made_up.status_code == 404
            assert hidden.content == made_up.content


def test_it_never_shows_a_drill(client, desk):
    drill = incident_services.incident_open(
        title="Drill: the tracking page", drill=True, playbook=None
    )
    publish(desk, "Drill statement, never public.", incident=drill)
    publish(desk, "A real statement.")
    for path in ("/status/", "/status/feed.atom"):
        body = client.get(path).content.decode()
        assert "A real statement." in body
        assert "Drill statement" not in body and drill.reference not in body
    assert client.get(f"/status/{drill.reference}/").status_code == 404


def test_it_shows_a_correction_beside_what_it_corrects_and_removes_nothing(client, desk):
    original = publish(desk, "Since 06:00 tracking is down.")
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=7)):
        fixed = publish(desk, "Since 08:00 tracking is down.", corrects=original)
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=9)):
        again = publish(desk, "Since 08:10 tracking is down.", corrects=fixed)
    for path in ("/status/", f"/status/{desk['incident'].reference}/"):
        html = client.get(path).content.decode()
        # One statement, its id the original's; the current text first, then what it corrects.
        assert _statements(html) == [str(original.pk)]
        current = html.index("Since 08:10 tracking is down.")
        struck = re.findall(r"<del[^>]*>(.*?)</del>", html, re.S)
        assert any("Since 08:00" in s for s in struck)
        assert any("Since 06:00" in s for s in struck)
        assert "Since 08:10" not in "".join(struck)
        assert current < html.index("Since 08:00") < html.index("Since 06:00")
        assert "corrected" in html
    assert again.corrects_id == fixed.pk


def test_it_speaks_the_visitors_language_by_accept_language_and_by_switch(client, desk):
    publish(
        desk,
        "Card payments fail.",
        translations={
            "he": {"body": "התשלומים בכרטיס נכשלים."},
            "el": {"body": "Οι πληρωμές με κάρτα αποτυγχάνουν."},
        },
    )
    hebrew = client.get("/status/", HTTP_ACCEPT_LANGUAGE="he").content.decode()
    assert '<html lang="he" dir="rtl">' in hebrew
    assert "התשלומים בכרטיס נכשלים." in hebrew
    assert "Card payments fail." not in hebrew
    greek = client.get("/status/?lang=el", HTTP_ACCEPT_LANGUAGE="he")
    text = greek.content.decode()
    assert '<html lang="el" dir="ltr">' in text
    assert "Οι πληρωμές με κάρτα αποτυγχάνουν." in text
    assert greek["Content-Language"] == "el"
    # The switch stays in the page's links.
    assert f'href="/status/{desk["incident"].reference}/?lang=el"' in text
    # A language the statement lacks (Hungarian here, dropped): the audience's default.
    english = client.get("/status/?lang=en").content.decode()
    assert "Card payments fail." in english and '<html lang="en" dir="ltr">' in english
    vary = client.get("/status/")["Vary"]
    assert "Accept-Language" in vary and "Cookie" in vary


def test_it_moves_a_resolved_incident_to_history_after_the_configured_days(client, desk, settings):
    settings.CRISISDESK_STATUS_KEEP_DAYS = 2
    publish(desk, "Tracking is down.")
    incident_services.incident_resolve(incident=desk["incident"], actor=None)
    first = client.get("/status/")
    html = first.content.decode()
    assert "Tracking is down." in html and "Resolved" in html
    with time_machine.travel(timezone.now() + dt.timedelta(days=3)):
        # Nothing was published since, yet the page (and its ETag) moved on with time.
        response = client.get("/status/", HTTP_IF_NONE_MATCH=first["ETag"])
        assert response.status_code == 200
        later = response.content.decode()
    assert "Tracking is down." not in later
    history = later[later.index('id="status-history"') :]
    assert desk["incident"].reference in history
    # Its page still has everything.
    detail = client.get(f"/status/{desk['incident'].reference}/").content.decode()
    assert "Tracking is down." in detail


def test_it_shows_the_demo_desks_public_incident(client, db):
    from django.core.management import call_command

    call_command("load_starter")
    call_command("seed_demo")
    html = client.get("/status/").content.decode()
    assert "Parcel tracking delayed" in html  # its public title, not its internal one
    assert "Parcel tracking shows no updates" not in html
    assert "not 06:00 as we wrote" in html
    assert "<del" in html
    assert "Drill" not in html


def test_it_takes_no_input_but_reads(client, desk):
    publish(desk, "Words.")
    assert client.post("/status/").status_code == 405
    assert client.post(f"/status/{desk['incident'].reference}/").status_code == 405
    assert StakeholderGroupFactory(slug="x").public is False


def test_a_groups_public_flag_is_in_the_admin_and_the_api(admin_client, superuser, desk):
    from rest_framework.test import APIClient

    customers = desk["customers"]
    page = admin_client.get(f"/admin/playbooks/stakeholdergroup/{customers.pk}/change/")
    assert 'name="public"' in page.content.decode()
    api = APIClient()
    api.force_authenticate(superuser)
    row = api.get(f"/api/v1/stakeholder-groups/{customers.pk}/").json()
    assert row["public"] is True
    api.patch(f"/api/v1/stakeholder-groups/{customers.pk}/", {"public": False}, format="json")
    customers.refresh_from_db()
    assert customers.public is False


def test_the_one_selector_holds_the_rule(desk):
    """public_statements: the page, the feeds and the cache all read through it."""
    from incidents.selectors import public_incidents, public_statements

    shown = publish(desk, "Public.")
    drill = incident_services.incident_open(title="Drill", drill=True, playbook=None)
    secret = incident_services.incident_open(title="Secret", confidential=True, playbook=None)
    hidden = [
        publish(desk, "In a drill.", incident=drill),
        publish(desk, "Confidential.", incident=secret),
        publish(desk, "To staff.", audience=desk["employees"]),
        publish(desk, "Internal.", is_public=False),
    ]
    draft = comms.message_draft(
        incident=desk["incident"],
        author=desk["eszter"],
        audience=desk["customers"],
        channel="website",
        body="A draft.",
    )
    assert list(public_statements()) == [shown]
    assert list(public_incidents()) == [desk["incident"]]
    assert draft not in public_statements() and all(m.is_final for m in hidden)
