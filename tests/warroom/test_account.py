"""A person's own pages: password reset by e-mail, preferences, the language switch,
and every time shown in the viewer's zone with the zone named."""

from __future__ import annotations

import re
import zoneinfo

import pytest
from django.core import mail
from django.utils import timezone as tz

from playbooks.models import UserProfile
from tests.warroom.conftest import member

pytestmark = pytest.mark.django_db
PASSWORD = "pw-for-tests-only"


def test_password_reset_by_e_mail_works_once(client, desk):
    person = member("ana", "Responders")
    page = client.get("/accounts/login/")
    assert b'href="/accounts/password/reset/"' in page.content
    sent = client.post("/accounts/password/reset/", {"email": "ana@example.test"})
    assert sent.status_code == 302 and sent["Location"] == "/accounts/password/reset/sent/"
    # An unknown address answers the same and sends nothing: no way to probe who is on the desk.
    unknown = client.post("/accounts/password/reset/", {"email": "nobody@example.test"})
    assert unknown["Location"] == sent["Location"]
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ana@example.test"] and "new password" in message.subject
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", message.body).group(1)
    form = client.get(link, follow=True)
    assert b"Choose a new password" in form.content
    new = "a-new-long-passphrase-42"
    done = client.post(
        form.redirect_chain[-1][0], {"new_password1": new, "new_password2": new}, follow=True
    )
    assert b"Your new password is set" in done.content
    person.refresh_from_db()
    assert person.check_password(new)
    again = client.get(link, follow=True)
    assert b"This link does not work" in again.content


def test_password_reset_refuses_a_mismatch_with_a_field_message(client, desk):
    member("ben", "Responders")
    client.post("/accounts/password/reset/", {"email": "ben@example.test"})
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", mail.outbox[0].body)
    form = client.get(link.group(1), follow=True)
    bad = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a-new-long-passphrase-42", "new_password2": "something-else-42"},
    )
    assert bad.status_code == 200
    assert b"errorlist" in bad.content and b"didn" in bad.content


def test_preferences_are_remembered_per_person_and_follow_them(client, desk):
    person = member("cleo", "Responders")
    assert client.login(username="cleo", password=PASSWORD)
    page = client.get("/accounts/preferences/")
    assert page.status_code == 200 and b"Times are shown in UTC" in page.content
    saved = client.post(
        "/accounts/preferences/",
        {"language": "hu", "time_zone": "Europe/Budapest", "phone": "+36 1 234 5678"},
        follow=True,
    )
    assert saved.status_code == 200
    assert saved.headers["Content-Language"] == "hu"
    profile = UserProfile.objects.get(user=person)
    assert (profile.language, profile.time_zone, profile.phone) == (
        "hu",
        "Europe/Budapest",
        "+36 1 234 5678",
    )
    # A new browser (no cookie, another Accept-Language): the profile decides.
    client.logout()
    client.cookies.clear()
    assert client.login(username="cleo", password=PASSWORD)
    other = client.get("/", HTTP_ACCEPT_LANGUAGE="en")
    assert other.headers["Content-Language"] == "hu"
    assert b"Europe/Budapest" in other.content


def test_preferences_refuse_bad_input_with_field_messages(client, desk):
    person = member("dora", "Responders")
    client.force_login(person)
    bad = client.post(
        "/accounts/preferences/",
        {"language": "xx", "time_zone": "Mars/Olympus", "phone": "call me maybe"},
    )
    assert bad.status_code == 200
    errors = bad.context["form"].errors
    assert set(errors) == {"language", "time_zone", "phone"}
    assert not UserProfile.objects.filter(user=person).exclude(language="").exists()


def test_the_language_switch_remembers_the_choice(client, desk):
    person = member("eli", "Responders")
    # Signed out: a cookie only.
    switched = client.post(
        "/accounts/language/", {"language": "el"}, HTTP_REFERER="/accounts/login/"
    )
    assert switched.status_code == 302 and switched["Location"] == "/accounts/login/"
    assert client.cookies["django_language"].value == "el"
    # Signed in: the profile too; a foreign Referer never leads off the desk.
    client.force_login(person)
    away = client.post("/accounts/language/", {"language": "he"}, HTTP_REFERER="https://evil.test/")
    assert away["Location"] == "/"
    assert UserProfile.objects.get(user=person).language == "he"
    page = client.get("/")
    assert page.headers["Content-Language"] == "he" and b'dir="rtl"' in page.content
    refused = client.post("/accounts/language/", {"language": "xx"}, follow=True)
    assert UserProfile.objects.get(user=person).language == "he"
    assert refused.status_code == 200


def test_times_are_shown_in_the_viewers_zone_with_the_zone_named(client, desk, manager):
    incident = desk["incident"]
    client.force_login(manager)
    client.post(
        "/accounts/preferences/", {"language": "", "time_zone": "Asia/Jerusalem", "phone": ""}
    )
    listing = client.get("/incidents/").content.decode()
    local = incident.opened_at.astimezone(zoneinfo.ZoneInfo("Asia/Jerusalem"))
    expected = f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
    assert expected in listing
    assert 'title="Asia/Jerusalem"' in listing
    page = client.get(f"/incidents/{incident.reference}/").content.decode()
    assert "Times in Asia/Jerusalem" in page
    assert tz.get_current_timezone_name() == "UTC"  # nothing leaks into the next request
