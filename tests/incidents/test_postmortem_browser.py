"""The post-mortem page of a long record in a real browser (Playwright, Debian Chromium,
axe-core): the timeline a page at a time, readable at 1,366 px and 390 px."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from tests.factories import UserFactory
from tests.incidents.test_postmortem_print import long_record
from tests.warroom.test_browser import PASSWORD, browser, check  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_it_pages_through_a_long_timeline(browser, live_server, width, height):  # noqa: F811
    incident = long_record(1200)
    reader = UserFactory(username="reader")
    reader.user_permissions.add(Permission.objects.get(codename="view_postmortem"))
    page = browser.new_page(viewport={"width": width, "height": height}, locale="en-GB")
    url = live_server.url + reverse("incidents:postmortem", args=[incident.reference])
    page.goto(url)
    page.fill("#id_username", "reader")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url)
    rows = page.locator("#timeline tbody tr")
    assert rows.count() == 500
    assert page.locator(".pm-more").first.inner_text().startswith("The first 50 of 240")
    check(page, "postmortem-timeline-1", width)

    page.click("text=Later entries")
    page.wait_for_url("**?timeline=2#timeline")
    assert rows.count() == 500 and "Page 2 of 3" in page.locator("nav.pager").inner_text()
    page.click("text=Later entries")
    page.wait_for_url("**?timeline=3#timeline")
    assert rows.count() == 200
    last = incident.timeline.order_by("at", "pk").last()
    assert last.text in rows.last.inner_text()
    check(page, "postmortem-timeline-3", width)
    page.click("text=Earlier entries")
    page.wait_for_url("**?timeline=2#timeline")
    page.close()
