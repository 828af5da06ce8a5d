"""The war room: the HTML pages a crisis team works from during an incident.

Every read goes through ``incidents_visible_to``: an incident someone may not
see answers 404 exactly like a reference that does not exist, on every page and
partial, and never appears on the dashboard or the list. Every write is one
service call (incidents/services.py) behind the same permission the API checks;
an action overtaken by someone else (acknowledging what was just resolved) says
what happened instead of failing. Each page reads in a fixed number of queries,
whatever the number of tasks or timeline entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import (
    Count,
    IntegerField,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from incidents import services, timers
from incidents.forms import (
    IncidentFilterForm,
    IncidentOpenForm,
    NoteForm,
    ReasonForm,
    ResolveForm,
    RoleAssignForm,
    SeverityForm,
    TaskCompleteForm,
)
from incidents.models import Incident, RoleAssignment, Task, TimelineEntry, Timer
from incidents.selectors import incidents_visible_to
from incidents.timeline import actor_name
from incidents.warroom_comms import comms_panel
from playbooks.models import CrisisRole, EscalationLevel, OnCallRotation, Phase
from playbooks.oncall import oncall_now
from playbooks.selectors import playbooks_review_due, risks_review_due

READ_PERM = "incidents.view_incident"
PAGE_SIZE = 25


def _reader(view):
    """Signed in (else to the sign-in page) and allowed to read incidents (else 403)."""
    return login_required(permission_required(READ_PERM, raise_exception=True)(view))


# ------------------------------------------------------------------ reads


def _visible(request: HttpRequest, reference: str) -> Incident:
    """The incident, or 404 when it does not exist or this person may not see it."""
    return get_object_or_404(
        incidents_visible_to(request.user).select_related(
            "playbook", "opened_by", "acknowledged_by"
        ),
        reference=reference,
    )


def _with_deadlines(qs: QuerySet[Incident], *, now: datetime) -> QuerySet[Incident]:
    """Annotate the next escalation, the first-statement timer and the overdue tasks.

    Subqueries rather than joined aggregates: two joined counts would multiply.
    """
    next_escalation = (
        Timer.objects.filter(
            incident=OuterRef("pk"), state=Timer.State.PENDING, kind=Timer.Kind.ESCALATION
        )
        .order_by("due_at")
        .values("due_at")[:1]
    )
    statement = (
        Timer.objects.filter(incident=OuterRef("pk"), kind=Timer.Kind.FIRST_STATEMENT)
        .order_by("-due_at")
        .values("due_at")[:1]
    )
    overdue = (
        Task.objects.filter(incident=OuterRef("pk"), status=Task.Status.OPEN, due_at__lt=now)
        .order_by()
        .values("incident")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return qs.annotate(
        next_escalation_at=Subquery(next_escalation),
        statement_timer_at=Subquery(statement),
        overdue_tasks=Coalesce(Subquery(overdue, output_field=IntegerField()), Value(0)),
    )


def statement_due(incident: Incident) -> datetime | None:
    """When the first public statement is due; None once it is out or the incident is over."""
    if incident.first_statement_at is not None or not incident.is_active:
        return None
    timer_at = getattr(incident, "statement_timer_at", None)
    return timer_at or incident.opened_at + timedelta(minutes=incident.first_statement_minutes)


def _active(user, *, now: datetime) -> list[Incident]:
    qs = incidents_visible_to(user).filter(status__in=Incident.ACTIVE_STATUSES)
    # The next update due to each audience (its cadence timer), in one more query.
    cadence = Prefetch(
        "timers",
        queryset=Timer.objects.filter(state=Timer.State.PENDING, kind=Timer.Kind.UPDATE_CADENCE)
        .select_related("audience")
        .order_by("due_at", "pk"),
        to_attr="cadence_timers",
    )
    qs = _with_deadlines(qs, now=now).prefetch_related(cadence)
    rows = list(qs.order_by("severity", "opened_at", "pk"))
    for incident in rows:
        incident.statement_due_at = statement_due(incident)
    return rows


@dataclass(slots=True)
class Entry:
    """A timeline entry as the page shows it: the columns it reads and the kind's label."""

    pk: int
    at: datetime
    kind: str
    kind_label: str
    text: str
    data: dict
    corrects_id: int | None


