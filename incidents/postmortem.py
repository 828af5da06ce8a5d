"""Post-mortems: the factual half of the report, computed from the record.

``report_build`` reads an incident's record (milestones, timeline, messages,
assignments, tasks) in a fixed number of queries and returns a ``Report`` the
HTML page, the Markdown and PDF exports and the trends page all render. Nothing
here writes; services that write post-mortems and action items are at the end.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from incidents.models import (
    ActionItem,
    Incident,
    Message,
    Notification,
    PostMortem,
    PostMortemRevision,
    RoleAssignment,
    Task,
    TimelineEntry,
)

# ------------------------------------------------------------------ the report


@dataclass
class Milestone:
    key: str
    label: str
    at: datetime | None
    since_opened: timedelta | None = None
    since_previous: timedelta | None = None


@dataclass
class Target:
    key: str
    label: str
    target: timedelta | None
    actual: timedelta | None
    # "met", "missed", "pending" (deadline not reached yet) or "none" (no target set)
    outcome: str
    detail: str = ""


@dataclass
class EscalationRow:
    at: datetime
    level: int
    cycle: int
    round: int
    paged: str
    unstaffed: bool
    lateness_ms: int | None


@dataclass
class MessageRow:
    message: Message
    corrections: list[Message] = field(default_factory=list)


@dataclass
class AudienceMessages:
    audience: str
    channel: str
    channel_label: str
    rows: list[MessageRow]


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


@dataclass
class Report:
    incident: Incident
    postmortem: PostMortem | None
    generated_at: datetime
    milestones: list[Milestone]
    targets: list[Target]
    escalations: list[EscalationRow]
    acknowledgements: list[dict]
    messages: list[AudienceMessages]
    message_count: int
    correction_count: int
    assignments: list[RoleAssignment]
    tasks: list[Task]
    task_counts: dict[str, int]
    timeline: list[TimelineEntry]
    reopen_count: int
    duration: timedelta | None
    chart: Chart
    action_items: list[ActionItem]


MILESTONES = (
    ("detected_at", gettext_lazy("Detected")),
    ("opened_at", gettext_lazy("Opened")),
    ("acknowledged_at", gettext_lazy("Acknowledged")),
    ("first_statement_at", gettext_lazy("First public statement")),
    ("contained_at", gettext_lazy("Contained")),
    ("resolved_at", gettext_lazy("Resolved")),
    ("closed_at", gettext_lazy("Closed")),
)


def _acknowledged_at(timeline: list[TimelineEntry]) -> datetime | None:
    """When someone acknowledged: resolving an unacknowledged incident stamps the
    field too, but only a timeline entry says a person actually did."""
    entry = next((e for e in timeline if e.kind == TimelineEntry.Kind.ACKNOWLEDGED), None)
    return entry.at if entry else None


def _milestones(incident: Incident, timeline: list[TimelineEntry]) -> list[Milestone]:
    rows = []
    previous = None
    for key, label in MILESTONES:
        at = _acknowledged_at(timeline) if key == "acknowledged_at" else getattr(incident, key)
        row = Milestone(key=key, label=str(label), at=at)
        if at is not None:
            row.since_opened = at - incident.opened_at if key != "detected_at" else None
            if previous is not None:
                row.since_previous = at - previous
            previous = at
        rows.append(row)
    return rows


def _outcome(target: timedelta | None, actual: timedelta | None, elapsed: timedelta) -> str:
    if target is None:
        return "none"
    if actual is not None:
        return "met" if actual <= target else "missed"
    return "missed" if elapsed > target else "pending"


def acknowledge_target(incident: Incident) -> timedelta | None:
    """The playbook's acknowledge target: the first escalation level's delay."""
    levels = (incident.escalation_policy or {}).get("levels") or []
    if not levels:
        return None
    return timedelta(seconds=levels[0]["delay_seconds"])


def _end(incident: Incident, now: datetime) -> datetime:
    return incident.closed_at or incident.resolved_at or now


def _targets(
    incident: Incident,
    timeline: list[TimelineEntry],
    finals: list[Message],
    cadences: list,
    now: datetime,
) -> list[Target]:
    end = _end(incident, now)
    elapsed = end - incident.opened_at
    acked = _acknowledged_at(timeline)
    ack_target = acknowledge_target(incident)
    ack_actual = acked - incident.opened_at if acked else None
    targets = [
        Target(
            key="acknowledge",
            label=_("Acknowledge"),
            target=ack_target,
            actual=ack_actual,
            outcome=_outcome(ack_target, ack_actual, elapsed),
            detail="" if acked else _("Never acknowledged by a person."),
        )
    ]
    fs_target = timedelta(minutes=incident.first_statement_minutes)
    fs_actual = (
        incident.first_statement_at - incident.opened_at if incident.first_statement_at else None
    )
    targets.append(
        Target(
            key="first_statement",
            label=_("First public statement"),
            target=fs_target,
            actual=fs_actual,
            outcome=_outcome(fs_target, fs_actual, elapsed),
        )
    )
    by_audience: dict[int, list[datetime]] = defaultdict(list)
    for m in finals:
        by_audience[m.audience_id].append(m.sent_at)
    missed_entries: dict[int, int] = defaultdict(int)
    for e in timeline:
        if e.kind == TimelineEntry.Kind.DEADLINE and e.data.get("deadline") == "update_cadence":
            missed_entries[e.data.get("audience_id")] += 1
    for cadence in cadences:
        every = timedelta(minutes=cadence.every_minutes)
        sent = sorted(by_audience.get(cadence.audience_id, []))
        # The gaps that count: from each update to the next, and from the last to the end.
        gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
        if sent and (incident.resolved_at is None or sent[-1] < incident.resolved_at):
            gaps.append(end - sent[-1])
        longest = max(gaps) if gaps else None
        late = sum(1 for g in gaps if g > every)
        if not sent:
            outcome = "missed" if elapsed > every else "pending"
        else:
            outcome = "missed" if late or missed_entries.get(cadence.audience_id) else "met"
        targets.append(
            Target(
                key=f"cadence:{cadence.audience.slug}",
                label=_("Updates to %(audience)s") % {"audience": cadence.audience.name},
                target=every,
                actual=longest,
                outcome=outcome,
                detail=_("Updates sent: %(n)s. Gaps longer than the cadence: %(late)s.")
                % {"n": len(sent), "late": late},
            )
        )
    return targets


def _escalations(timeline: list[TimelineEntry], users: dict) -> list[EscalationRow]:
    rows = []
    round_no = 1
    for e in timeline:
        if e.kind == TimelineEntry.Kind.REOPENED:
            round_no = e.data.get("round", round_no + 1)
        if e.kind not in (TimelineEntry.Kind.ESCALATION, TimelineEntry.Kind.UNSTAFFED):
            continue
        paged = ", ".join(users[uid] for uid in e.data.get("user_ids", []) if uid in users) or (
            "—" if e.kind == TimelineEntry.Kind.UNSTAFFED else ""
        )
        rows.append(
            EscalationRow(
                at=e.at,
                level=e.data.get("level", 0),
                cycle=e.data.get("cycle", 0),
                round=round_no,
                paged=paged,
                unstaffed=e.kind == TimelineEntry.Kind.UNSTAFFED,
                lateness_ms=e.data.get("lateness_ms"),
            )
        )
    return rows


def _acknowledgements(incident: Incident, timeline: list[TimelineEntry]) -> list[dict]:
    """Each round's acknowledgement: by whom, how long after that round started and
    after the first page of that round."""
    rows = []
    round_start = incident.opened_at
    first_page = None
    round_no = 1
    for e in timeline:
        if e.kind == TimelineEntry.Kind.REOPENED:
            round_start, first_page, round_no = e.at, None, e.data.get("round", round_no + 1)
        elif e.kind == TimelineEntry.Kind.ESCALATION and first_page is None:
            first_page = e.at
        elif e.kind == TimelineEntry.Kind.ACKNOWLEDGED:
            rows.append(
                {
                    "round": round_no,
                    "at": e.at,
                    "by": _person(e.actor),
                    "after_start": e.at - round_start,
                    "after_first_page": e.at - first_page if first_page else None,
                }
            )
    return rows


def _person(user) -> str:
    if user is None:
        return _("the system")
    return user.get_full_name() or user.get_username()


def _messages(finals: list[Message]) -> tuple[list[AudienceMessages], int]:
    """Sent and published messages per audience and channel, corrections beside originals."""
    by_id = {m.pk: m for m in finals}
    rows: dict[tuple, AudienceMessages] = {}
    row_of: dict[int, MessageRow] = {}
    corrections = 0
    for m in finals:
        original = by_id.get(m.corrects_id) if m.corrects_id else None
        if original is not None and original.pk in row_of:
            row_of[original.pk].corrections.append(m)
            row_of[m.pk] = row_of[original.pk]
            corrections += 1
            continue
        key = (m.audience.name, m.channel)
        group = rows.setdefault(
            key,
            AudienceMessages(
                audience=m.audience.name,
                channel=m.channel,
                channel_label=m.get_channel_display(),
                rows=[],
            ),
        )
        row = MessageRow(message=m)
        group.rows.append(row)
        row_of[m.pk] = row
    return sorted(rows.values(), key=lambda g: (g.audience, g.channel)), corrections


def _task_counts(tasks: list[Task], now: datetime) -> dict[str, int]:
    counts = {"done_on_time": 0, "done_late": 0, "skipped": 0, "open": 0, "open_late": 0}
    for t in tasks:
        if t.status == Task.Status.DONE:
            late = t.due_at is not None and t.done_at is not None and t.done_at > t.due_at
            counts["done_late" if late else "done_on_time"] += 1
        elif t.status == Task.Status.SKIPPED:
            counts["skipped"] += 1
        else:
            counts["open"] += 1
            if t.due_at is not None and t.due_at < now:
                counts["open_late"] += 1
    return counts


CHART_ROWS = (
    ("milestone", gettext_lazy("Milestones")),
    ("escalation", gettext_lazy("Escalations")),
    ("message", gettext_lazy("Messages")),
    ("deadline", gettext_lazy("Deadlines missed")),
)


def _chart(
    incident: Incident,
    milestones: list[Milestone],
    escalations: list[EscalationRow],
    finals: list[Message],
    timeline: list[TimelineEntry],
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
    for e in escalations:
        label = _("Level %(n)s unstaffed") if e.unstaffed else _("Level %(n)s paged")
        kind = "unstaffed" if e.unstaffed else "escalation"
        label = label % {"n": e.level}
        marks.append(ChartMark(x(e.at), row_index["escalation"], kind, label, e.at))
    for m in finals:
        kind = "correction" if m.corrects_id else "message"
        label = f"{m.audience.name} · {m.get_channel_display()}"
        marks.append(ChartMark(x(m.sent_at), row_index["message"], kind, label, m.sent_at))
    for e in timeline:
        missed = e.data.get("met") is False or e.data.get("deadline") == "update_cadence"
        if e.kind == TimelineEntry.Kind.DEADLINE and missed:
            marks.append(ChartMark(x(e.at), row_index["deadline"], "missed", e.text, e.at))
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


def report_build(incident: Incident, *, now: datetime | None = None) -> Report:
    """Everything the post-mortem says about what happened, in a fixed number of queries."""
    now = now or timezone.now()
    incident = Incident.objects.select_related("playbook", "opened_by", "acknowledged_by").get(
        pk=incident.pk
    )
    postmortem = PostMortem.objects.filter(incident=incident).first()
    timeline = list(
        TimelineEntry.objects.filter(incident=incident).select_related("actor").order_by("at", "pk")
    )
    finals = list(
        Message.objects.filter(incident=incident, status__in=Message.FINAL)
        .select_related("audience", "sent_by", "approver", "author")
        .order_by("sent_at", "pk")
    )
    assignments = list(
        RoleAssignment.objects.filter(incident=incident)
        .select_related("role", "user", "assigned_by")
        .order_by("role__sort_order", "assumed_at", "pk")
    )
    tasks = list(
        Task.objects.filter(incident=incident)
        .select_related("role", "assignee", "done_by")
        .order_by("position", "pk")
    )
    cadences = (
        list(incident.playbook.cadences.select_related("audience")) if incident.playbook else []
    )
    user_ids = {uid for e in timeline for uid in e.data.get("user_ids", [])}
    from django.contrib.auth import get_user_model

    users = {u.pk: _person(u) for u in get_user_model().objects.filter(pk__in=user_ids)}
    action_items = (
        list(postmortem.action_items.select_related("owner", "playbook", "produced_version"))
        if postmortem
        else []
    )

    milestones = _milestones(incident, timeline)
    escalations = _escalations(timeline, users)
    messages, corrections = _messages(finals)
    end = incident.resolved_at or incident.closed_at
    return Report(
        incident=incident,
        postmortem=postmortem,
        generated_at=now,
        milestones=milestones,
        targets=_targets(incident, timeline, finals, cadences, now),
        escalations=escalations,
        acknowledgements=_acknowledgements(incident, timeline),
        messages=messages,
        message_count=len(finals),
        correction_count=corrections,
        assignments=assignments,
        tasks=tasks,
        task_counts=_task_counts(tasks, now),
        timeline=timeline,
        reopen_count=sum(1 for e in timeline if e.kind == TimelineEntry.Kind.REOPENED),
        duration=(end - (incident.detected_at or incident.opened_at)) if end else None,
        chart=_chart(incident, milestones, escalations, finals, timeline, now),
        action_items=action_items,
    )


def _timeline_rendered(timeline: list[TimelineEntry], *, mode: str) -> str:
    """The full timeline, rendered here rather than in the template: it is the one part
    of the report that runs to thousands of rows (bench/postmortem_report.py)."""
    from django.utils.html import escape
    from django.utils.safestring import mark_safe

    correction = escape(_("correction"))
    tz = timezone.get_current_timezone()
    parts = []
    for e in timeline:
        when = e.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
        who = _person(e.actor) if e.actor_id else ""
        if mode == "markdown":
            parts.append(f"- {when} {e.text}" + (f" ({who})" if who else "") + "\n")
        elif mode == "print":
            parts.append(
                f'<p class="pm-line">{when} · {escape(e.text)}'
                + (f" · {escape(who)}" if who else "")
                + "</p>"
            )
        else:
            note = f" <small>({correction})</small>" if e.corrects_id else ""
            parts.append(
                f'<tr class="kind-{e.kind}"><td>{when}</td>'
                f"<td><bdi>{escape(e.text)}</bdi>{note}</td><td>{escape(who)}</td></tr>"
            )
    text = "".join(parts)
    return text if mode == "markdown" else mark_safe(text)  # noqa: S308 - every value escaped


def report_context(report: Report, *, mode: str = "html") -> dict:
    narrative = _narrative_sections(report.postmortem)
    return {
        "report": report,
        "timeline_rendered": _timeline_rendered(report.timeline, mode=mode),
        "incident": report.incident,
        "postmortem": report.postmortem,
        # Summary and impact open the report; the reflection follows the facts.
        "narrative_head": narrative[:2],
        "narrative_tail": narrative[2:],
        "company": settings.COMPANY_NAME,
    }


def _narrative_sections(postmortem: PostMortem | None) -> list[tuple[str, str]]:
    if postmortem is None:
        return []
    return [
        (str(PostMortem._meta.get_field(name).verbose_name), getattr(postmortem, name))
        for name in PostMortem.NARRATIVE
    ]


def report_markdown(report: Report) -> str:
    return render_to_string("incidents/postmortem.md", report_context(report, mode="markdown"))


def report_html(report: Report, *, request=None) -> str:
    return render_to_string("incidents/postmortem.html", report_context(report), request=request)


class PdfUnavailable(Exception):
    """WeasyPrint could not load: the Pango system library is missing."""


def report_pdf(report: Report) -> bytes:
    """The report as PDF: chart, tables and page numbers (WeasyPrint)."""
    try:
        import weasyprint
    except OSError as exc:  # WeasyPrint loads Pango when imported
        raise PdfUnavailable(
            _(
                "PDF export needs the Pango library on the server "
                "(Debian/Ubuntu: apt-get install libpango-1.0-0 libpangoft2-1.0-0): %(error)s"
            )
            % {"error": exc}
        ) from exc

    html = render_to_string("incidents/postmortem_print.html", report_context(report, mode="print"))
    return weasyprint.HTML(string=html, base_url=settings.SITE_URL).write_pdf()


# ------------------------------------------------------------------ trends


def _median_minutes(values: list[timedelta]) -> float | None:
    if not values:
        return None
    return round(statistics.median(v.total_seconds() for v in values) / 60, 1)


def _rate(values: list[bool]) -> float | None:
    return round(100 * sum(values) / len(values)) if values else None


def _figures(incidents: list[Incident]) -> dict:
    tta, ttfs, ttr, ack_met, fs_met = [], [], [], [], []
    for inc in incidents:
        if inc.acknowledged_at:
            tta.append(inc.acknowledged_at - inc.opened_at)
        if inc.first_statement_at:
            ttfs.append(inc.first_statement_at - inc.opened_at)
        if inc.resolved_at:
            ttr.append(inc.resolved_at - inc.opened_at)
        target = acknowledge_target(inc)
        if target is not None and inc.acknowledged_at:
            ack_met.append(inc.acknowledged_at - inc.opened_at <= target)
        if inc.first_statement_at or not inc.is_active:
            fs_met.append(
                inc.first_statement_at is not None
                and inc.first_statement_at - inc.opened_at
                <= timedelta(minutes=inc.first_statement_minutes)
            )
    return {
        "count": len(incidents),
        "tta": _median_minutes(tta),
        "ttfs": _median_minutes(ttfs),
        "ttr": _median_minutes(ttr),
        "ack_rate": _rate(ack_met),
        "ack_n": len(ack_met),
        "fs_rate": _rate(fs_met),
        "fs_n": len(fs_met),
    }


def trends(incidents: QuerySet[Incident]) -> dict:
    """Figures across incidents: drills apart from real incidents."""
    from incidents.models import Severity
    from playbooks.models import Scenario

    rows = list(incidents.order_by("opened_at"))
    real = [i for i in rows if not i.drill]
    drills = [i for i in rows if i.drill]
    by_month: dict[str, list[Incident]] = defaultdict(list)
    for inc in real:
        by_month[timezone.localtime(inc.opened_at).strftime("%Y-%m")].append(inc)
    category_labels = dict(Scenario.choices)
    categories: dict[str, int] = defaultdict(int)
    severities: dict[int, int] = defaultdict(int)
    for inc in real:
        categories[inc.category] += 1
        severities[inc.severity] += 1
    return {
        "months": [(month, _figures(items)) for month, items in sorted(by_month.items())],
        "overall": _figures(real),
        "drills": _figures(drills),
        "by_category": sorted(
            ((category_labels.get(k, k), n) for k, n in categories.items()), key=lambda r: -r[1]
        ),
        "by_severity": [(label, severities.get(value, 0)) for value, label in Severity.choices],
    }


# ------------------------------------------------------------------ writes


def _narrative_of(postmortem: PostMortem) -> dict:
    return {name: getattr(postmortem, name) for name in PostMortem.NARRATIVE}


@transaction.atomic
def postmortem_start(*, incident: Incident, actor: AbstractBaseUser | None = None) -> PostMortem:
    """Start (or return) an incident's post-mortem; called on resolve and on demand."""
    postmortem, created = PostMortem.objects.get_or_create(
        incident=incident, defaults={"updated_by": actor}
    )
    if created:
        from incidents.services import timeline_add

        timeline_add(
            incident=incident,
            kind=TimelineEntry.Kind.NOTE,
            actor=actor,
            text=_("Post-mortem started."),
            data={"postmortem_id": postmortem.pk},
        )
    return postmortem


