"""The war room in a real browser: headless Chromium driven by Playwright, checked with axe-core.

Signs in, opens an incident from the dashboard, acknowledges it, completes a
task, adds a note and sees it arrive on the timeline, contains and resolves it,
at a laptop's 1,366 px and a phone's 390 px: no horizontal scrolling and no
serious or critical accessibility violation on any page on the way.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from incidents.models import Incident, Timer
from incidents.permissions import ensure_groups
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(settings.VAR_DIR) / "screenshots"
PASSWORD = "pw-for-tests-only"


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


def check(page, name: str, width: int) -> None:
    """No horizontal scroll, no serious or critical axe violation; a screenshot to look at."""
    from axe_playwright_python.sync_playwright import Axe

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"warroom-{width}-{name}.png"), full_page=True)
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"{name} at {width} px scrolls sideways: {scroll} > {inner}"
    results = Axe().run(page)
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{name} at {width} px: {bad}"


def sign_in(page, live_server, username: str) -> None:
    """Sign in on the war room's own page and land on the dashboard."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def test_long_overdue_deadlines_wrap_at_a_phones_width(
    browser, live_server, broker_calls, make_playbook
):
    """A deadline overdue by hours ("overdue by 2 h 16 min") is wider than a phone's
    deadlines column: it wraps there instead of pushing the page sideways."""
    from datetime import timedelta

    from django.contrib.auth.models import Group
    from django.utils import timezone

    from incidents import services

    ensure_groups()
    lead = UserFactory(username="lead", first_name="Lea", last_name="Lead")
    lead.groups.add(Group.objects.get(name="Crisis managers"))
    incident = services.incident_open(
        title="Card payments taken twice at checkout", playbook=make_playbook()
    )
    ago = timedelta(hours=3, minutes=16, seconds=39)
    Incident.objects.filter(pk=incident.pk).update(opened_at=timezone.now() - ago)
    # Its first statement was due an hour after it opened.
    Timer.objects.filter(incident=incident, kind=Timer.Kind.FIRST_STATEMENT).update(
        due_at=timezone.now() - ago + timedelta(hours=1)
    )
    page = browser.new_page(viewport={"width": 390, "height": 844}, locale="en-GB")
    sign_in(page, live_server, "lead")
    check(page, "dashboard-overdue", 390)
    page.goto(f"{live_server.url}/incidents/{incident.reference}/")
    assert "overdue by 2 h" in page.inner_text("#statement-due")
    check(page, "incident-overdue", 390)


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_it_runs_an_incident_from_the_war_room(
    browser, live_server, broker_calls, make_playbook, width, height
):
    ensure_groups()
    from django.contrib.auth.models import Group

    lead = UserFactory(
        username="lead", first_name="Lea", last_name="Lead", email="lead@example.test"
    )
    lead.groups.add(Group.objects.get(name="Crisis managers"))
    playbook = make_playbook(title="Payment outage")
    page = browser.new_page(viewport={"width": width, "height": height}, locale="en-GB")

    # Sign in: the war room sends an anonymous visitor to its own sign-in page.
    page.goto(f"{live_server.url}/")
    page.wait_for_url("**/accounts/login/?next=/")
    check(page, "login", width)
    page.fill("#id_username", "lead")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    check(page, "dashboard-empty", width)

    # Open an incident from the dashboard.
    page.click("text=Open an incident")
    page.wait_for_url("**/incidents/new/")
    page.check(f"#pb-{playbook.pk}")
    page.fill("#id_title", "Checkout returns errors for every card payment")
    page.fill("#id_summary", "Since 10:05, every card payment fails.")
    page.select_option("#id_severity", "1")
    check(page, "open-form", width)
    page.click("text=Open the incident")
    page.wait_for_url("**/incidents/INC-*/")
    incident = Incident.objects.get(title__startswith="Checkout returns")
    assert incident.playbook == playbook and incident.severity == 1
    assert page.locator("#countdowns time.countdown").count() >= 2
    check(page, "incident-open", width)

    # The dashboard lists it with its countdowns; its reference leads back to it.
    page.click("nav >> text=Dashboard")
    row = page.locator(f"#active tr[data-reference='{incident.reference}']")
    assert row.locator("time.countdown").count() == 2
    first = row.locator("time.countdown").first.inner_text()
    page.wait_for_timeout(1100)
    assert row.locator("time.countdown").first.inner_text() != first  # it ticks
    check(page, "dashboard-active", width)
    row.locator(f"a:has-text('{incident.reference}')").click()
    page.wait_for_url(f"**/incidents/{incident.reference}/")

    # Acknowledge.
    page.click("#actions button:has-text('Acknowledge')")
    page.wait_for_selector(".flash >> text=Acknowledged")
    incident.refresh_from_db()
    assert incident.status == "acknowledged" and incident.acknowledged_by == lead

    # Complete the first task.
    task = incident.tasks.order_by("position").first()
    page.fill(f"#note-{task.pk}", "done on the phone")
    page.click(f"#task-{task.pk} button[value=done]")
    page.wait_for_selector(f"#task-{task.pk}[data-status=done]")
    task.refresh_from_db()
    assert task.status == "done" and task.done_by == lead

    # Add a note: it arrives on the timeline without a page load.
    page.evaluate("window.__same_page = true")
    page.fill("#id_text", "Payment provider confirms an outage on their side.")
    page.click("text=Add note")
    page.wait_for_selector("#timeline >> text=Payment provider confirms an outage")
    assert page.evaluate("window.__same_page") is True
    assert page.input_value("#id_text") == ""
    check(page, "incident-acknowledged", width)

    # The timeline refreshes itself: an entry written elsewhere shows up within a poll.
    from incidents import services

    services.note_add(incident=incident, actor=None, text="Written by someone else")
    page.wait_for_selector("#timeline >> text=Written by someone else", timeout=12_000)

    # Relieve a role holder, with its confirmation step; the roll call shows on the board.
    assert page.locator("#roles [data-answer=pending]").count() >= 1
    page.locator("#roles a:has-text('Relieve…')").first.click()
    page.wait_for_url("**/relieve/")
    check(page, "confirm-relieve", width)
    page.click("button:has-text('Yes: Relieve')")
    page.wait_for_selector(".flash >> text=is relieved as")
    check(page, "incident-relieved", width)

    # Contain, with its confirmation step.
    page.click("text=Mark contained…")
    page.wait_for_url("**/do/contain/")
    check(page, "confirm-contain", width)
    page.click("button:has-text('Yes: Mark contained')")
    page.wait_for_selector(".flash >> text=Marked contained")

    # Resolve, with its confirmation step.
    page.click("text=Resolve…")
    page.wait_for_url("**/do/resolve/")
    page.fill("#id_summary", "The provider fixed it.")
    page.click("button:has-text('Yes: Resolve')")
    page.wait_for_selector(".flash >> text=Resolved")
    incident.refresh_from_db()
    assert incident.status == "resolved"
    check(page, "incident-resolved", width)

    # The list shows it among the past incidents.
    page.goto(f"{live_server.url}/incidents/?status=past")
    assert page.locator(f"tr[data-reference='{incident.reference}']").count() == 1
    check(page, "list", width)
    page.close()


