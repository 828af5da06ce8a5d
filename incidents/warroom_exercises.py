"""The facilitator's pages: exercises listed, planned, edited and run.

Reads go through ``exercises_visible_to``: crisis managers see every exercise, the
facilitator and the participants theirs; anyone else gets the 404 of a made-up id.
Running one (start, pause, resume, fire early, end, edit) is for its facilitator or
a crisis manager; each is one service call (incidents/exercises.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Max
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from incidents import exercises
from incidents.exercises import InjectDraft
from incidents.forms import (
    ExerciseEndForm,
    ExercisePlanForm,
    InjectFormSet,
    ParticipantFormSet,
)
from incidents.models import Exercise, Inject, Message, RoleAssignment, TimelineEntry
from incidents.selectors import exercise_may_run, exercises_visible_to
from incidents.warroom import _reader

PLAN_PERM = "incidents.add_exercise"


def _visible(request: HttpRequest, pk: int) -> Exercise:
    return get_object_or_404(exercises_visible_to(request.user), pk=pk)


def _runner(request: HttpRequest, pk: int) -> Exercise:
    """The exercise, if this person may run it: 404 if they may not see it, else 403."""
    exercise = _visible(request, pk)
    if not exercise_may_run(request.user, exercise):
        raise PermissionDenied
    return exercise


@_reader
def exercise_list(request: HttpRequest) -> HttpResponse:
    rows = list(
        exercises_visible_to(request.user)
        .annotate(inject_count=Count("injects", distinct=True))
        .order_by("-created_at", "-pk")[:200]
    )
    groups = [
        (label, [e for e in rows if e.status in statuses])
        for label, statuses in (
            (_("Running"), (Exercise.Status.RUNNING, Exercise.Status.PAUSED)),
            (_("Planned"), (Exercise.Status.PLANNED,)),
            (_("Ended"), (Exercise.Status.ENDED,)),
        )
    ]
    return render(
        request,
        "warroom/exercise_list.html",
        {
            "groups": groups,
            "may_plan": request.user.has_perm(PLAN_PERM),
            "now": timezone.now(),
        },
    )


# ------------------------------------------------------------------ plan and edit


def _library_initial(playbook) -> list[dict]:
    return [
        {
            "offset_minutes": d.offset_seconds // 60,
            "title": d.title,
            "text": d.text,
            "roles": list(d.roles),
            "mentions": d.mentions,
        }
        for d in exercises.library_injects(playbook)
    ]


def _forms(request: HttpRequest, *, initial: dict, participants: list, injects: list):
    """The plan form and its two formsets: bound on POST, else filled with ``initial``.
    An "add a row" button posts the same data back with one more blank row."""
    if request.method != "POST":
        return (
            ExercisePlanForm(initial=initial),
            ParticipantFormSet(prefix="participants", initial=participants),
            InjectFormSet(prefix="injects", initial=injects),
        )
    data = request.POST.copy()
    for prefix in ("participants", "injects"):
        if f"add_{prefix}" in data:
            key = f"{prefix}-TOTAL_FORMS"
            total = data.get(key, "0")
            if total.isdigit():
                data[key] = str(min(int(total) + 1, 100))
    return (
        ExercisePlanForm(data),
        ParticipantFormSet(data, prefix="participants"),
        InjectFormSet(data, prefix="injects"),
    )


def _kept(formset) -> list[dict]:
    """The rows filled in and not ticked for removal."""
    return [
        f.cleaned_data for f in formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")
    ]


def _save(request, form, people, script, *, exercise: Exercise | None):
    """Plan (or update) through the service; its errors land on the form. None on errors."""
    participants = [(row["user"], row["role"]) for row in _kept(people)]
    injects = [
        InjectDraft(
            offset_seconds=row["offset_minutes"] * 60,
            title=row["title"],
            text=row["text"],
            roles=list(row["roles"]),
            mentions=row.get("mentions") or [],
        )
        for row in _kept(script)
    ]
    data = form.cleaned_data
    try:
        if exercise is None:
            return exercises.exercise_plan(
                playbook=data["playbook"],
                title=data["title"],
                brief=data["brief"],
                planned_start=data["planned_start"],
                facilitator=request.user,
                participants=participants,
                injects=injects,
            )
        return exercises.exercise_update(
            exercise=exercise,
            title=data["title"],
            brief=data["brief"],
            planned_start=data["planned_start"],
            participants=participants,
            injects=injects,
        )
    except ValidationError as exc:
        for key, errors in exc.message_dict.items():
            form.add_error(key if key in form.fields else None, errors)
        return None


def _wants_rows(request: HttpRequest) -> bool:
    return any(f"add_{p}" in request.POST for p in ("participants", "injects"))


@_reader
@require_http_methods(["GET", "POST"])
def exercise_new(request: HttpRequest) -> HttpResponse:
    """Plan an exercise. Choosing a playbook (GET ?playbook=) fills the script from the
    starter library; everything stays editable before the start."""
    if not request.user.has_perm(PLAN_PERM):
        raise PermissionDenied
    chosen = request.GET.get("playbook", "")
    playbook = (
        ExercisePlanForm.base_fields["playbook"].queryset.filter(pk=chosen).first()
        if chosen.isdigit()
        else None
    )
    initial = (
        {"playbook": playbook, "title": _("Exercise: %(t)s") % {"t": playbook.title}}
        if playbook
        else {}
    )
    form, people, script = _forms(
        request,
        initial=initial,
        participants=[],
        injects=_library_initial(playbook) if playbook else [],
    )
    if (
        request.method == "POST"
        and not _wants_rows(request)
        and all(x.is_valid() for x in (form, people, script))
    ):
        exercise = _save(request, form, people, script, exercise=None)
        if exercise is not None:
            messages.success(request, _("Exercise planned."))
            return redirect("warroom:exercise", pk=exercise.pk)
    return render(
        request,
        "warroom/exercise_plan.html",
        {"form": form, "people": people, "script": script, "exercise": None, "chosen": playbook},
    )


@_reader
@require_http_methods(["GET", "POST"])
def exercise_edit(request: HttpRequest, pk: int) -> HttpResponse:
    exercise = _runner(request, pk)
    if exercise.status != Exercise.Status.PLANNED:
        messages.warning(request, _("The exercise has started: its script can no longer change."))
        return redirect("warroom:exercise", pk=exercise.pk)
    form, people, script = _forms(
        request,
        initial={
            "playbook": exercise.playbook,
            "title": exercise.title,
            "brief": exercise.brief,
            "planned_start": exercise.planned_start,
        },
        participants=[
            {"user": p.user, "role": p.role}
            for p in exercise.participants.select_related("user", "role")
        ],
        injects=[
            {
                "offset_minutes": i.offset_seconds // 60,
                "title": i.title,
                "text": i.text,
                "roles": list(i.roles.all()),
                "mentions": i.mentions,
            }
            for i in exercise.injects.prefetch_related("roles").order_by("position")
        ],
    )
    form.fields["playbook"].disabled = True
    if (
        request.method == "POST"
        and not _wants_rows(request)
        and all(x.is_valid() for x in (form, people, script))
        and _save(request, form, people, script, exercise=exercise) is not None
    ):
        messages.success(request, _("Exercise saved."))
        return redirect("warroom:exercise", pk=exercise.pk)
    return render(
        request,
        "warroom/exercise_plan.html",
        {"form": form, "people": people, "script": script, "exercise": exercise},
    )


# ------------------------------------------------------------------ the exercise page


@dataclass
class Activity:
    """What one participant has done on the drill incident."""

    participant: object
    entries: int = 0
    acknowledged: bool = False
    messages: int = 0
    answer: str = ""
    last_at: datetime | None = None
    kinds: dict = field(default_factory=dict)


def _activity(exercise: Exercise) -> list[Activity]:
    """Per participant: timeline entries in their name (by kind), whether they
    acknowledged, messages they drafted, their roll-call answer; four queries."""
    parts = list(exercise.participants.select_related("user", "role"))
    rows = {p.user_id: Activity(p) for p in parts}
    if exercise.incident_id is None:
        return list(rows.values())
    labels = dict(TimelineEntry.Kind.choices)
    for actor, kind, n, last in (
        TimelineEntry.objects.filter(incident_id=exercise.incident_id, actor_id__in=rows)
        .values_list("actor_id", "kind")
        .annotate(n=Count("pk"), last=Max("at"))
        .order_by()
    ):
        row = rows[actor]
        row.entries += n
        row.kinds[str(labels.get(kind, kind))] = n
        row.acknowledged |= kind == TimelineEntry.Kind.ACKNOWLEDGED
        row.last_at = max(filter(None, (row.last_at, last)))
    for author, n in (
        Message.objects.filter(incident_id=exercise.incident_id, author_id__in=rows)
        .values_list("author_id")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        rows[author].messages = n
    for user_id, answer in RoleAssignment.objects.filter(
        incident_id=exercise.incident_id, user_id__in=rows, relieved_at__isnull=True
    ).values_list("user_id", "answer"):
        rows[user_id].answer = RoleAssignment.Answer(answer).label
    return list(rows.values())


@_reader
def exercise_page(request: HttpRequest, pk: int) -> HttpResponse:
    exercise = _visible(request, pk)
    now = timezone.now()
    injects = list(
        exercise.injects.prefetch_related("roles").order_by("offset_seconds", "position")
    )
    for inject in injects:
        inject.due = exercise.due_at(inject)
    elapsed = exercise.elapsed(now)
    return render(
        request,
        "warroom/exercise.html",
        {
            "exercise": exercise,
            "now": now,
            "elapsed_seconds": int(elapsed.total_seconds()),
            # The wall-clock time the exercise clock counts from (for the ticking script).
            "clock_from": now - elapsed,
            "injects": injects,
            "activity": _activity(exercise),
            "may_run": exercise_may_run(request.user, exercise),
            "end_form": ExerciseEndForm(),
        },
    )


ACTIONS = ("start", "pause", "resume", "end")


def _action_labels() -> dict[str, tuple[str, str]]:
    return {
        "start": (
            _("Start the exercise"),
            _(
                "Start now? A drill incident opens from the playbook, the participants are "
                "called in to their roles by e-mail, and the injects run on the clock."
            ),
        ),
        "pause": (_("Pause"), ""),
        "resume": (_("Resume"), ""),
        "end": (
            _("End the exercise"),
            _("End now? Injects not fired yet are cancelled and the drill incident is resolved."),
        ),
    }


@_reader
@require_http_methods(["GET", "POST"])
def exercise_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Start and end ask for confirmation on a page of their own; pause and resume act."""
    if action not in ACTIONS:
        raise Http404
    exercise = _runner(request, pk)
    confirm = action in ("start", "end")
    form = ExerciseEndForm(request.POST or None) if action == "end" else None
    if request.method == "GET" and not confirm:
        return redirect("warroom:exercise", pk=exercise.pk)
    confirmed = request.method == "POST" and (not confirm or "confirmed" in request.POST)
    if confirmed and (form is None or form.is_valid()):
        user = request.user
        try:
            if action == "start":
                exercises.exercise_start(exercise=exercise, actor=user)
                messages.success(request, _("The exercise has started."))
            elif action == "pause":
                exercises.exercise_pause(exercise=exercise, actor=user)
                messages.success(request, _("Paused: the clock and the injects wait."))
            elif action == "resume":
                exercises.exercise_resume(exercise=exercise, actor=user)
                messages.success(request, _("Resumed: the injects still to come move on."))
            else:
                exercises.exercise_end(exercise=exercise, actor=user, **form.cleaned_data)
                messages.success(request, _("The exercise has ended."))
        except ValidationError as exc:
            messages.warning(request, " ".join(exc.messages))
        return redirect("warroom:exercise", pk=exercise.pk)
    label, question = _action_labels()[action]
    return render(
        request,
        "warroom/exercise_confirm.html",
        {
            "exercise": exercise,
            "action": action,
            "label": label,
            "question": question,
            "form": form,
        },
    )


@_reader
@require_POST
def inject_fire(request: HttpRequest, pk: int, inject_id: int) -> HttpResponse:
    exercise = _runner(request, pk)
    inject = get_object_or_404(Inject, pk=inject_id, exercise=exercise)
    try:
        fired = exercises.exercise_fire_early(exercise=exercise, inject=inject, actor=request.user)
    except ValidationError as exc:
        messages.warning(request, " ".join(exc.messages))
    else:
        if fired:
            messages.success(request, _("Fired: “%(t)s”.") % {"t": inject.title})
        else:
            messages.warning(request, _("“%(t)s” had fired already.") % {"t": inject.title})
    return redirect(reverse("warroom:exercise", args=[exercise.pk]) + "#injects")