@dataclass
class LevelRow:
    position: int
    delay_seconds: int
    whom: str
    paged: list[Entry]
    at_once: bool = False  # level 1 of a severity that pages without its delay


def _escalation_levels(incident: Incident, pages: list[Entry]) -> list[LevelRow]:
    """The frozen policy's levels with whom each pages, in three queries at most."""
    levels = incident.escalation_policy.get("levels") or []
    role_ids = {lv["role_id"] for lv in levels if lv.get("role_id")}
    rotation_ids = {lv["rotation_id"] for lv in levels if lv.get("rotation_id")}
    user_ids = {uid for lv in levels for uid in lv.get("user_ids", [])}
    roles = {r.pk: r.name for r in CrisisRole.objects.filter(pk__in=role_ids)} if role_ids else {}
    rotations = (
        {r.pk: r.name for r in OnCallRotation.objects.filter(pk__in=rotation_ids)}
        if rotation_ids
        else {}
    )
    users = (
        {u.pk: actor_name(u) for u in get_user_model().objects.filter(pk__in=user_ids)}
        if user_ids
        else {}
    )
    rows = []
    for position, level in enumerate(levels, start=1):
        if level.get("target") == EscalationLevel.Target.ROLE_ON_CALL:
            whom = _("on-call %(role)s") % {"role": roles.get(level.get("role_id"), "?")}
        elif level.get("target") == EscalationLevel.Target.ROTATION:
            whom = _("on call in %(rotation)s") % {
                "rotation": rotations.get(level.get("rotation_id"), "?")
            }
        else:
            whom = ", ".join(users.get(uid, "?") for uid in level.get("user_ids", [])) or "—"
        rows.append(
            LevelRow(
                position=position,
                delay_seconds=level.get("delay_seconds", 0),
                whom=whom,
                paged=[p for p in pages if p.data.get("level") == position],
                at_once=position == 1
                and timers.pages_at_once(
                    policy=incident.escalation_policy, severity=incident.severity
                ),
            )
        )
    return rows


def _timeline(incident: Incident) -> list[Entry]:
    """The whole timeline, newest first, as plain rows: model instances for a long
    crisis's 2,000 entries cost more than the rest of the page (bench/war_room.py).
    Each kind's label is translated once per page, not once per entry; only the
    pages' details (their level) are read from the JSON column."""
    labels = {value: str(label) for value, label in TimelineEntry.Kind.choices}
    entries = TimelineEntry.objects.filter(incident=incident)
    details = dict(entries.filter(kind=TimelineEntry.Kind.ESCALATION).values_list("pk", "data"))
    return [
        Entry(pk, at, kind, labels.get(kind, kind), text, details.get(pk, {}), corrects_id)
        for pk, at, kind, text, corrects_id in entries.order_by("-at", "-pk").values_list(
            "pk", "at", "kind", "text", "corrects_id"
        )
    ]


def _timeline_context(incident: Incident, timeline: list[Entry]) -> dict:
    # The timeline is append-only, so its highest id changes exactly when an entry
    # is added (whatever its time): the poll sends it back and gets 204 until then.
    return {
        "incident": incident,
        "timeline": timeline,
        "timeline_last_id": max((e.pk for e in timeline), default=""),
    }


# ------------------------------------------------------------------ pages


@_reader
def dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    active = _active(request.user, now=now)
    return render(
        request,
        "warroom/dashboard.html",
        {
            "now": now,
            "incidents": [i for i in active if not i.drill],
            "drills": [i for i in active if i.drill],
            "oncall": oncall_now(at=now),
            "risks_due": list(risks_review_due()[:20]),
            "playbooks_due": playbooks_review_due(),
        },
    )


