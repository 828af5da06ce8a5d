"""Post-mortems: the factual half of the report, computed from the record.

``report_build`` reads an incident's record (milestones, timeline, messages,
assignments, tasks) in a fixed number of queries and returns a ``Report`` the
HTML page, the Markdown and PDF exports and the trends page all render. Nothing
here writes (services.py does).
"""

from __future__ import annotations

from collections import defaultdict, namedtuple
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from crisisdesk.timefmt import format_when
from incidents.models import (
    ActionItem,
    Exercise,
    Incident,
    Inject,
    Message,
    Notification,
    PostMortem,
    RoleAssignment,
    Task,
    TimelineEntry,
)
from incidents.postmortem.chart import Chart, chart_build

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
class Told:
    """Which language a message reached its contacts in."""

    language: str
    name: str
    count: int
    contacts: list[str]  # names, when the send was small enough to list them
    instead_of: list[str]  # the languages whose readers got this one because theirs was missing


@dataclass
class MessageRow:
    message: Message
    corrections: list[Message] = field(default_factory=list)


# The timeline entries the figures are computed from: these kinds; deadlines only when
# missed or an update cadence's (_targets, the chart); messages only when they carry the
# languages that stood in for missing ones (_told).
FACT_KINDS = (
    TimelineEntry.Kind.ESCALATION,
    TimelineEntry.Kind.UNSTAFFED,
    TimelineEntry.Kind.REOPENED,
    TimelineEntry.Kind.ACKNOWLEDGED,
)
FACT_ENTRIES = (
    Q(kind__in=FACT_KINDS)
    | Q(kind=TimelineEntry.Kind.DEADLINE, data__met=False)
    | Q(kind=TimelineEntry.Kind.DEADLINE, data__deadline="update_cadence")
    | Q(kind=TimelineEntry.Kind.MESSAGE, data__has_key="fallbacks")
)
# The columns read for them: rows, not model instances (tens of thousands in a long record).
FACT_FIELDS = ("at", "kind", "text", "data", "actor_id")
# A timeline row as the facts read it: a row with the FACT_FIELDS attributes.
FactEntry = namedtuple("FactEntry", FACT_FIELDS)


def instant_from_text(text: str) -> datetime:
    """A timestamp the database wrote as text (``Cast(…, TextField())``): with its offset
    (PostgreSQL) or in UTC without one (SQLite).

    Long timelines read their instants so: Django's timestamp loader for psycopg is
    pure Python (Django ticket 36960) and took three quarters of the time of reading
    50,000 entries (bench/postmortem_report.py); ``fromisoformat`` is C.
    """
    at = datetime.fromisoformat(text)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


# The notes the report carries (the printed report lists these; the timeline has all).
NOTES_MAX = 50

# Beyond this many e-mails for one incident's messages, the report counts per language
# instead of naming every contact (the admin's notification list names them all).
TOLD_NAMED_MAX = 500


def _told(incident: Incident, timeline: list[FactEntry]) -> dict[int, list[Told]]:
    """Per sent message, the languages its contacts got it in: two queries whatever the size."""
    names = dict(settings.LANGUAGES)
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for mid, code, n in (
        Notification.objects.filter(incident=incident, comms_message__isnull=False)
        .values_list("comms_message_id", "language")
        .annotate(n=Count("id"))
        .values_list("comms_message_id", "language", "n")
    ):
        counts[mid][code] = n
    named: dict[tuple[int, str], list[str]] = defaultdict(list)
    rows = list(
        Notification.objects.filter(incident=incident, comms_message__isnull=False)
        .order_by("comms_message_id", "contact__name", "pk")
        .values_list("comms_message_id", "language", "contact__name", "to_email")[
            : TOLD_NAMED_MAX + 1
        ]
    )
    if len(rows) <= TOLD_NAMED_MAX:
        for mid, code, name, email in rows:
            named[(mid, code)].append(name or email)
    fallbacks: dict[int, dict[str, str]] = {}
    for entry in timeline:
        if entry.kind == TimelineEntry.Kind.MESSAGE and entry.data.get("fallbacks"):
            fallbacks[entry.data.get("message_id")] = entry.data["fallbacks"]
    out: dict[int, list[Told]] = {}
    for mid, by_language in counts.items():
        out[mid] = [
            Told(
                language=code,
                name=str(names.get(code, code or "?")),
                count=n,
                contacts=named.get((mid, code), []),
                instead_of=[
                    str(names.get(wanted, wanted))
                    for wanted, got in sorted(fallbacks.get(mid, {}).items())
                    if got == code
                ],
            )
            for code, n in sorted(by_language.items())
        ]
    return out


