"""A whole incident run from the war room on the real stack, in headless Chromium.

The web pages are served by a live server; a real Celery worker and beat run
the engine against the same database and broker (PostgreSQL and Redis in CI's
second run), and every e-mail goes to a real SMTP server (aiosmtpd) that keeps
what it receives. The crisis manager signs in and opens a SEV1 from the
dashboard; the on-call person acknowledges from the page the link in the
received e-mail leads to; the manager completes the tasks, contains, resolves
and opens the post-mortem. At a laptop's 1,366 px and a phone's 390 px, each
page checked with axe-core and for sideways scrolling; screenshots are kept
in var/screenshots/walk/ (CI keeps var/ as its artefacts).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group

from incidents.models import Incident, Notification, Task
from incidents.permissions import ensure_groups
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


def shot(page, name: str, width: int) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{width}-{name}.png"), full_page=True)
    wide = page.evaluate(WIDER_THAN_SCREEN)
    assert not wide, f"{name} at {width} px: wider than the screen: {wide}"
    check(page, f"walk-{name}", width)


# The elements that stick out of the viewport, named so a failure says what to fix.
# Inside a box that scrolls on its own (a wide table on a phone) does not count.
WIDER_THAN_SCREEN = """() => [...document.querySelectorAll('body *')]
  .filter(e => !e.closest('.skip-link')
            && ![...document.querySelectorAll('*')].some(box => box !== e && box.contains(e)
                 && ['auto', 'scroll'].includes(getComputedStyle(box).overflowX))
            && (e.getBoundingClientRect().right > window.innerWidth + 0.5
                || e.getBoundingClientRect().left < -0.5))
  .slice(0, 5)
  .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
            + (e.className && typeof e.className === 'string' ? '.' + e.className : '')
            + ' ' + Math.round(e.getBoundingClientRect().width) + 'px')"""


def text_of(received) -> str:
    part = received.message.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_a_crisis_manager_runs_a_whole_incident_on_the_real_stack(
    browser,  # noqa: F811
    live_server,
    make_playbook,
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
    lead = team["people"]["exec"]
    lead.groups.add(Group.objects.get(name="Crisis managers"))
    noa = team["people"]["noa"]  # on call as crisis manager: level 1 pages her
    noa.groups.add(Group.objects.get(name="Responders"))
    playbook = make_playbook(title="Card data exposed", delays=(1, 120, 240))
    worker_factory(smtp=smtp_server, concurrency=2, extra_env={"SITE_URL": live_server.url})
    beat_factory()

    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
    page = context.new_page()
    page.goto(f"{live_server.url}/")
    page.fill("#id_username", lead.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
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
    shot(page, "03-incident-open", width)

    # The worker pages the on-call crisis manager; the e-mail arrives at the SMTP server.
    assert eventually(
        lambda: any(noa.email in r.rcpt_tos for r in smtp_server.received), timeout=60
    ), [r.message["Subject"] for r in smtp_server.received]
    page_mail = next(r for r in smtp_server.received if noa.email in r.rcpt_tos)
    assert incident.reference in page_mail.message["Subject"]
    link = ACK_LINK.search(text_of(page_mail)).group(1)
    assert link.startswith(live_server.url)

    # Noa acknowledges on her phone from the link: a confirmation page, then done.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-GB")
    noa_page = phone.new_page()
    noa_page.goto(link)
    noa_page.wait_for_selector("text=I acknowledge")
    shot(noa_page, "04-ack-link", width)
    noa_page.click("button:has-text('I acknowledge')")
    noa_page.wait_for_selector(f"text={incident.reference} is acknowledged")
    phone.close()
    incident.refresh_from_db()
    assert incident.status == "acknowledged" and incident.acknowledged_by == noa
    assert Notification.objects.get(message_id=page_mail.message["Message-ID"]).ack_token_used_at

    # The war room shows it without a reload (the timeline polls): the acknowledgement
    # and the status, then every task done from the page.
    page.wait_for_selector("#timeline [data-kind=acknowledged]", timeout=15_000)
    page.reload()
    for task in Task.objects.filter(incident=incident).order_by("position"):
        page.fill(f"#note-{task.pk}", "done from the war room")
        page.click(f"#task-{task.pk} button[value=done]")
        page.wait_for_selector(f"#task-{task.pk}[data-status=done]")
    assert not Task.objects.filter(incident=incident, status="open").exists()
    shot(page, "05-tasks-done", width)

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
    shot(page, "06-resolved", width)
    page.click("a:has-text('Post-mortem')")
    page.wait_for_url(f"**/{incident.reference}/postmortem/")
    assert incident.reference in page.content()
    shot(page, "07-postmortem", width)
    incident.refresh_from_db()
    assert incident.status == "resolved"
    # The escalation stopped at the acknowledgement: nobody else was paged.
    paged = Notification.objects.filter(incident=incident, reason="escalation")
    assert {n.to_email for n in paged} == {noa.email}
    context.close()