def _locked(postmortem: PostMortem) -> PostMortem:
    return PostMortem.objects.select_for_update().get(pk=postmortem.pk)


@transaction.atomic
def postmortem_edit(
    *, postmortem: PostMortem, actor: AbstractBaseUser, **narrative: str
) -> PostMortem:
    """Change narrative sections. Editing a published report starts the next revision."""
    unknown = set(narrative) - set(PostMortem.NARRATIVE)
    if unknown:
        raise ValidationError(
            {name: _("Not a section of the post-mortem.") for name in sorted(unknown)}
        )
    postmortem = _locked(postmortem)
    changed = {k: v for k, v in narrative.items() if getattr(postmortem, k) != v}
    if not changed:
        return postmortem
    if postmortem.status == PostMortem.Status.PUBLISHED:
        postmortem.revision += 1
        postmortem.status = PostMortem.Status.DRAFT
        postmortem.submitted_at = None
    elif postmortem.status == PostMortem.Status.IN_REVIEW:
        postmortem.status = PostMortem.Status.DRAFT
        postmortem.submitted_at = None
    for name, value in changed.items():
        setattr(postmortem, name, value)
    postmortem.updated_by = actor
    postmortem.save()
    return postmortem


@transaction.atomic
def postmortem_submit(*, postmortem: PostMortem, actor: AbstractBaseUser) -> PostMortem:
    postmortem = _locked(postmortem)
    if postmortem.status != PostMortem.Status.DRAFT:
        raise ValidationError(_("Only a draft can be submitted for review."))
    if not postmortem.summary.strip():
        raise ValidationError({"summary": _("Write the summary before asking for review.")})
    postmortem.status = PostMortem.Status.IN_REVIEW
    postmortem.submitted_at = timezone.now()
    postmortem.updated_by = actor
    postmortem.save()
    return postmortem