def _failed_permanently(incident: Incident) -> dict[int, int]:
    """Per sent message, the contacts its e-mail could not reach (refused, 5xx): one query."""
    return dict(
        Notification.objects.filter(
            incident=incident, comms_message__isnull=False, status=Notification.Status.FAILED
        )
        .values_list("comms_message_id")
        .annotate(n=Count("id"))
        .order_by()
    )


@dataclass
class AudienceMessages:
    audience: str
    channel: str
    channel_label: str
    rows: list[MessageRow]


@dataclass
class RollCallRow:
    """One holder's roll call: when they were e-mailed, what they answered after how long,
    whether they were chased, and who the role was offered to next."""

    assignment: RoleAssignment
    emailed_at: datetime | None
    answer: str  # "joining", "cant" or "none"
    answered_after: timedelta | None
    chased_at: datetime | None
    offered_to: str


@dataclass
class ReplyFigures:
    """How the public comments tied to an incident (or to many) were answered (the
    listening inbox). Minutes run from when a comment arrived to its reply's publication."""

    needed: int  # comments marked as needing a reply (answered or not)
    replied: int
    within_hour: int  # replied within 60 minutes of arriving
    on_time: int  # replied by their own deadline (the playbook's, per channel and severity)
    median_minutes: float | None
    unanswered: int  # still needing a reply
    overdue: int  # still needing a reply, past their deadline
    no_reply: int  # marked as needing no reply
    dismissed: int  # false positives


HOUR = timedelta(hours=1)


