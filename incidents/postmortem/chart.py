"""The post-mortem's timeline chart: milestones, escalations, messages and missed
deadlines on one time axis, laid out here and drawn as SVG by the templates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from incidents.models import (
    Incident,
    Message,
    TimelineEntry,
)


@dataclass
class ChartMark:
    x: int
    row: int
    kind: str
    label: str
    at: datetime
    y: int = 0


@dataclass
class Chart:
    width: int
    height: int
    left: int
    rows: list[tuple[int, str]]
    marks: list[ChartMark]
    ticks: list[tuple[int, str]]
    start: datetime
    end: datetime


MARK_MERGE_PX = 3

CHART_ROWS = (
    ("milestone", gettext_lazy("Milestones")),
    ("escalation", gettext_lazy("Escalations")),
    ("message", gettext_lazy("Messages")),
    ("deadline", gettext_lazy("Deadlines missed")),
)


def chart_build(
    incident: Incident,
    milestones: list,
    escalations: list,
    finals: list[Message],
    timeline: list,  # values_list rows with at, kind, text and data (facts.FACT_FIELDS)
    now: datetime,
) -> Chart:
    """One time axis: milestones, escalations, messages and missed deadlines."""
    width, left, right, row_h, top = 900, 170, 20, 40, 30
    times = [m.at for m in milestones if m.at] + [now if incident.is_active else incident.opened_at]
    start = min(times)
    end = max(times + [e.at for e in escalations] + [m.sent_at for m in finals])
    span = max((end - start).total_seconds(), 60.0)
    plot = width - left - right

    def x(at: datetime) -> int:
        return round(left + plot * (at - start).total_seconds() / span)

    rows = [(top + i * row_h, str(label)) for i, (_key, label) in enumerate(CHART_ROWS)]
    row_index = {key: i for i, (key, _label) in enumerate(CHART_ROWS)}
    marks = [
        ChartMark(x(m.at), row_index["milestone"], m.key, m.label, m.at) for m in milestones if m.at
    ]
    paged, unstaffed = _("Level %(n)s paged"), _("Level %(n)s unstaffed")  # once, not per page
    for e in escalations:
        label = (unstaffed if e.unstaffed else paged) % {"n": e.level}
        kind = "unstaffed" if e.unstaffed else "escalation"
        marks.append(ChartMark(x(e.at), row_index["escalation"], kind, label, e.at))
    for m in finals:
        kind = "correction" if m.corrects_id else "message"
        label = f"{m.audience.name} · {m.get_channel_display()}"
        marks.append(ChartMark(x(m.sent_at), row_index["message"], kind, label, m.sent_at))
    for e in timeline:
        missed = e.data.get("met") is False or e.data.get("deadline") == "update_cadence"
        if e.kind == TimelineEntry.Kind.DEADLINE and missed:
            marks.append(ChartMark(x(e.at), row_index["deadline"], "missed", e.text, e.at))
    # Marks of one kind within MARK_MERGE_PX of each other on a row overlap (each is 10 px
    # wide) and draw as one: a record of tens of thousands of entries stays a chart of a
    # few hundred shapes per row, which the PDF lays out quickly.
    drawn: dict[tuple[int, int, str], ChartMark] = {}
    for mark in marks:
        drawn.setdefault((mark.x // MARK_MERGE_PX, mark.row, mark.kind), mark)
    marks = list(drawn.values())
    for mark in marks:
        mark.y = rows[mark.row][0]
    ticks = []
    step = _tick_step(span)
    t = 0.0
    while t <= span + 1:
        at = start + timedelta(seconds=t)
        ticks.append((x(at), _duration_label(timedelta(seconds=t))))
        t += step
    height = top + len(CHART_ROWS) * row_h + 20
    return Chart(width, height, left, rows, marks, ticks, start, end)


def _tick_step(span: float) -> float:
    for step in (60, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400, 604800):
        if span / step <= 10:
            return float(step)
    return span / 10


def _duration_label(d: timedelta) -> str:
    seconds = int(d.total_seconds())
    if seconds < 3600:
        return f"+{seconds // 60}m"
    if seconds < 86400:
        return (
            f"+{seconds // 3600}h{(seconds % 3600) // 60:02d}"
            if seconds % 3600
            else (f"+{seconds // 3600}h")
        )
    return f"+{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"