@transaction.atomic
def postmortem_publish(*, postmortem: PostMortem, actor: AbstractBaseUser) -> PostMortemRevision:
    """Freeze the report: the narrative and the whole report as it reads now."""
    postmortem = _locked(postmortem)
    if postmortem.status != PostMortem.Status.IN_REVIEW:
        raise ValidationError(_("Only a post-mortem in review can be published."))
    if not actor.has_perm("incidents.publish_postmortem"):
        raise ValidationError(_("You need the permission to publish post-mortems."))
    now = timezone.now()
    postmortem.status = PostMortem.Status.PUBLISHED
    postmortem.published_at = now
    postmortem.published_by = actor
    postmortem.save()
    with translation.override(settings.LANGUAGE_CODE):
        markdown = report_markdown(report_build(postmortem.incident, now=now))
    revision = PostMortemRevision.objects.create(
        postmortem=postmortem,
        number=postmortem.revision,
        published_at=now,
        published_by=actor,
        narrative=_narrative_of(postmortem),
        markdown=markdown,
    )
    from incidents.services import timeline_add

    timeline_add(
        incident=postmortem.incident,
        kind=TimelineEntry.Kind.NOTE,
        actor=actor,
        at=now,
        text=_("Post-mortem revision %(n)s published.") % {"n": revision.number},
        data={"postmortem_id": postmortem.pk, "revision": revision.number},
    )
    return revision


