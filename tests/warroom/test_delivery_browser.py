"""A mass send's progress on the war-room message page, in a real browser: counts by
state, refreshed while it runs, readable at a laptop's and a phone's width."""

from __future__ import annotations

import pytest

from incidents import comms, notify
from incidents.models import Notification
from tests.incidents.test_mass_send import approved  # noqa: F401 - the fixture
from tests.warroom.test_browser import PASSWORD, browser, check  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_the_message_page_shows_the_send_progress_and_refreshes_it(
    browser,  # noqa: F811
    live_server,
    approved,  # noqa: F811
    comms_desk,
    width,
    height,
):
    from incidents.permissions import ensure_groups
    from tests.incidents.conftest import member

    ensure_groups()
    member("boss", "Crisis managers", first_name="Bea")
    comms.message_send(message=approved, actor=comms_desk["eszter"])
    comms.message_fanout(message_id=approved.pk)
    rows = list(approved.deliveries.order_by("pk"))
    Notification.objects.filter(pk=rows[0].pk).update(to_email="bad@example.test")
    notify.chunk_deliver(ids=[r.pk for r in rows[:3]])

    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/incidents/{approved.incident.reference}/messages/{approved.pk}/")
    assert page.text_content("#delivery-sent") == "2"
    assert page.text_content("#delivery-failed") == "1"
    assert page.text_content("#delivery-queued") == "4"
    check(page, "message-delivery", width)

    # The rest goes out; the page catches up by itself and stops polling when done.
    notify.chunk_deliver(ids=[r.pk for r in rows[3:]])
    page.wait_for_function(
        "document.querySelector('#delivery-sent').textContent === '6'", timeout=15000
    )
    assert page.get_attribute("#delivery", "hx-get") is None
    check(page, "message-delivery-done", width)
    context.close()
