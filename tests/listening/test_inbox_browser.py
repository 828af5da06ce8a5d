"""The inbox in headless Chromium at 1,366 and 390 px, checked with axe-core: a comment
marked as needing a reply, its reply drafted, approved and recorded as published."""

from __future__ import annotations

import pytest

from incidents import comms
from incidents.listening.models import Mention
from tests.warroom.test_browser import PASSWORD, browser, check  # noqa: F401 - fixture reused

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_a_comment_is_triaged_answered_and_recorded(
    browser,  # noqa: F811
    live_server,
    inbox_desk,
    broker_calls,
    width,
    height,
):
    desk, mention = inbox_desk, inbox_desk["mention"]
    page = browser.new_page(viewport={"width": width, "height": height}, locale="en-GB")
    page.goto(f"{live_server.url}/accounts/login/?next=/mentions/{mention.pk}/")
    page.fill("#id_username", "eszter")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/mentions/{mention.pk}/")
    check(page, "inbox-new", width)

    page.click("#needs-h ~ .toolbar button")
    page.wait_for_selector("#reply-due .countdown")
    assert Mention.objects.get(pk=mention.pk).state == Mention.State.NEEDS_REPLY
    check(page, "inbox-needs-reply", width)

    page.select_option("#id_draft-template", str(desk["template"].pk))
    page.click("#draft-form button[type=submit]")
    page.wait_for_selector("#reply-to")  # the message page, with the way back
    mention.refresh_from_db()
    comms.message_submit(message=mention.reply, actor=desk["eszter"])
    comms.message_approve(message=mention.reply, approver=desk["noa"], accept_boilerplate=True)

    page.click("#reply-to")
    page.wait_for_selector("#publish-form")
    check(page, "inbox-publish", width)
    page.fill("#id_publish-url", "https://x.example/acme/status/1")
    page.click("#publish-form button[type=submit]")
    page.wait_for_selector("#replied")
    assert Mention.objects.get(pk=mention.pk).state == Mention.State.REPLIED

    page.goto(f"{live_server.url}/mentions/?state=replied")
    assert page.locator("#mentions tbody tr").count() == 1
    check(page, "inbox-list", width)
