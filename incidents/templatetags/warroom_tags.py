"""Countdowns of the war room: rendered on the server, ticked in the browser (warroom.js)."""

from __future__ import annotations

import html
from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html, json_script
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from crisisdesk.timefmt import format_when
from incidents.templatetags.incident_tags import duration

register = template.Library()


def span_text(seconds: int) -> str:
    """A time span as the countdown shows it; warroom.js formats it the same way."""
    seconds = abs(int(seconds))
    if seconds < 60:
        return _("%(s)s s") % {"s": seconds}
    if seconds < 3600:
        return _("%(m)s min %(s)02d s") % {"m": seconds // 60, "s": seconds % 60}
    if seconds < 86400:
        return _("%(h)s h %(m)02d min") % {"h": seconds // 3600, "m": (seconds % 3600) // 60}
    return _("%(d)s d %(h)s h") % {"d": seconds // 86400, "h": (seconds % 86400) // 3600}


@register.simple_tag
def countdown_words() -> str:
    """The countdown's words, translated, for warroom.js (same formats as span_text)."""
    words = {
        "s": _("%(s)s s"),
        "ms": _("%(m)s min %(s)02d s"),
        "hm": _("%(h)s h %(m)02d min"),
        "dh": _("%(d)s d %(h)s h"),
        "in": _("in %(t)s"),
        "overdue": _("overdue by %(t)s"),
    }
    return json_script(words, "countdown-words")


@register.simple_tag(takes_context=True)
def countdown(context, deadline: datetime | None, done_text: str = "") -> str:
    """``<time>`` counting down to ``deadline``; once missed it turns red and says by how much."""
    if deadline is None:
        return done_text or "—"
    now = context.get("now") or timezone.now()
    seconds = int((deadline - now).total_seconds())
    overdue = seconds < 0
    text = (_("overdue by %(t)s") if overdue else _("in %(t)s")) % {"t": span_text(seconds)}
    return format_html(
        '<time class="countdown{}" datetime="{}" data-deadline="{}" title="{}">{}</time>',
        " overdue" if overdue else "",
        deadline.isoformat(),
        deadline.isoformat(),
        timezone.localtime(deadline).strftime("%Y-%m-%d %H:%M:%S %Z"),
        text,
    )


@register.filter
def since(value: datetime | None) -> str:
    """How long ago: "12 min 05 s"."""
    if value is None:
        return "—"
    return span_text(int((timezone.now() - value).total_seconds()))


@register.filter
def seconds_duration(value: int | None) -> str:
    """A number of seconds as people read it: "10 min"."""
    return duration(timedelta(seconds=value or 0))


@register.simple_tag
def timeline_items(entries) -> SafeString:
    """The timeline's rows, built in Python with every value escaped: a crisis's
    2,000 entries take a few milliseconds this way against some 300 ms through
    template nodes (bench/war_room.py)."""
    if not entries:
        return format_html('<li class="muted">{}</li>', _("Nothing yet."))
    zone = timezone.get_current_timezone()
    zone_name = html.escape(timezone.get_current_timezone_name())
    corrects = html.escape(_("(corrects an earlier entry)"))
    rows = []
    for entry in entries:
        link = f' <a href="#entry-{entry.corrects_id}">{corrects}</a>' if entry.corrects_id else ""
        rows.append(
            f'<li id="entry-{entry.pk}" data-kind="{html.escape(entry.kind)}">'
            f'<time datetime="{entry.at.isoformat()}" title="{zone_name}">'
            f"{html.escape(format_when(entry.at, zone, seconds=True))}</time> "
            f'<span class="kind">{html.escape(entry.kind_label)}</span><br>'
            f'<span class="text">{html.escape(entry.text)}</span>{link}</li>'
        )
    return mark_safe("\n".join(rows))  # noqa: S308 - every value above is escaped


@register.filter
def clock(seconds: int | None) -> str:
    """A clock reading of a number of seconds: "1:05:09" (an exercise's time, an offset)."""
    seconds = max(0, int(seconds or 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