@_reader
def incident_list(request: HttpRequest) -> HttpResponse:
    form = IncidentFilterForm(request.GET or None)
    qs = incidents_visible_to(request.user).select_related("playbook")
    if form.is_valid():
        data = form.cleaned_data
        if data["q"]:
            qs = qs.filter(Q(reference__icontains=data["q"]) | Q(title__icontains=data["q"]))
        if data["status"] == form.ACTIVE:
            qs = qs.filter(status__in=Incident.ACTIVE_STATUSES)
        elif data["status"] == form.PAST:
            qs = qs.exclude(status__in=Incident.ACTIVE_STATUSES)
        elif data["status"]:
            qs = qs.filter(status=data["status"])
        if data["severity"]:
            qs = qs.filter(severity=data["severity"])
        if data["category"]:
            qs = qs.filter(category=data["category"])
        if data["drill"]:
            qs = qs.filter(drill=data["drill"] == "yes")
    page = Paginator(qs.order_by("-opened_at", "-pk"), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "warroom/incident_list.html",
        {"form": form, "page": page, "query": query.urlencode(), "now": timezone.now()},
    )


@login_required
@permission_required("incidents.add_incident", raise_exception=True)
@require_http_methods(["GET", "POST"])
def incident_new(request: HttpRequest) -> HttpResponse:
    form = IncidentOpenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            incident = services.incident_open(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(
                request,
                _("%(ref)s is open: its playbook has started.") % {"ref": incident.reference},
            )
            return redirect("warroom:incident", reference=incident.reference)
    return render(request, "warroom/incident_new.html", {"form": form})


@_reader
def incident_page(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _visible(request, reference)
    now = timezone.now()
    timers = list(
        Timer.objects.filter(incident=incident)
        .filter(Q(state=Timer.State.PENDING) | Q(kind=Timer.Kind.FIRST_STATEMENT))
        .select_related("audience")
        .order_by("due_at", "pk")
    )
    statements = [t for t in timers if t.kind == Timer.Kind.FIRST_STATEMENT]
    incident.statement_timer_at = statements[-1].due_at if statements else None
    next_escalation = next(
        (t for t in timers if t.kind == Timer.Kind.ESCALATION and t.state == Timer.State.PENDING),
        None,
    )
    tasks = list(
        Task.objects.filter(incident=incident)
        .select_related("role", "assignee", "done_by")
        .order_by("position", "pk")
    )
    phases = dict(Phase.choices)
    grouped: dict[str, list[Task]] = {}
    for task in tasks:
        task.overdue = task.status == Task.Status.OPEN and task.due_at and task.due_at < now
        grouped.setdefault(task.phase, []).append(task)
    assignments = list(
        RoleAssignment.objects.filter(incident=incident)
        .select_related("role", "user", "offered_to")
        .order_by("role__sort_order", "role__name", "-assumed_at")
    )
    current = [a for a in assignments if a.relieved_at is None]
    window = services.roll_call_window(incident)
    for a in current:
        # Chased, and the second window ran out with nobody else to offer the role to.
        a.unanswered = a.answer == RoleAssignment.Answer.PENDING and bool(
            a.chased_at and now >= a.chased_at + window
        )
    held = {a.role_id for a in current}
    # Roles the playbook's tasks need that nobody holds (nobody was on call, or relieved).
    unheld = {t.role_id: t.role for t in tasks if t.role_id and t.role_id not in held}
    timeline = _timeline(incident)
    pages = [e for e in timeline if e.kind == TimelineEntry.Kind.ESCALATION]
    return render(
        request,
        "warroom/incident.html",
        {
            "incident": incident,
            "now": now,
            "statement_due_at": statement_due(incident),
            # How long the acknowledgement took, from the first page (else from opening).
            "ack_after": (
                incident.acknowledged_at - (incident.first_paged_at or incident.opened_at)
                if incident.acknowledged_at
                else None
            ),
            "next_escalation": next_escalation,
            "cadence_timers": [t for t in timers if t.kind == Timer.Kind.UPDATE_CADENCE],
            "phases": [
                (phases.get(key, key or _("Other")), items) for key, items in grouped.items()
            ],
            "overdue_tasks": sum(1 for t in tasks if t.overdue),
            "open_tasks": sum(1 for t in tasks if t.status == Task.Status.OPEN),
            "current_roles": current,
            "unheld_roles": sorted(unheld.values(), key=lambda r: (r.sort_order, r.name)),
            "past_roles": [a for a in assignments if a.relieved_at is not None],
            **_timeline_context(incident, timeline),
            "levels": _escalation_levels(incident, list(reversed(pages))),
            "pages": pages,
            "severity_form": SeverityForm(initial={"severity": incident.severity}),
            "note_form": NoteForm(),
            "task_form": TaskCompleteForm(),
            "role_form": RoleAssignForm(
                initial={"role": min(unheld, default=None, key=lambda pk: unheld[pk].sort_order)}
            ),
            **comms_panel(request, incident),
        },
    )


@_reader
def timeline_partial(request: HttpRequest, reference: str) -> HttpResponse:
    """The timeline, for htmx polling; 204 (nothing to swap) when nothing was added."""
    incident = _visible(request, reference)
    latest = request.GET.get("latest", "")
    last_id = TimelineEntry.objects.filter(incident=incident).aggregate(last=Max("pk"))["last"]
    if latest and latest == str(last_id):
        return HttpResponse(status=204)
    return render(
        request,
        "warroom/_timeline.html",
        {**_timeline_context(incident, _timeline(incident)), "oob": True},
    )


# ------------------------------------------------------------------ actions


@dataclass(frozen=True)
class Action:
    perm: str
    confirm: bool  # irreversible: a confirmation page first
    form: type | None = None


CHANGE = "incidents.change_incident"
ACTIONS: dict[str, Action] = {
    "acknowledge": Action("incidents.acknowledge_incident", False),
    "severity": Action(CHANGE, False, SeverityForm),
    "contain": Action(CHANGE, True),
    "resolve": Action(CHANGE, True, ResolveForm),
    "close": Action(CHANGE, True),
    "reopen": Action(CHANGE, True, ReasonForm),
}


def _labels() -> dict[str, tuple[str, str]]:
    # Translated at request time, in the reader's language.
    return {
        "acknowledge": (_("Acknowledge"), ""),
        "severity": (_("Change severity"), ""),
        "contain": (
            _("Mark contained"),
            _("Mark the incident contained? It cannot go back to acknowledged."),
        ),
        "resolve": (
            _("Resolve"),
            _("Resolve the incident? Every pending timer stops and the post-mortem starts."),
        ),
        "close": (
            _("Close"),
            _(
                "Close the incident? It leaves the war room; "
                "reopening starts a new escalation round."
            ),
        ),
        "reopen": (_("Reopen"), _("Reopen the incident? Escalation starts again at level 1.")),
    }


def _what_happened(incident: Incident) -> str:
    """The incident's status now and the latest thing on its timeline."""
    latest = (
        TimelineEntry.objects.filter(incident=incident).order_by("-at", "-pk").only("text").first()
    )
    text = _("%(ref)s is now “%(status)s”.") % {
        "ref": incident.reference,
        "status": incident.get_status_display(),
    }
    if latest is not None:
        text += " " + _("Latest on the timeline: %(entry)s") % {"entry": latest.text}
    return text


@_reader
@require_http_methods(["GET", "POST"])
def incident_action(request: HttpRequest, reference: str, action: str) -> HttpResponse:
    """One life-cycle action. Irreversible ones answer GET (and an unconfirmed POST)
    with a confirmation page; the confirmed POST calls the service."""
    incident = _visible(request, reference)
    spec = ACTIONS.get(action)
    if spec is None:
        raise Http404
    if not request.user.has_perm(spec.perm):
        raise PermissionDenied
    if request.method == "GET" and not spec.confirm:
        return redirect("warroom:incident", reference=incident.reference)
    form = spec.form(request.POST or None) if spec.form else None
    confirmed = request.method == "POST" and (not spec.confirm or "confirmed" in request.POST)
    if confirmed and (form is None or form.is_valid()):
        return _perform(request, incident, action, form.cleaned_data if form else {})
    label, question = _labels()[action]
    return render(
        request,
        "warroom/confirm.html",
        {
            "incident": incident,
            "action": action,
            "label": label,
            "question": question,
            "form": form,
        },
    )


def _perform(request: HttpRequest, incident: Incident, action: str, data: dict) -> HttpResponse:
    user = request.user
    try:
        if action == "acknowledge":
            if services.incident_acknowledge(incident=incident, actor=user, via="war room"):
                messages.success(request, _("Acknowledged: the escalation is stopped."))
            else:
                incident.refresh_from_db()
                messages.warning(
                    request,
                    _("Nothing to acknowledge: it was no longer waiting for anyone.")
                    + " "
                    + _what_happened(incident),
                )
        elif action == "severity":
            services.incident_change_severity(incident=incident, actor=user, **data)
            messages.success(request, _("Severity is now SEV%(n)s.") % {"n": data["severity"]})
        elif action == "contain":
            services.incident_contain(incident=incident, actor=user)
            messages.success(request, _("Marked contained."))
        elif action == "resolve":
            services.incident_resolve(incident=incident, actor=user, **data)
            messages.success(request, _("Resolved: the post-mortem has started."))
        elif action == "close":
            services.incident_close(incident=incident, actor=user)
            messages.success(request, _("Closed."))
        elif action == "reopen":
            services.incident_reopen(incident=incident, actor=user, **data)
            messages.success(request, _("Reopened: escalation starts again at level 1."))
    except ValidationError as exc:
        # Someone else got there first (or the state moved on): say what happened.
        incident.refresh_from_db()
        messages.warning(request, " ".join([*exc.messages, _what_happened(incident)]))
    return redirect("warroom:incident", reference=incident.reference)


@_reader
@require_POST
def task_complete(request: HttpRequest, reference: str, task_id: int) -> HttpResponse:
    incident = _visible(request, reference)
    task = get_object_or_404(Task.objects.select_related("done_by"), pk=task_id, incident=incident)
    if not request.user.has_perm("incidents.change_task"):
        raise PermissionDenied
    form = TaskCompleteForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose done or skipped."))
    elif task.status != Task.Status.OPEN:
        messages.warning(
            request,
            _("“%(task)s” was already marked %(status)s by %(who)s.")
            % {
                "task": task.title,
                "status": task.get_status_display().lower(),
                "who": actor_name(task.done_by),
            },
        )
    else:
        skipped = form.cleaned_data["outcome"] == "skipped"
        done = services.task_complete(
            task=task, actor=request.user, skipped=skipped, note=form.cleaned_data["note"]
        )
        if done.done_by_id != request.user.pk:
            messages.warning(
                request,
                _("“%(task)s” was marked %(status)s by %(who)s a moment before you.")
                % {
                    "task": task.title,
                    "status": done.get_status_display().lower(),
                    "who": actor_name(done.done_by),
                },
            )
        else:
            messages.success(
                request,
                (_("Skipped “%(task)s”.") if skipped else _("Done: “%(task)s”."))
                % {"task": task.title},
            )
    return redirect(reverse("warroom:incident", args=[incident.reference]) + f"#task-{task.pk}")


@_reader
@require_POST
def note_add(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _visible(request, reference)
    if not request.user.has_perm("incidents.add_timelineentry"):
        raise PermissionDenied
    form = NoteForm(request.POST)
    error = ""
    if form.is_valid():
        try:
            services.note_add(incident=incident, actor=request.user, text=form.cleaned_data["text"])
        except ValidationError as exc:
            error = " ".join(exc.messages)
    else:
        error = " ".join(form.errors.get("text", [])) or _("A note needs some text.")
    if request.htmx:
        if error:
            return reswap(retarget(HttpResponse(error), "#note-errors"), "innerHTML")
        return render(
            request,
            "warroom/_timeline.html",
            {**_timeline_context(incident, _timeline(incident)), "oob": True},
        )
    if error:
        messages.error(request, error)
    return redirect(reverse("warroom:incident", args=[incident.reference]) + "#timeline")


@_reader
@require_POST
def role_assign(request: HttpRequest, reference: str) -> HttpResponse:
    """Hand a role to someone (the previous holder is relieved, never erased)."""
    incident = _visible(request, reference)
    if not request.user.has_perm("incidents.add_roleassignment"):
        raise PermissionDenied
    form = RoleAssignForm(request.POST)
    if form.is_valid():
        role, person = form.cleaned_data["role"], form.cleaned_data["user"]
        services.role_assign(incident=incident, role=role, user=person, actor=request.user)
        messages.success(
            request,
            _("%(user)s is %(role)s.") % {"user": actor_name(person), "role": role.name},
        )
    else:
        messages.error(request, _("Choose a role and a person."))
    return redirect(reverse("warroom:incident", args=[incident.reference]) + "#roles")


@_reader
@require_http_methods(["GET", "POST"])
def role_relieve(request: HttpRequest, reference: str, assignment_id: int) -> HttpResponse:
    """Relieve a role's holder (the role is then unheld). GET, and an unconfirmed POST,
    answer with a confirmation page; the confirmed POST calls the service. The same
    permission as the API's relieve."""
    incident = _visible(request, reference)
    if not request.user.has_perm("incidents.change_roleassignment"):
        raise PermissionDenied
    assignment = get_object_or_404(
        RoleAssignment.objects.select_related("role", "user"), pk=assignment_id, incident=incident
    )
    back = redirect(reverse("warroom:incident", args=[incident.reference]) + "#roles")
    names = {"user": actor_name(assignment.user), "role": assignment.role.name}
    if assignment.relieved_at is not None:
        messages.warning(
            request,
            _("%(user)s no longer holds %(role)s (since %(when)s UTC): nothing to relieve.")
            % {**names, "when": f"{assignment.relieved_at:%Y-%m-%d %H:%M}"},
        )
        return back
    if request.method == "POST" and "confirmed" in request.POST:
        relieved = services.role_relieve(
            incident=incident, role=assignment.role, actor=request.user, assignment=assignment
        )
        if relieved is None:
            messages.warning(
                request,
                _("%(user)s no longer holds %(role)s: someone changed it a moment before you.")
                % names,
            )
        else:
            messages.success(request, _("%(user)s is relieved as %(role)s.") % names)
        return back
    label = _("Relieve")
    return render(
        request,
        "warroom/confirm.html",
        {
            "incident": incident,
            "label": label,
            "action_url": reverse("warroom:role_relieve", args=[incident.reference, assignment.pk]),
            "question": _(
                "Relieve %(user)s as %(role)s? Nobody holds the role until you hand it to "
                "someone; the timeline records who held it and when."
            )
            % names,
            "form": None,
        },
    )


@_reader
@require_POST
def role_answer(request: HttpRequest, reference: str, assignment_id: int) -> HttpResponse:
    """A holder answers their own roll call from the role board, as the e-mail's links do:
    joining at once; can't after a confirmation (it relieves them and offers the role on).
    Only the holder may answer, and only while the roll call waits for them."""
    incident = _visible(request, reference)
    assignment = get_object_or_404(
        RoleAssignment.objects.select_related("role", "user"),
        pk=assignment_id,
        incident=incident,
        user=request.user,
    )
    back = redirect(reverse("warroom:incident", args=[incident.reference]) + "#roles")
    answer = request.POST.get("answer", "")
    role = assignment.role.name
    if answer == RoleAssignment.Answer.CANT and "confirmed" not in request.POST:
        return render(
            request,
            "warroom/confirm.html",
            {
                "incident": incident,
                "label": _("I can't"),
                "action_url": reverse(
                    "warroom:role_answer", args=[incident.reference, assignment.pk]
                ),
                "question": _(
                    "Say you can't take %(role)s? You are relieved at once and the role is "
                    "offered to the next person of its rotation."
                )
                % {"role": role},
                "hidden": {"answer": answer},
                "form": None,
            },
        )
    try:
        answered, passed_to = services.role_answer(
            incident=incident, assignment=assignment, answer=answer
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return back
    if not answered:
        messages.warning(
            request,
            _("Your roll call for %(role)s was already answered or is over.") % {"role": role},
        )
    elif answer == RoleAssignment.Answer.JOINING:
        messages.success(request, _("You are joining as %(role)s.") % {"role": role})
    elif passed_to is not None:
        messages.success(
            request,
            _("You are relieved as %(role)s; it is offered to %(next)s.")
            % {"role": role, "next": actor_name(passed_to)},
        )
    else:
        messages.success(
            request,
            _("You are relieved as %(role)s; nobody else is on its rotation to ask.")
            % {"role": role},
        )
    return back
