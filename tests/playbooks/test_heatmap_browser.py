"""The heat map in a real browser: headless Chromium driven by Playwright."""

from __future__ import annotations

import pytest

from tests.factories import RiskFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def browser(chromium_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own ORM
    # calls are still synchronous, so Django's async-safety guard does not apply.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def log_in(page, live_server, *, language="en"):
    UserFactory(username="lead", is_staff=True, is_superuser=True, password="pw-for-tests-only")
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "lead")
    page.fill("#id_password", "pw-for-tests-only")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def test_it_shows_the_heat_map_and_a_cell_leads_to_its_risks(browser, live_server):
    RiskFactory(likelihood=5, impact=4, title="Ransomware on the shop")
    RiskFactory(likelihood=5, impact=4, title="Card skimming")
    RiskFactory(likelihood=2, impact=1, title="Typo in a newsletter")
    page = browser.new_page(locale="en-GB")
    log_in(page, live_server)

    page.click("text=Risk heat map")
    cell = page.locator('td[data-likelihood="5"][data-impact="4"]')
    assert cell.get_attribute("data-count") == "2"
    assert "cd-critical" in cell.get_attribute("class")
    assert page.locator('td[data-likelihood="2"][data-impact="1"]').inner_text().strip() == "1"
    page.screenshot(path="/tmp/heatmap.png", full_page=True)

    cell.locator("a").click()
    page.wait_for_url("**/admin/playbooks/risk/?likelihood=5&impact=4")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    text = page.locator("#result_list").inner_text()
    assert "Ransomware on the shop" in text and "Typo in a newsletter" not in text


def test_it_reads_right_to_left_in_hebrew(browser, live_server):
    RiskFactory(likelihood=3, impact=3, title="סערה ברשתות")
    context = browser.new_context(locale="he-IL", extra_http_headers={"Accept-Language": "he"})
    page = context.new_page()
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/playbooks/risk/heatmap/")
    assert page.locator("html").get_attribute("dir") == "rtl"
    direction = page.locator("#heatmap").evaluate("el => getComputedStyle(el).direction")
    assert direction == "rtl"
    # In right-to-left the impact axis runs from the right: impact 1 is right of impact 5.
    one = page.locator('td[data-likelihood="3"][data-impact="1"]').bounding_box()
    five = page.locator('td[data-likelihood="3"][data-impact="5"]').bounding_box()
    assert one["x"] > five["x"]
    page.screenshot(path="/tmp/heatmap-he.png", full_page=True)
    context.close()
