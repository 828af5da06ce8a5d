"""The public status page in a real browser (headless Chromium, Playwright, axe-core):
the page, an incident with a correction, Hebrew right to left, and subscribing, at
1,366 px and 390 px: no sideways scrolling, no serious or critical violation."""

from __future__ import annotations

import re

import pytest

from incidents import sublinks
from incidents.models import Notification
from playbooks.models import Stakeholder
from tests.statuspage.conftest import publish
from tests.warroom.test_browser import SCREENSHOTS, browser, check  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _check(page, name: str, width: int) -> None:
    check(page, f"status-{name}", width)
    assert (SCREENSHOTS / f"warroom-{width}-status-{name}.png").exists()


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_the_status_page_reads_well_in_every_width_and_language(
    browser,  # noqa: F811
    live_server,
    desk,
    width,
    height,
):
    original = publish(
        desk,
        "Card payments fail since 10:05. Your card was not charged for failed orders.",
        subject="Card payments fail",
        translations={
            "he": {"subject": "תשלומים נכשלים", "body": "התשלומים בכרטיס נכשלים מאז 10:05."}
        },
    )
    publish(
        desk,
        "Card payments fail since 10:15 (not 10:05). Your card was not charged.",
        subject="Card payments fail",
        corrects=original,
        translations={"he": {"subject": "תשלומים נכשלים", "body": "התשלומים נכשלים מאז 10:15."}},
    )
    reference = desk["incident"].reference
    page = browser.new_page(viewport={"width": width, "height": height}, locale="en-GB")

    page.goto(f"{live_server.url}/status/")
    assert page.locator("h1").inner_text().endswith("status")
    assert page.locator("del").first.is_visible()
    assert "10:15 (not 10:05)" in page.locator(".statement-current").first.inner_text()
    _check(page, "index", width)

    page.click(f"text={desk['incident'].public_heading}")
    page.wait_for_url(f"**/status/{reference}/")
    _check(page, "incident", width)

    page.click("text=עברית")
    page.wait_for_url("**?lang=he")
    assert page.evaluate("document.documentElement.dir") == "rtl"
    assert "התשלומים נכשלים מאז 10:15." in page.content()
    _check(page, "incident-he", width)

    page.fill("input[name=email]", "reader@example.test")
    page.click("button[type=submit]")
    page.wait_for_url("**/status/subscribe/**")
    assert page.evaluate("document.documentElement.dir") == "rtl"
    _check(page, "subscribed-he", width)

    # The e-mailed link: a confirmation page, then subscribed; then the unsubscribe page.
    body = Notification.objects.get(reason="subscribe").body_text
    path = re.search(r"/status/subscribe/[^/\s]+/", body).group(0)
    page.goto(f"{live_server.url}{path}?lang=he")
    _check(page, "confirm-he", width)
    page.click("button[type=submit]")
    page.wait_for_selector(".card[role=status]")  # the answer page, in any language
    contact = Stakeholder.objects.get(email="reader@example.test")
    _check(page, "confirmed-he", width)
    page.goto(
        f"{live_server.url}{sublinks.unsubscribe_path(contact_id=contact.pk, email=contact.email)}"
    )
    _check(page, "unsubscribe", width)
    page.click("button[type=submit]")
    page.wait_for_selector(".card[role=status]")
    assert not Stakeholder.objects.filter(pk=contact.pk).exists()
    _check(page, "unsubscribed", width)
