"""Template filters for the response pages and exports."""

from __future__ import annotations

from datetime import timedelta

from django import template
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
    """A moment with its zone named ("2026-11-25 14:05 UTC"); ``tz`` a zone name or None."""
    return format_when(value, tz or None)


@register.filter
def when_seconds(value, tz=None) -> str:
    return format_when(value, tz or None, seconds=True)