def test_it_reads_right_to_left_in_hebrew_on_a_phone(
    browser, live_server, broker_calls, make_playbook
):
    from django.contrib.auth.models import Group

    from incidents import services

    ensure_groups()
    lead = UserFactory(username="lead", email="lead@example.test")
    lead.groups.add(Group.objects.get(name="Crisis managers"))
    incident = services.incident_open(
        title="סערה ברשתות החברתיות אחרי הפרסומת החדשה", playbook=make_playbook(), actor=lead
    )
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        locale="he-IL",
        extra_http_headers={"Accept-Language": "he"},
    )
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    assert page.locator("html").get_attribute("dir") == "rtl"
    sign_in(page, live_server, "lead")
    check(page, "he-dashboard", 390)
    page.goto(f"{live_server.url}/incidents/{incident.reference}/")
    check(page, "he-incident", 390)
    # Right to left: the brand starts the header on the right.
    brand = page.locator(".desk-brand").bounding_box()
    assert brand["x"] > 390 / 2
    context.close()


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_it_drafts_and_approves_a_statement_in_every_language(
    browser, live_server, broker_calls, comms_desk, width, height
):
    """From the incident page to an approved statement: a template of this incident's
    playbook, every language side by side on a laptop and stacked on a phone."""
    from django.contrib.auth.models import Group

    from incidents.models import Message

    ensure_groups()
    writer = UserFactory(username="writer", first_name="Wanda", email="writer@example.test")
    writer.groups.add(Group.objects.get(name="Communications"))
    counsel = UserFactory(username="counsel", first_name="Carl", email="counsel@example.test")
    counsel.groups.add(Group.objects.get(name="Legal"))
    incident = comms_desk["incident"]

    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
    page = context.new_page()
    sign_in(page, live_server, "writer")
    page.goto(f"{live_server.url}/incidents/{incident.reference}/")
    check(page, "incident-comms", width)

    # One click on a template's language drafts it and opens it.
    page.click(f"#template-{comms_desk['template'].pk}")
    page.wait_for_url("**/messages/*/")
    message = Message.objects.get(incident=incident)
    assert page.locator(".variant").count() == 3
    assert page.locator(".field-warning").count() >= 3  # the facts nobody supplied yet
    check(page, "message-edit", width)
    en, he = (page.locator(f"#variant-{code}").bounding_box() for code in ("en", "he"))
    if width >= 1024:
        assert abs(en["y"] - he["y"]) < 2 and en["x"] != he["x"], "side by side"
    else:
        assert he["y"] > en["y"] + en["height"] - 1, "stacked"

    facts = {"what_happened": "card data leaked", "what_we_do": "blocking the cards"}
    for name in ("body", "body_he", "body_el"):
        text = page.input_value(f"#id_{name}")
        for fact, value in facts.items():
            text = text.replace(f"[[missing: {fact}]]", value)
        page.fill(f"#id_{name}", text + " 1,200.")
    page.click("button[value=submit]")
    page.wait_for_selector(".flash >> text=Submitted for approval")
    message.refresh_from_db()
    assert (
        message.status == "in_review" and "card data leaked" in message.translations["he"]["body"]
    )
    check(page, "message-in-review", width)
    context.close()

    # A second person approves it from the incident page.
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
    page = context.new_page()
    sign_in(page, live_server, "counsel")
    page.goto(f"{live_server.url}/incidents/{incident.reference}/#comms")
    check(page, "incident-comms-review", width)
    page.click(f"#comms-message-{message.pk} button:has-text('Approve')")
    page.wait_for_selector(".flash >> text=Approved")
    message.refresh_from_db()
    assert message.status == "approved" and message.approver == counsel
    context.close()

    # The writer sees what may happen next: send now, or schedule.
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
    page = context.new_page()
    sign_in(page, live_server, "writer")
    page.goto(f"{live_server.url}/incidents/{incident.reference}/messages/{message.pk}/")
    assert page.locator("#send-form").count() == 1 and page.locator("#schedule-form").count() == 1
    check(page, "message-approved", width)
    context.close()
