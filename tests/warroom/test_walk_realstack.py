"""A whole incident run from the war room on the real stack, in headless Chromium.

The web pages are served by a live server; a real Celery worker and beat run
the engine against the same database and broker (PostgreSQL and Redis in CI's
second run), and every e-mail goes to a real SMTP server (aiosmtpd) that keeps
what it receives. The crisis manager signs in and opens a SEV1 from the
dashboard; every role holder receives an activation e-mail, and one answers
*can't* from its link, so the next person of that role's rotation is asked;
the on-call person acknowledges from the page the link in the received page
leads to; the manager completes the tasks, drafts a statement from the
incident's own template, a lawyer approves it, it is sent to the customers
(each e-mail received) and then corrected the same way; the manager contains,
resolves and opens the post-mortem. At a laptop's 1,366 px and a phone's 390 px, each
page checked with axe-core and for sideways scrolling; screenshots are kept
in var/screenshots/walk/ (CI keeps var/ as its artefacts).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group

from incidents import services
from incidents.models import Incident, Message, Notification, Task
from incidents.permissions import ensure_groups
from playbooks.models import OnCallRotation, RotationMember
from tests.factories import UserFactory
from tests.realstack import eventually
from tests.warroom.test_browser import browser, check  # noqa: F401 - the fixture is used

pytestmark = [
    pytest.mark.browser,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]

SCREENSHOTS = Path(settings.VAR_DIR) / "screenshots" / "walk"
PASSWORD = "pw-for-tests-only"
ACK_LINK = re.compile(r"(https?://[^\s\"<>]+/incidents/ack/[^\s\"<>/]+/)")
ROLL_CALL_LINK = re.compile(r"(https?://[^\s\"<>]+/incidents/rollcall/[^\s\"<>/]+/)")
CUSTOMERS = {
    "anna@example.test",
    "yossi@example.test",
    "eleni.c@example.test",
    "peter@example.test",
}


def shot(page, name: str, width: int) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{width}-{name}.png"), full_page=True)
    wide = page.evaluate(WIDER_THAN_SCREEN)
    assert not wide, f"{name} at {width} px: wider than the screen: {wide}"
    check(page, f"walk-{name}", width)


# The elements that stick out of the viewport, named so a failure says what to fix.
# Inside a box that scrolls on its own (a wide table on a phone), or text kept for
# screen readers only (.vh, the skip link), does not count.
WIDER_THAN_SCREEN = """() => [...document.querySelectorAll('body *')]
  .filter(e => !e.closest('.skip-link, .vh')
            && ![...document.querySelectorAll('*')].some(box => box !== e && box.contains(e)
                 && ['auto', 'scroll'].includes(getComputedStyle(box).overflowX))
            && (e.getBoundingClientRect().right > window.innerWidth + 0.5
                || e.getBoundingClientRect().left < -0.5))
  .slice(0, 5)
  .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
            + ' in ' + (e.parentElement ? e.parentElement.tagName.toLowerCase()
                        + '.' + e.parentElement.className : '')
            + ' "' + (e.textContent || '').trim().slice(0, 40) + '"'
            + (e.className && typeof e.className === 'string' ? '.' + e.className : '')
            + ' ' + Math.round(e.getBoundingClientRect().width) + 'px')"""


def text_of(received) -> str:
    part = received.message.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


def mails_to(smtp_server, address: str, reference: str) -> list:
    return [
        r
        for r in list(smtp_server.received)
        if address in r.rcpt_tos and reference in (r.message["Subject"] or "")
    ]


def arrived(smtp_server, address: str, reference: str, count: int = 1) -> list:
    assert eventually(lambda: len(mails_to(smtp_server, address, reference)) >= count, 60), [
        (r.rcpt_tos, r.message["Subject"]) for r in smtp_server.received
    ]
    return mails_to(smtp_server, address, reference)


def sign_in(chromium, live_server, user, width: int, height: int):
    context = chromium.new_context(viewport={"width": width, "height": height}, locale="en-GB")
    page = context.new_page()
    page.goto(f"{live_server.url}/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return context, page


# The facts as the team writes them in each language (never pasted from another).
FACTS = {
    "en": {
        "what_happened": "a backup of customer records was readable from the internet",
        "what_we_do": "closing it and telling everyone affected",
        "message": "Correction: only customers who paid by card in May.",
    },
    "he": {
        "what_happened": "גיבוי של רשומות לקוחות היה נגיש מהאינטרנט",
        "what_we_do": "סוגרים את הגישה ומיידעים את כל מי שנפגע",
        "message": "תיקון: רק לקוחות ששילמו בכרטיס במאי.",
    },
    "el": {
        "what_happened": "ένα αντίγραφο ασφαλείας με στοιχεία πελατών ήταν προσβάσιμο στο διαδίκτυο",
        "what_we_do": "το κλείνουμε και ενημερώνουμε όσους επηρεάζονται",
        "message": "Διόρθωση: μόνο πελάτες που πλήρωσαν με κάρτα τον Μάιο.",
    },
    "hu": {
        "what_happened": "egy ügyféladatokat tartalmazó biztonsági mentés elérhető volt az interneten",
        "what_we_do": "lezárjuk, és minden érintettet értesítünk",
        "message": "Helyesbítés: csak a májusban kártyával fizető ügyfeleket érinti.",
    },
}


def fill_facts(page) -> None:
    """Every language variant of the draft with its facts typed in that language (no
    marker left): the missing ones and the ones not yet translated."""
    for field in page.locator("#edit-form textarea").all():
        facts = FACTS[field.get_attribute("lang")]
        text = field.input_value()
        for fact, value in facts.items():
            text = text.replace(f"[[missing: {fact}]]", value)
            text = text.replace(f"[[not translated: {fact}]]", value)
        field.fill(text)


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_a_crisis_manager_runs_a_whole_incident_on_the_real_stack(
    browser,  # noqa: F811
    live_server,
    comms_desk,
    team,
    worker_factory,
    beat_factory,
    smtp_server,
    settings,
    width,
    height,
):
    ensure_groups()
    settings.SITE_URL = live_server.url  # links in e-mails written by the web process
    smtp_server.ignore_reasons = frozenset()  # the roll call's e-mails count here
    people = team["people"]
    lead, noa, eszter = people["exec"], people["noa"], people["eszter"]
    lead.groups.add(Group.objects.get(name="Crisis managers"))
    noa.groups.add(Group.objects.get(name="Responders"))
    eszter.groups.add(Group.objects.get(name="Communications"))
    lawyer = comms_desk["lawyer"]
    lawyer.groups.add(Group.objects.get(name="Legal"))
    # The communications lead's rotation has a second person to pass the role to.
    zoe = UserFactory(username="zoe", first_name="Zoé", email="zoe@example.test")
    zoe.groups.add(Group.objects.get(name="Communications"))
    comms_rotation = OnCallRotation.objects.get(role=team["roles"]["communications-lead"])
    RotationMember.objects.create(rotation=comms_rotation, user=zoe, position=2)
    # The fixture's own incident is over before the walk starts: it pages nobody.
    services.incident_close(
        incident=services.incident_resolve(incident=comms_desk["incident"], actor=lead), actor=lead
    )
    playbook = comms_desk["incident"].playbook
    worker_factory(smtp=smtp_server, concurrency=2, extra_env={"SITE_URL": live_server.url})
    beat_factory()

    context, page = sign_in(browser, live_server, lead, width, height)
    shot(page, "01-dashboard", width)

    # Open a SEV1 from the dashboard.
    page.click("text=Open an incident")
    page.wait_for_url("**/incidents/new/")
    page.check(f"#pb-{playbook.pk}")
    page.fill("#id_title", "Customer card data readable from the internet")
    page.fill("#id_summary", "A backup of customer records was world-readable.")
    page.select_option("#id_severity", "1")
    shot(page, "02-open", width)
    page.click("text=Open the incident")
    page.wait_for_url("**/incidents/INC-*/")
    incident = Incident.objects.get(title__startswith="Customer card data")
    ref = incident.reference
    shot(page, "03-incident-open", width)

    # Everyone handed a role is told at once; Eszter can't, so Zoé is asked.
    holders = set(
        incident.assignments.filter(relieved_at__isnull=True).values_list("user__email", flat=True)
    )
    assert eszter.email in holders and noa.email in holders
    for address in holders:
        arrived(smtp_server, address, ref)
    activation = next(
        r for r in mails_to(smtp_server, eszter.email, ref) if ROLL_CALL_LINK.search(text_of(r))
    )
    joining, cant = ROLL_CALL_LINK.findall(text_of(activation))[:2]
    assert joining != cant and cant.startswith(live_server.url)
    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-GB")
    eszter_page = phone.new_page()
    eszter_page.goto(cant)
    eszter_page.wait_for_selector('button:has-text("Yes, I can\'t take it")')
    shot(eszter_page, "04-roll-call-cant", width)
    eszter_page.click('button:has-text("Yes, I can\'t take it")')
    eszter_page.wait_for_selector("text=The role is offered to")
    phone.close()
    asked = arrived(smtp_server, zoe.email, ref)
    assert ROLL_CALL_LINK.search(text_of(asked[0]))
    page.reload()
    board = page.locator("#roles").inner_text()
    assert "Zoé" in board
    shot(page, "05-role-board", width)

    # The worker pages the on-call crisis manager at once (SEV1); she acknowledges
    # on her phone from the link in the page she received.
    page_mail = next(
        r for r in arrived(smtp_server, noa.email, ref, 2) if ACK_LINK.search(text_of(r))
    )
    link = ACK_LINK.search(text_of(page_mail)).group(1)
    assert link.startswith(live_server.url)
    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-GB")
    noa_page = phone.new_page()
    noa_page.goto(link)
    noa_page.wait_for_selector("text=I acknowledge")
    shot(noa_page, "06-ack-link", width)
    noa_page.click("button:has-text('I acknowledge')")
    noa_page.wait_for_selector(f"text={ref} is acknowledged")
    phone.close()
    incident.refresh_from_db()
    assert incident.status == "acknowledged" and incident.acknowledged_by == noa
    assert Notification.objects.get(message_id=page_mail.message["Message-ID"]).ack_token_used_at

    # The war room shows it without a reload (the timeline polls); every task done.
    page.wait_for_selector("#timeline [data-kind=acknowledged]", timeout=15_000)
    page.reload()
    assert "after the first page" in page.locator("#ack-after").inner_text()
    for task in Task.objects.filter(incident=incident).order_by("position"):
        page.fill(f"#note-{task.pk}", "done from the war room")
        page.click(f"#task-{task.pk} button[value=done]")
        page.wait_for_selector(f"#task-{task.pk}[data-status=done]")
    assert not Task.objects.filter(incident=incident, status="open").exists()
    shot(page, "07-tasks-done", width)

    # A statement from this incident's own template, every language filled in.
    page.click(f"#template-{comms_desk['template'].pk}")
    page.wait_for_url("**/messages/*/")
    message = Message.objects.get(incident=incident)
    fill_facts(page)
    shot(page, "08-statement-draft", width)
    page.click("#edit-form button[value=submit]")
    page.wait_for_selector(".flash >> text=Submitted for approval")

    # The lawyer approves it from the incident page.
    counsel, counsel_page = sign_in(browser, live_server, lawyer, width, height)
    counsel_page.goto(f"{live_server.url}/incidents/{ref}/#comms")
    shot(counsel_page, "09-awaiting-approval", width)
    approve = counsel_page.locator(f"#comms-message-{message.pk} button:has-text('Approve')")
    assert approve.count() == 1, counsel_page.eval_on_selector_all(
        "#comms-awaiting li", "items => items.map(li => li.id)"
    )
    approve.click()
    counsel_page.wait_for_selector(".flash >> text=Approved")
    message.refresh_from_db()
    assert message.status == "approved" and message.approver == lawyer

    # The manager sends it: each customer receives it once, in their language.
    page.goto(f"{live_server.url}/incidents/{ref}/messages/{message.pk}/")
    page.click("#send-form button")
    page.wait_for_selector(".flash >> text=Sent")
    for address in CUSTOMERS:
        arrived(smtp_server, address, ref)
    hebrew = mails_to(smtp_server, "yossi@example.test", ref)[0]
    # Hebrew template with the facts the team wrote in Hebrew; no English pasted in.
    assert "שלום" in text_of(hebrew) and FACTS["he"]["what_happened"] in text_of(hebrew)
    assert "world-readable" not in text_of(hebrew) and "backup" not in text_of(hebrew)
    incident.refresh_from_db()
    assert incident.first_statement_at is not None

    # A mistake is corrected, never unsent: a new message beside the first, approved again.
    page.reload()
    page.fill("#correct-form [name=body]", "Correction: only customers who paid by card in May.")
    page.click("#correct-form button")
    page.wait_for_selector(".flash >> text=Correction drafted")
    correction = Message.objects.get(incident=incident, corrects=message)
    fill_facts(page)
    page.click("#edit-form button[value=submit]")
    page.wait_for_selector(".flash >> text=Submitted for approval")
    counsel_page.reload()  # the same address as before: a goto would only scroll
    approve = counsel_page.locator(f"#comms-message-{correction.pk} button:has-text('Approve')")
    assert approve.count() == 1, counsel_page.locator("#comms").inner_text()
    approve.click()
    counsel_page.wait_for_selector(".flash >> text=Approved")
    counsel.close()
    page.goto(f"{live_server.url}/incidents/{ref}/messages/{correction.pk}/")
    page.click("#send-form button")
    page.wait_for_selector(".flash >> text=Sent")
    for address in CUSTOMERS:
        arrived(smtp_server, address, ref, 2)
    page.goto(f"{live_server.url}/incidents/{ref}/#comms")
    shot(page, "10-statement-corrected", width)

    # Contain and resolve, each confirmed; then the post-mortem.
    page.click("text=Mark contained…")
    page.wait_for_url("**/do/contain/")
    page.click("button:has-text('Yes: Mark contained')")
    page.wait_for_selector(".flash >> text=Marked contained")
    page.click("text=Resolve…")
    page.wait_for_url("**/do/resolve/")
    page.fill("#id_summary", "The bucket is private again; keys rotated.")
    page.click("button:has-text('Yes: Resolve')")
    page.wait_for_selector(".flash >> text=Resolved")
    shot(page, "11-resolved", width)
    page.click("a:has-text('Post-mortem')")
    page.wait_for_url(f"**/{ref}/postmortem/")
    text = page.locator("main").inner_text()
    assert ref in text and "Zoé" in text  # the roll call is in the record
    shot(page, "12-postmortem", width)
    incident.refresh_from_db()
    assert incident.status == "resolved"
    # The escalation stopped at the acknowledgement: nobody else was paged.
    paged = Notification.objects.filter(incident=incident, reason="escalation")
    assert {n.to_email for n in paged} == {noa.email}
    # Every customer got exactly the statement and its correction, nothing twice.
    for address in CUSTOMERS:
        ids = [r.message["Message-ID"] for r in mails_to(smtp_server, address, ref)]
        assert len(ids) == len(set(ids)) == 2, (address, ids)
    context.close()