@transaction.atomic
def action_item_set_status(*, item: ActionItem, status: str) -> ActionItem:
    if status not in ActionItem.Status.values:
        raise ValidationError({"status": _("Unknown status.")})
    item = ActionItem.objects.select_for_update().get(pk=item.pk)
    item.status = status
    item.done_at = timezone.now() if status == ActionItem.Status.DONE else None
    item.save(update_fields=["status", "done_at"])
    return item


@transaction.atomic
def action_item_revise_playbook(*, item: ActionItem, actor: AbstractBaseUser | None) -> ActionItem:
    """Start the playbook revision an action item asks for: a new draft version, linked."""
    from playbooks.models import Playbook
    from playbooks.services import playbook_new_version

    item = ActionItem.objects.select_for_update().get(pk=item.pk)
    if item.playbook_id is None:
        raise ValidationError({"playbook": _("Choose the playbook this item revises.")})
    if item.produced_version_id is not None:
        return item
    latest = (
        Playbook.objects.filter(key=item.playbook.key)
        .exclude(status=Playbook.Status.DRAFT)
        .order_by("-version")
        .first()
        or item.playbook
    )
    draft = playbook_new_version(playbook=latest, actor=actor)
    item.produced_version = draft
    if item.status == ActionItem.Status.OPEN:
        item.status = ActionItem.Status.IN_PROGRESS
    item.save(update_fields=["produced_version", "status"])
    return item


