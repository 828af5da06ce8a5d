"""Template filters for the response pages and exports."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _

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


FORMATS = {
    "full": "%Y-%m-%d %H:%M",
    "time": "%H:%M",
    "seconds": "%H:%M:%S",
    "seconds_full": "%Y-%m-%d %H:%M:%S",
}


def local_stamp(value: datetime, style: str = "full") -> str:
    """The moment in the active time zone, its zone's abbreviation after it."""
    local = timezone.localtime(value)
    zone = local.tzname() or timezone.get_current_timezone_name()
    return f"{local.strftime(FORMATS.get(style, FORMATS['full']))} {zone}"


@register.filter
def when(value: datetime | None, style: str = "full") -> str:
    """A moment in the viewer's time zone with the zone named, e.g. "2026-11-25 14:05 CET",
    inside a ``<time>`` whose title gives the zone's full name (Europe/Budapest)."""
    if value is None:
        return "—"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        timezone.get_current_timezone_name(),
        local_stamp(value, style),
    )
