"""The Mentions page in headless Chromium at 1,366 and 390 px, checked with axe-core."""

from __future__ import annotations

import pytest

from incidents.listening import services
from incidents.listening.models import Mention
from incidents.permissions import ensure_groups
from tests.warroom.test_browser import PASSWORD, browser, check  # noqa: F401 - fixture reused

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_the_mentions_page_lists_adds_and_imports(browser, live_server, width, height, tmp_path):  # noqa: F811
    from django.contrib.auth.models import Group

    from tests.factories import UserFactory

    ensure_groups()
    lead = UserFactory(username="lead", email="lead@example.test")
    lead.groups.add(Group.objects.get(name="Crisis managers"))
    source = services.source_create(name="Social listening", slug="social", kind="webhook")
    for i, text in enumerate(["Great service, thanks", "זה לא טוב בכלל", "Δεν είναι καλό " * 30]):
        services.mention_record(
            source=source, external_id=str(i), channel="twitter", text=text,
            author="@" + "x" * 60, url="https://example.test/" + "a" * 200,
        )  # fmt: skip
    page = browser.new_page(viewport={"width": width, "height": height}, locale="en-GB")
    page.goto(f"{live_server.url}/accounts/login/?next=/mentions/")
    page.fill("#id_username", "lead")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/mentions/")
    assert page.locator("#mentions tbody tr").count() == 3
    check(page, "mentions", width)

    page.fill("#id_add-text", "Phone: the checkout charged twice")
    page.select_option("#id_add-channel", "phone")
    page.click("text=Add the mention")
    page.wait_for_selector("text=The mention is added.")
    assert Mention.objects.filter(channel="phone").count() == 1

    bad = tmp_path / "bad.csv"
    bad.write_text("text,channel\n,myspace\n", encoding="utf-8")
    page.set_input_files("#id_csv-file", str(bad))
    page.click("button:has-text('Import')")
    page.wait_for_selector("#import-errors")
    assert "row 2, text" in page.inner_text("#import-errors")
    check(page, "mentions-import-errors", width)
    assert Mention.objects.count() == 4