def action_items_overdue(*, today: date) -> QuerySet[ActionItem]:
    return ActionItem.objects.filter(
        status__in=ActionItem.OPEN_STATUSES, due_on__lt=today, owner__isnull=False
    ).select_related("owner", "postmortem__incident")


def action_item_reminders_send(*, today: date | None = None) -> int:
    """E-mail each owner of an overdue action item, once a day, through the outbox."""
    from incidents import notify

    today = today or timezone.localdate()
    created: list[int] = []
    for item in action_items_overdue(today=today):
        owner = item.owner
        if not owner.is_active or not owner.email:
            continue
        incident = item.postmortem.incident
        key = f"action_overdue:{item.pk}:{today}"
        if Notification.objects.filter(dedupe_key=key).exists():
            continue
        subject, text, html = notify.render_email(
            "action_overdue",
            {
                "item": item,
                "incident": incident,
                "today": today,
                "recipient": owner,
                "subject_prefix": notify.subject_prefix(incident),
                "report_url": notify.absolute(postmortem_path(incident)),
            },
        )
        try:
            with transaction.atomic():
                note = Notification.objects.create(
                    incident=incident,
                    recipient=owner,
                    to_email=owner.email,
                    reason="action_overdue",
                    dedupe_key=key,
                    message_id=Notification.new_message_id(),
                    subject=subject[:400],
                    body_text=text,
                    body_html=html,
                )
                ActionItem.objects.filter(pk=item.pk).update(last_reminded_on=today)
        except IntegrityError:
            continue  # another run reminded this owner today
        created.append(note.pk)
    notify.deliver_on_commit(created)
    return len(created)


def postmortem_path(incident: Incident) -> str:
    from django.urls import reverse

    return reverse("incidents:postmortem", args=[incident.reference])
