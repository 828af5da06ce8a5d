"""A Hebrew-speaking crisis manager in a real browser: the war room right to left, in
Hebrew, at a laptop's and a phone's width, and the post-mortem PDF in Hebrew.

Screenshots land in var/screenshots/ (the war room) and the PDF's first page is
rendered there too, to look at.
"""

from __future__ import annotations

import io

import pytest
from django.utils import translation

from incidents import postmortem, services
from playbooks.models import UserProfile
from tests.warroom.test_browser import PASSWORD, SCREENSHOTS, browser, check  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def hebrew(text: str) -> str:
    with translation.override("he"):
        translated = translation.gettext(text)
    assert translated != text, f"{text!r} has no Hebrew translation"
    return translated


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_a_hebrew_crisis_manager_runs_the_war_room_right_to_left(
    browser,  # noqa: F811
    live_server,
    desk,
    manager,
    width,
    height,
):
    import pypdfium2

    UserProfile.objects.update_or_create(user=manager, defaults={"language": "he"})
    manager.set_password(PASSWORD)
    manager.save()
    incident = desk["incident"]
    # An English browser: the saved setting wins over Accept-Language.
    page = browser.new_page(viewport={"width": width, "height": height}, locale="en-GB")
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", manager.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    assert page.get_attribute("html", "dir") == "rtl"
    assert page.get_attribute("html", "lang") == "he"
    check(page, "he-dashboard", width)

    page.goto(f"{live_server.url}/incidents/{incident.reference}/")
    assert page.get_attribute("html", "dir") == "rtl"
    text = page.inner_text("body")
    for english in ("Communications", "Tasks", "Timeline"):
        assert hebrew(english) in text
    assert incident.reference in text  # the Latin reference, isolated, still reads whole
    check(page, "he-incident", width)

    # The post-mortem, as a PDF in Hebrew: real glyphs, text in logical order.
    services.incident_resolve(incident=incident, actor=manager)
    postmortem.postmortem_start(incident=incident, actor=manager)
    # A server's first PDF loads its fonts: on a busy machine that outlasts Playwright's
    # default 30 s, so the request gets two minutes.
    response = page.request.get(
        f"{live_server.url}/incidents/{incident.reference}/postmortem.pdf", timeout=120_000
    )
    assert response.status == 200 and response.headers["content-type"] == "application/pdf"
    pdf = pypdfium2.PdfDocument(io.BytesIO(response.body()))
    first = pdf[0].get_textpage().get_text_range()
    # Extracted in reading (logical) order, not reversed glyph by glyph; a font without
    # Hebrew would leave empty boxes, which extract as nothing Hebrew at all.
    assert hebrew("Milestones") in first, first[:400]
    assert hebrew("Milestones")[::-1] not in first
    assert incident.reference in first
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    image = pdf[0].render(scale=1.5).to_pil().convert("RGB")
    image.save(SCREENSHOTS / f"postmortem-he-page1-{width}.png")
    # Drawn with glyphs (dark pixels), not empty boxes only: some ink on the page.
    dark = sum(image.convert("L").histogram()[:100])  # pixels darker than 100 of 255
    assert dark / (image.width * image.height) > 0.005
    pdf.close()
