"""Which language a page speaks, and that right-to-left languages lay out right to left.

The order: the signed-in person's saved language (playbooks/people.py, applied
after LocaleMiddleware), else the browser's Accept-Language, else LANGUAGE_CODE.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import time_machine
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.test import Client, override_settings
from django.urls import path
from django.utils import timezone

from crisisdesk import urls as desk_urls
from incidents import acklinks, escalation, rollcall, services
from incidents.models import Notification, Timer
from incidents.notify import render_email
from playbooks.models import UserProfile
from tests.warroom.conftest import member

pytestmark = pytest.mark.django_db

HTML_TAG = re.compile(r"<html\b[^>]*>")


def html_tag(content: bytes | str) -> str:
    text = content.decode() if isinstance(content, bytes) else content
    return HTML_TAG.search(text).group(0)


def speaks(language: str, *, rtl: bool = False) -> str:
    return f'<html lang="{language}" dir="{"rtl" if rtl else "ltr"}">'


def test_it_prefers_the_saved_language_over_the_browsers(client, desk):
    person = member("hanna", "Responders")
    UserProfile.objects.create(user=person, language="hu")
    client.force_login(person)
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="he")
    assert page.status_code == 200
    assert page.headers["Content-Language"] == "hu"
    assert html_tag(page.content) == speaks("hu")


def test_it_follows_the_browser_without_a_saved_language(client, desk):
    person = member("gus", "Responders")
    UserProfile.objects.create(user=person, language="")
    client.force_login(person)
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="el,en;q=0.5")
    assert page.headers["Content-Language"] == "el"
    assert html_tag(page.content) == speaks("el")


def test_it_falls_back_to_the_desks_language_without_a_setting_or_a_header(client, desk):
    client.force_login(member("ned", "Responders"))
    page = client.get("/")
    assert page.headers["Content-Language"] == settings.LANGUAGE_CODE == "en"
    assert html_tag(page.content) == speaks("en")
    signed_out = Client().get("/accounts/login/")
    assert html_tag(signed_out.content) == speaks("en")


def test_it_follows_the_browser_when_signed_out(desk):
    page = Client().get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="el")
    assert html_tag(page.content) == speaks("el")


@pytest.fixture
def hebrew(client, desk, manager):
    UserProfile.objects.update_or_create(user=manager, defaults={"language": "he"})
    client.force_login(manager)
    return client


def test_war_room_pages_are_right_to_left_in_hebrew(hebrew, desk):
    incident = desk["incident"]
    for url in [
        "/",
        "/incidents/",
        "/incidents/new/",
        f"/incidents/{incident.reference}/",
        f"/incidents/{incident.reference}/communications/",
        "/accounts/preferences/",
    ]:
        page = hebrew.get(url, HTTP_ACCEPT_LANGUAGE="en")
        assert page.status_code == 200, url
        assert html_tag(page.content) == speaks("he", rtl=True), url


def _boom(request):
    raise RuntimeError("a test error")


def _forbidden(request):
    raise PermissionDenied


urlpatterns = [path("boom/", _boom), path("forbidden/", _forbidden), *desk_urls.urlpatterns]


@override_settings(ROOT_URLCONF=__name__)
def test_error_pages_are_right_to_left_in_hebrew(hebrew):
    missing = hebrew.get("/incidents/INC-1999-0001/")
    assert missing.status_code == 404
    assert html_tag(missing.content) == speaks("he", rtl=True)
    refused = hebrew.get("/forbidden/")
    assert refused.status_code == 403
    assert html_tag(refused.content) == speaks("he", rtl=True)
    # The server error page has no request context: the browser's language decides.
    broken = Client(raise_request_exception=False).get("/boom/", HTTP_ACCEPT_LANGUAGE="he")
    assert broken.status_code == 500
    assert html_tag(broken.content) == speaks("he", rtl=True)


@pytest.fixture
def paged(team, make_playbook, broker_calls):
    UserProfile.objects.update_or_create(user=team["people"]["noa"], defaults={"language": "he"})
    incident = services.incident_open(title="דליפת נתונים", playbook=make_playbook())
    level1 = Timer.objects.get(incident=incident, kind="escalation", level=1)
    with time_machine.travel(level1.due_at, tick=False):
        escalation.timer_fire(timer_id=level1.pk)
    return incident


def test_the_acknowledge_and_roll_call_pages_are_right_to_left_in_hebrew(paged):
    browser = Client(HTTP_ACCEPT_LANGUAGE="he")
    page = Notification.objects.filter(incident=paged, reason="escalation").first()
    ack = browser.get(f"/incidents/ack/{acklinks.ack_token(page.message_id)}/")
    assert ack.status_code == 200
    assert html_tag(ack.content) == speaks("he", rtl=True)
    # The reference is isolated from the sentence around it, and not escaped twice.
    assert f"<bdi>{paged.reference}</bdi>" in ack.content.decode()
    call = Notification.objects.filter(incident=paged, reason="activation").first()
    for answer in rollcall.ANSWERS:
        token = rollcall.rollcall_token(call.message_id, answer)
        confirm = browser.get(f"/incidents/rollcall/{token}/")
        assert confirm.status_code == 200
        assert html_tag(confirm.content) == speaks("he", rtl=True)
    dead = browser.get("/incidents/rollcall/not-a-token/")
    assert html_tag(dead.content) == speaks("he", rtl=True)


def test_e_mails_are_written_right_to_left_to_a_hebrew_reader(paged, team):
    noa = team["people"]["noa"]
    mails = Notification.objects.filter(incident=paged, recipient=noa)
    assert {n.reason for n in mails} >= {"activation"}
    for n in mails:
        assert html_tag(n.body_html) == speaks("he", rtl=True), n.reason
        assert f"<bdi>{paged.reference}</bdi>" in n.body_html and "&lt;bdi" not in n.body_html
    others = Notification.objects.filter(incident=paged).exclude(recipient=noa)
    assert others and all(html_tag(n.body_html) == speaks("en") for n in others)


@pytest.mark.parametrize(
    "name",
    sorted(
        p.stem
        for p in (Path(settings.BASE_DIR) / "templates" / "email").glob("*.html")
        if not p.stem.endswith("_subject")
    ),
)
def test_every_html_e_mail_names_its_language_and_direction(name, desk):
    incident = desk["incident"]
    now = timezone.now()
    context = {
        "incident": incident,
        "recipient": incident.opened_by or member("reader"),
        "role": SimpleNamespace(name="Scribe"),
        "item": SimpleNamespace(title="Fix it", due_on=now.date(), playbook=None),
        "task": SimpleNamespace(title="Call legal", due_at=now, instructions=""),
        "audience": SimpleNamespace(name="Customers"),
        "tz": "UTC",
        "level": 1,
        "every": 60,
        "minutes": 30,
        "limit_seconds": 15,
        **dict.fromkeys(["since", "deadline", "answer_by", "first_statement_due", "due"], now),
    }
    for language, rtl in [("he", True), ("el", False)]:
        _subject, _text, html = render_email(name, context, language=language)
        assert html_tag(html) == speaks(language, rtl=rtl)


@pytest.mark.parametrize("language", ["he", "hu", "el"])
def test_the_war_room_speaks_each_language_in_its_own_words(client, desk, language):
    """The incident page in each language carries that language's words for what every
    incident page shows, and not the English ones."""
    from django.utils import translation

    person = member(f"reader-{language}", "Crisis managers")
    UserProfile.objects.create(user=person, language=language)
    client.force_login(person)
    html = client.get(f"/incidents/{desk['incident'].reference}/").content.decode()
    for english in ("Tasks", "Timeline", "Communications", "Add note"):
        with translation.override(language):
            own = translation.gettext(english)
        assert own != english and own in html, (language, english)
        assert f">{english}<" not in html, (language, english)
