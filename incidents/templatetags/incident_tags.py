"""Template filters for the response pages and exports."""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _

from crisisdesk.timefmt import format_when

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """A duration as people read it: "45 s", "12 min", "2 h 05 min", "3 d 4 h"."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    sign = "−" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        text = _("%(s)s s") % {"s": seconds}
    elif seconds < 3600:
        text = _("%(m)s min") % {"m": seconds // 60}
    elif seconds < 86400:
        text = _("%(h)s h %(m)02d min") % {"h": seconds // 3600, "m": (seconds % 3600) // 60}
    else:
        text = _("%(d)s d %(h)s h") % {"d": seconds // 86400, "h": (seconds % 86400) // 3600}
    return sign + text


@register.filter
def minutes(value: float | None) -> str:
    """Minutes as a duration, for the trends tables."""
    if value is None:
        return "—"
    return duration(timedelta(minutes=value))


@register.filter
def when(value, tz=None) -> str:
    """A moment as text with its zone named ("2026-11-25 14:05 CET"): in ``tz`` (a zone
    name) when given, else in the zone active now, which is the viewer's on a page and
    the recipient's in an e-mail (notify renders each e-mail in its recipient's zone)."""
    return format_when(value, tz or timezone.get_current_timezone())


@register.filter
def when_seconds(value, tz=None) -> str:
    return format_when(value, tz or timezone.get_current_timezone(), seconds=True)


STYLES = {"full": False, "seconds_full": True}


@register.filter
def moment(value: datetime | None, style: str = "full") -> str:
    """On a page: ``when`` inside a ``<time>`` whose title names the zone in full
    (Europe/Budapest) and whose datetime attribute is the exact instant."""
    if value is None:
        return "—"
    zone = timezone.get_current_timezone()
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        timezone.get_current_timezone_name(),
        format_when(value, zone, seconds=STYLES.get(style, False)),
    )


@register.filter
def bdi(value) -> str:
    """``value`` isolated from the sentence around it (``<bdi>``), for HTML only: a
    reference, a time or an address in Latin script inside a Hebrew sentence keeps its
    own order and leaves the sentence's punctuation where the translator put it. Applied
    to a ``blocktranslate`` variable, so the msgid stays as it is."""
    if value is None or value == "":
        return ""
    return format_html("<bdi>{}</bdi>", value)


def _right_to_left(word: str) -> bool:
    return any(unicodedata.bidirectional(c) in ("R", "AL") for c in word)


@register.filter
def visual_order(text: str) -> str:
    """A label laid out for a renderer that draws text left to right without the bidi
    algorithm (WeasyPrint's SVG text, in the PDF's chart): right-to-left words reversed
    and the word order of a right-to-left label reversed, so Hebrew reads correctly.
    Labels without right-to-left letters come back unchanged. Meant for one-line labels
    (a chart's rows), not running text: HTML text is set by the bidi algorithm itself."""
    text = str(text)
    if not _right_to_left(text):
        return text
    words = text.split(" ")
    return " ".join(w[::-1] if _right_to_left(w) else w for w in reversed(words))