def reply_figures(mentions: QuerySet, *, now: datetime) -> ReplyFigures:
    """The figures of these mentions in three queries whatever their number: the counts
    in one aggregate, and the median reply time read as the middle row (or two) of the
    replies ordered by how long each took."""
    took = ExpressionWrapper(F("replied_at") - F("received_at"), output_field=DurationField())
    replied = mentions.filter(state="replied").annotate(took=took)
    counts = mentions.aggregate(
        replied=Count("pk", filter=Q(state="replied")),
        unanswered=Count("pk", filter=Q(state="needs_reply")),
        overdue=Count("pk", filter=Q(state="needs_reply", reply_due_at__lt=now)),
        no_reply=Count("pk", filter=Q(state="no_reply")),
        dismissed=Count("pk", filter=Q(state="dismissed")),
    )
    timely = replied.aggregate(
        within_hour=Count("pk", filter=Q(took__lte=HOUR)),
        on_time=Count("pk", filter=Q(replied_at__lte=F("reply_due_at"))),
    )
    median = None
    n = counts["replied"]
    if n:
        middle = list(
            replied.order_by("took", "pk").values_list("took", flat=True)[(n - 1) // 2 : n // 2 + 1]
        )
        median = round(sum(t.total_seconds() for t in middle) / len(middle) / 60, 1)
    return ReplyFigures(
        needed=counts["replied"] + counts["unanswered"],
        replied=counts["replied"],
        within_hour=timely["within_hour"],
        on_time=timely["on_time"],
        median_minutes=median,
        unanswered=counts["unanswered"],
        overdue=counts["overdue"],
        no_reply=counts["no_reply"],
        dismissed=counts["dismissed"],
    )


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
    roll_call: list[RollCallRow]
    tasks: list[Task]
    task_counts: dict[str, int]
    # The full timeline is not held here: it can run to tens of thousands of entries, so
    # the renderers read it in pages or stream it (render.py). The facts read only the
    # entries they count (FACT_ENTRIES), and the report keeps the first notes for print.
    timeline_count: int
    notes: list[TimelineEntry]
    note_count: int
    reopen_count: int
    duration: timedelta | None
    chart: Chart
    action_items: list[ActionItem]
    # A drill run as an exercise: its injects and how the team answered each.
    exercise: ExerciseReport | None = None
    # The public comments tied to it and how they were answered (None: it had none).
    replies: ReplyFigures | None = None


@dataclass
class InjectRow:
    inject: Inject
    # The first things people did on the drill after it fired (before the next fired).
    first_actions: list[TimelineEntry]
    answered_after: timedelta | None


@dataclass
class ExerciseReport:
    exercise: Exercise
    injects: list[InjectRow]
    # Sample public comments the fired injects brought into the inbox; how they were
    # answered is the drill's ``replies`` figures (the same as a real incident's).
    comments: int = 0


FIRST_ACTIONS = 3


def _exercise(incident: Incident) -> ExerciseReport | None:
    """The exercise this drill ran, with each inject and the participants' first actions
    after it (before the next inject fired): bounded whatever the drill's record, with
    one small query per fired inject (at most MAX_INJECTS), none for a real incident."""
    if not incident.drill:
        return None
    exercise = Exercise.objects.filter(incident=incident).first()
    if exercise is None:
        return None
    injects = list(exercise.injects.order_by("offset_seconds", "position"))
    team = list(exercise.participants.values_list("user_id", flat=True))
    entries = TimelineEntry.objects.filter(incident=incident)
    # Where each inject's own entry stands on the timeline (its time, then its id).
    placed = {
        e.data.get("inject_id"): (e.at, e.pk)
        for e in entries.filter(kind=TimelineEntry.Kind.INJECT).only("at", "data")
    }
    starts = sorted(placed.values())
    rows = []
    for inject in injects:
        actions: list[TimelineEntry] = []
        start = placed.get(inject.pk)
        if start is not None:
            window = entries.filter(actor_id__in=team).exclude(data__has_key="exercise")
            window = window.filter(Q(at__gt=start[0]) | Q(at=start[0], pk__gt=start[1]))
            following = next((n for n in starts if n > start), None)
            if following is not None:
                window = window.filter(
                    Q(at__lt=following[0]) | Q(at=following[0], pk__lt=following[1])
                )
            actions = list(window.order_by("at", "pk")[:FIRST_ACTIONS])
        rows.append(
            InjectRow(
                inject=inject,
                first_actions=actions,
                answered_after=actions[0].at - inject.fired_at
                if actions and inject.fired_at
                else None,
            )
        )
    comments = sum(len(i.mentions) for i in injects if i.fired_at)
    return ExerciseReport(exercise=exercise, injects=rows, comments=comments)


MILESTONES = (
    ("detected_at", pgettext_lazy("milestone", "Detected")),
    ("opened_at", pgettext_lazy("milestone", "Opened")),
    ("acknowledged_at", pgettext_lazy("milestone", "Acknowledged")),
    ("first_statement_at", gettext_lazy("First public statement")),
    ("contained_at", pgettext_lazy("milestone", "Contained")),
    ("resolved_at", pgettext_lazy("milestone", "Resolved")),
    ("closed_at", pgettext_lazy("milestone", "Closed")),
)


def _milestones(incident: Incident, timeline: list[FactEntry]) -> list[Milestone]:
    rows = []
    previous = None
    for key, label in MILESTONES:
        # acknowledged_at is stamped by an acknowledgement only (incident_acknowledge),
        # never by containing or resolving: the trends read the same field.
        at = getattr(incident, key)
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


def acknowledge_clock_start(incident: Incident) -> datetime:
    """Where time to acknowledge is measured from: the first page, or opening if nobody
    was ever paged. Nobody can acknowledge a page before it arrives, and a level 1 that
    pages late (or at once, for a SEV1) must not be counted against the person paged.
    ``first_paged_at`` pairs with ``acknowledged_at`` across reopenings (models.py);
    the report's target and the trends' median and rate all measure from here."""
    return incident.first_paged_at or incident.opened_at


def time_to_acknowledge(incident: Incident) -> timedelta | None:
    if incident.acknowledged_at is None:
        return None
    return incident.acknowledged_at - acknowledge_clock_start(incident)


def _end(incident: Incident, now: datetime) -> datetime:
    return incident.closed_at or incident.resolved_at or now


def _targets(
    incident: Incident,
    timeline: list[FactEntry],
    finals: list[Message],
    cadences: list,
    now: datetime,
) -> list[Target]:
    end = _end(incident, now)
    elapsed = end - incident.opened_at
    acked = incident.acknowledged_at
    ack_target = acknowledge_target(incident)
    ack_actual = time_to_acknowledge(incident)
    ack_from = acknowledge_clock_start(incident)
    ack_detail = (
        _("Measured from the first page, %(t)s.") % {"t": format_when(ack_from)}
        if incident.first_paged_at
        else _("Measured from opening: nobody was paged.")
    )
    targets = [
        Target(
            key="acknowledge",
            label=_("Acknowledge"),
            target=ack_target,
            actual=ack_actual,
            outcome=_outcome(ack_target, ack_actual, end - ack_from),
            detail=ack_detail if acked else _("Never acknowledged by a person."),
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


def _escalations(timeline: list[FactEntry], users: dict) -> list[EscalationRow]:
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


def _acknowledgements(
    incident: Incident, timeline: list[FactEntry], users: dict[int, str]
) -> list[dict]:
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
                    "by": users[e.actor_id] if e.actor_id in users else person_name(None),
                    "after_start": e.at - round_start,
                    "after_first_page": e.at - first_page if first_page else None,
                }
            )
    return rows


def person_name(user) -> str:
    if user is None:
        return _("the system")
    return user.get_full_name() or user.get_username()


def _messages(
    finals: list[Message], told: dict[int, list[Told]], failed: dict[int, int] | None = None
) -> tuple[list[AudienceMessages], int]:
    """Sent and published messages per audience and channel, corrections beside originals;
    each with the languages it reached its contacts in, and how many it could not reach."""
    for m in finals:
        m.told = told.get(m.pk, [])
        m.failed_permanently = (failed or {}).get(m.pk, 0)
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


def _roll_call(
    assignments: list[RoleAssignment], emailed: dict[int, datetime]
) -> list[RollCallRow]:
    rows = []
    for a in assignments:
        sent = emailed.get(a.pk)
        if sent is None and a.answer == RoleAssignment.Answer.PENDING and a.chased_at is None:
            continue  # never called in (handed out before roll calls, or after the incident)
        start = sent or a.assumed_at
        rows.append(
            RollCallRow(
                assignment=a,
                emailed_at=sent,
                answer=a.answer if a.answer != RoleAssignment.Answer.PENDING else "none",
                answered_after=(a.answered_at - start) if a.answered_at else None,
                chased_at=a.chased_at,
                offered_to=person_name(a.offered_to) if a.offered_to_id else "",
            )
        )
    return rows


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


def report_build(incident: Incident, *, now: datetime | None = None) -> Report:
    """Everything the post-mortem says about what happened, in a fixed number of queries."""
    now = now or timezone.now()
    incident = Incident.objects.select_related("playbook", "opened_by", "acknowledged_by").get(
        pk=incident.pk
    )
    postmortem = PostMortem.objects.filter(incident=incident).first()
    entries = TimelineEntry.objects.filter(incident=incident)
    timeline = [
        FactEntry(instant_from_text(at), *rest)
        for at, *rest in entries.filter(FACT_ENTRIES)
        .order_by("at", "pk")
        .annotate(at_text=Cast("at", TextField()))
        .values_list("at_text", *FACT_FIELDS[1:])
    ]
    counts = entries.aggregate(
        total=Count("pk"), notes=Count("pk", filter=Q(kind=TimelineEntry.Kind.NOTE))
    )
    notes = list(
        entries.filter(kind=TimelineEntry.Kind.NOTE)
        .select_related("actor")
        .order_by("at", "pk")[:NOTES_MAX]
    )
    finals = list(
        Message.objects.filter(incident=incident, status__in=Message.FINAL)
        .select_related("audience", "sent_by", "approver", "author")
        .order_by("sent_at", "pk")
    )
    assignments = list(
        RoleAssignment.objects.filter(incident=incident)
        .select_related("role", "user", "assigned_by", "offered_to")
        .order_by("role__sort_order", "assumed_at", "pk")
    )
    # When each holder's activation e-mail went out (written, if it is not sent yet).
    emailed = {
        aid: sent or created
        for aid, sent, created in Notification.objects.filter(
            incident=incident, reason="activation", role_assignment__isnull=False
        ).values_list("role_assignment_id", "sent_at", "created_at")
    }
    tasks = list(
        Task.objects.filter(incident=incident)
        .select_related("role", "assignee", "done_by")
        .order_by("position", "pk")
    )
    cadences = (
        list(incident.playbook.cadences.select_related("audience")) if incident.playbook else []
    )
    user_ids = {uid for e in timeline for uid in e.data.get("user_ids", [])}
    user_ids |= {e.actor_id for e in timeline if e.kind == TimelineEntry.Kind.ACKNOWLEDGED}
    users = {u.pk: person_name(u) for u in get_user_model().objects.filter(pk__in=user_ids)}
    action_items = (
        list(postmortem.action_items.select_related("owner", "playbook", "produced_version"))
        if postmortem
        else []
    )

    milestones = _milestones(incident, timeline)
    escalations = _escalations(timeline, users)
    messages, corrections = _messages(
        finals, _told(incident, timeline), _failed_permanently(incident)
    )
    end = incident.resolved_at or incident.closed_at
    return Report(
        incident=incident,
        postmortem=postmortem,
        generated_at=now,
        milestones=milestones,
        targets=_targets(incident, timeline, finals, cadences, now),
        escalations=escalations,
        acknowledgements=_acknowledgements(incident, timeline, users),
        messages=messages,
        message_count=len(finals),
        correction_count=corrections,
        assignments=assignments,
        roll_call=_roll_call(assignments, emailed),
        tasks=tasks,
        task_counts=_task_counts(tasks, now),
        timeline_count=counts["total"],
        notes=notes,
        note_count=counts["notes"],
        reopen_count=sum(1 for e in timeline if e.kind == TimelineEntry.Kind.REOPENED),
        duration=(end - (incident.detected_at or incident.opened_at)) if end else None,
        chart=chart_build(incident, milestones, escalations, finals, timeline, now),
        action_items=action_items,
        exercise=_exercise(incident),
        replies=_replies(incident, now),
    )


def _replies(incident: Incident, now: datetime) -> ReplyFigures | None:
    # ``incident.mentions``: the listening app's reverse relation (incidents never imports it).
    mentions = incident.mentions.all()
    figures = reply_figures(mentions, now=now)
    if not (figures.needed or figures.no_reply or figures.dismissed):
        return None
    return figures
