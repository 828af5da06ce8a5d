"""Exercises: rehearsing a playbook with a script of timed injects.

An exercise is planned from a published playbook version (prefilled with the
starter library's injects for it, playbooks/starter/injects.yaml), edited while
planned, then run:

1. ``exercise_start`` opens a *drill* incident from the playbook through
   ``services.incident_open`` (without calling in the real on-call people),
   hands each participant their role through ``services.role_assign``, and writes
   one ``Timer`` of kind ``inject`` per inject, due at the start plus its offset.
   From there the timer engine fires them (incidents/escalation.py,
   ``_fire_inject``): never lost (the sweep), never doubled (the claim).
2. ``exercise_pause`` cancels the pending inject timers; ``exercise_resume`` writes
   them again, shifted by the time paused (the exercise clock stood still).
3. ``exercise_fire_early`` makes an inject's timer due now and fires it; the claim
   means it cannot fire again.
4. ``exercise_end`` cancels what is still pending, resolves the drill incident, and
   (when the facilitator says the exercise counts as a review) marks the playbook
   reviewed.

A drill e-mails only its participants: ``notify.drill_people_ids`` is asked by
every e-mail to a person. Locks: the incident row, then the exercise row (the
engine's order, incidents/escalation.py). Every service here is one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from incidents import escalation, services, timers
from incidents.models import (
    EXERCISE_MAX_PARTICIPANTS,
    MAX_INJECT_OFFSET_SECONDS,
    MAX_INJECTS,
    Exercise,
    ExerciseParticipant,
    Incident,
    Inject,
    TimelineEntry,
    Timer,
)
from incidents.timeline import actor_name, timeline_add
from playbooks import services as playbook_services
from playbooks.models import CrisisRole, Playbook
from playbooks.seed import starter_injects


@dataclass(frozen=True)
class InjectDraft:
    """One inject as a form, the API or the library gives it, before it is written."""

    offset_seconds: int
    title: str
    text: str
    roles: Sequence[CrisisRole] = ()
    # Sample public comments for the listening inbox (Inject.mentions' shape).
    mentions: list = field(default_factory=list)


def library_injects(playbook: Playbook) -> list[InjectDraft]:
    """The starter library's injects for this playbook's key, roles found by slug."""
    items = starter_injects(playbook.key)
    slugs = {slug for item in items for slug in item["roles"]}
    roles = {r.slug: r for r in CrisisRole.objects.filter(slug__in=slugs)}
    return [
        InjectDraft(
            offset_seconds=item["offset_minutes"] * 60,
            title=item["title"],
            text=item["text"],
            roles=[roles[s] for s in item["roles"] if s in roles],
            mentions=[dict(m) for m in item.get("mentions", [])],
        )
        for item in items
    ]


def _check_plan(
    *,
    title: str,
    playbook: Playbook | None,
    participants: Sequence[tuple[AbstractBaseUser, CrisisRole]],
    injects: Sequence[InjectDraft],
) -> None:
    errors: dict[str, list[str]] = {}
    if not (title or "").strip():
        errors.setdefault("title", []).append(_("An exercise needs a title."))
    if playbook is None or playbook.status != Playbook.Status.PUBLISHED:
        errors.setdefault("playbook", []).append(
            _("Only a published playbook version can be exercised.")
        )
    if not participants:
        errors.setdefault("participants", []).append(_("An exercise needs participants."))
    if len(participants) > EXERCISE_MAX_PARTICIPANTS:
        errors.setdefault("participants", []).append(
            _("At most %(n)s participants.") % {"n": EXERCISE_MAX_PARTICIPANTS}
        )
    users = [u.pk for u, _r in participants]
    roles = [r.pk for _u, r in participants]
    if len(set(users)) != len(users):
        errors.setdefault("participants", []).append(_("Each person takes part once."))
    if len(set(roles)) != len(roles):
        errors.setdefault("participants", []).append(_("Each role is played by one person."))
    for user, _role in participants:
        if not user.is_active:
            errors.setdefault("participants", []).append(
                _("%(who)s cannot sign in: choose someone else.") % {"who": actor_name(user)}
            )
    if len(injects) > MAX_INJECTS:
        errors.setdefault("injects", []).append(_("At most %(n)s injects.") % {"n": MAX_INJECTS})
    for position, draft in enumerate(injects, start=1):
        if not 0 <= draft.offset_seconds <= MAX_INJECT_OFFSET_SECONDS:
            errors.setdefault("injects", []).append(
                _("Inject %(n)s: the offset is 0 to 24 hours from the start.") % {"n": position}
            )
        inject = Inject(
            position=position,
            offset_seconds=max(0, draft.offset_seconds),
            title=(draft.title or "").strip(),
            text=(draft.text or "").strip(),
            mentions=draft.mentions,
        )
        try:
            inject.clean_fields(exclude=["exercise", "offset_seconds"])
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                for message in messages:
                    errors.setdefault("injects", []).append(
                        _("Inject %(n)s, %(field)s: %(problem)s")
                        % {
                            "n": position,
                            "field": Inject._meta.get_field(name).verbose_name,
                            "problem": message,
                        }
                    )
    if errors:
        raise ValidationError(errors)


def _write_script(
    exercise: Exercise,
    participants: Iterable[tuple[AbstractBaseUser, CrisisRole]],
    injects: Sequence[InjectDraft],
) -> None:
    ExerciseParticipant.objects.bulk_create(
        ExerciseParticipant(exercise=exercise, user=user, role=role) for user, role in participants
    )
    for position, draft in enumerate(injects, start=1):
        inject = Inject.objects.create(
            exercise=exercise,
            position=position,
            offset_seconds=draft.offset_seconds,
            title=draft.title.strip(),
            text=draft.text.strip(),
            mentions=list(draft.mentions),
        )
        if draft.roles:
            inject.roles.set(draft.roles)


@transaction.atomic
def exercise_plan(
    *,
    playbook: Playbook,
    title: str,
    facilitator: AbstractBaseUser,
    participants: Sequence[tuple[AbstractBaseUser, CrisisRole]],
    brief: str = "",
    planned_start: datetime | None = None,
    injects: Sequence[InjectDraft] | None = None,
) -> Exercise:
    """Plan an exercise; without ``injects``, the starter library's for its playbook."""
    if injects is None and playbook is not None:
        injects = library_injects(playbook)
    injects = list(injects or [])
    _check_plan(title=title, playbook=playbook, participants=participants, injects=injects)
    exercise = Exercise(
        playbook=playbook,
        title=title.strip(),
        brief=(brief or "").strip(),
        planned_start=planned_start,
        facilitator=facilitator,
    )
    exercise.full_clean(exclude=["incident"])
    exercise.save()
    _write_script(exercise, participants, injects)
    return exercise


def _locked(exercise: Exercise) -> Exercise:
    """Lock the drill incident (if any), then the exercise: the engine's lock order."""
    if exercise.incident_id is not None:
        Incident.objects.select_for_update().filter(pk=exercise.incident_id).first()
    locked = Exercise.objects.select_for_update().get(pk=exercise.pk)
    if locked.incident_id is not None and exercise.incident_id is None:
        # Started meanwhile: take the incident's lock too, in order.
        Incident.objects.select_for_update().filter(pk=locked.incident_id).first()
    return locked


def _refuse(exercise: Exercise, *allowed: str) -> None:
    if exercise.status not in allowed:
        raise ValidationError(
            _("The exercise is %(status)s: that is not possible now.")
            % {"status": exercise.get_status_display().lower()}
        )


@transaction.atomic
def exercise_update(
    *,
    exercise: Exercise,
    title: str,
    participants: Sequence[tuple[AbstractBaseUser, CrisisRole]],
    injects: Sequence[InjectDraft],
    brief: str = "",
    planned_start: datetime | None = None,
) -> Exercise:
    """Edit a planned exercise: its words, participants and script are replaced whole."""
    exercise = _locked(exercise)
    _refuse(exercise, Exercise.Status.PLANNED)
    injects = list(injects)
    _check_plan(title=title, playbook=exercise.playbook, participants=participants, injects=injects)
    exercise.title, exercise.brief = title.strip(), (brief or "").strip()
    exercise.planned_start = planned_start
    exercise.full_clean(exclude=["incident"])
    exercise.save()
    exercise.participants.all().delete()
    exercise.injects.all().delete()
    _write_script(exercise, participants, injects)
    return exercise


def _inject_timers(exercise: Exercise, *, now: datetime) -> list[Timer]:
    """A pending timer for each inject not fired yet, due on the exercise clock."""
    pending = [
        Timer(
            incident_id=exercise.incident_id,
            kind=Timer.Kind.INJECT,
            inject=inject,
            due_at=exercise.due_at(inject),
        )
        for inject in exercise.injects.filter(fired_at__isnull=True).order_by("position")
    ]
    created = Timer.objects.bulk_create(pending)
    timers.enqueue_on_commit(created)
    return created


def _note(exercise: Exercise, actor, text: str, *, now: datetime, step: str) -> None:
    timeline_add(
        incident=exercise.incident,
        kind=TimelineEntry.Kind.NOTE,
        actor=actor,
        at=now,
        text=text,
        data={"exercise_id": exercise.pk, "exercise": step},
    )


@transaction.atomic
def exercise_start(
    *, exercise: Exercise, actor: AbstractBaseUser, now: datetime | None = None
) -> Exercise:
    now = now or timezone.now()
    exercise = _locked(exercise)
    _refuse(exercise, Exercise.Status.PLANNED)
    incident = services.incident_open(
        title=exercise.title,
        summary=exercise.brief,
        severity=2,
        playbook=exercise.playbook,
        drill=True,
        actor=actor,
        now=now,
        assign_on_call=False,
    )
    exercise.incident = incident
    exercise.status = Exercise.Status.RUNNING
    exercise.started_at = now
    exercise.save(update_fields=["incident", "status", "started_at"])
    # Linked first: the activation e-mails of role_assign check the drill's people.
    for part in exercise.participants.select_related("user", "role"):
        services.role_assign(
            incident=incident, role=part.role, user=part.user, actor=actor, now=now
        )
    _note(
        exercise,
        actor,
        _("%(who)s started the exercise “%(title)s” (%(n)s injects).")
        % {"who": actor_name(actor), "title": exercise.title, "n": exercise.injects.count()},
        now=now,
        step="started",
    )
    _inject_timers(exercise, now=now)
    return exercise


@transaction.atomic
def exercise_pause(
    *, exercise: Exercise, actor: AbstractBaseUser, now: datetime | None = None
) -> Exercise:
    """Stop the clock: the pending injects wait (their timers are cancelled)."""
    now = now or timezone.now()
    exercise = _locked(exercise)
    _refuse(exercise, Exercise.Status.RUNNING)
    exercise.status, exercise.paused_at = Exercise.Status.PAUSED, now
    exercise.save(update_fields=["status", "paused_at"])
    timers.cancel_pending(incident=exercise.incident, kinds=[Timer.Kind.INJECT], now=now)
    _note(
        exercise,
        actor,
        _("%(who)s paused the exercise.") % {"who": actor_name(actor)},
        now=now,
        step="paused",
    )
    return exercise


def _pause_over(exercise: Exercise, now: datetime) -> None:
    paused = max(timedelta(0), now - exercise.paused_at)
    exercise.paused_seconds += round(paused.total_seconds())
    exercise.paused_at = None


@transaction.atomic
def exercise_resume(
    *, exercise: Exercise, actor: AbstractBaseUser, now: datetime | None = None
) -> Exercise:
    """Start the clock again: every inject not fired is due later by the time paused."""
    now = now or timezone.now()
    exercise = _locked(exercise)
    _refuse(exercise, Exercise.Status.PAUSED)
    _pause_over(exercise, now)
    exercise.status = Exercise.Status.RUNNING
    exercise.save(update_fields=["status", "paused_at", "paused_seconds"])
    _note(
        exercise,
        actor,
        _("%(who)s resumed the exercise.") % {"who": actor_name(actor)},
        now=now,
        step="resumed",
    )
    _inject_timers(exercise, now=now)
    return exercise


def exercise_fire_early(
    *, exercise: Exercise, inject: Inject, actor: AbstractBaseUser, now: datetime | None = None
) -> bool:
    """Fire an inject now, before its time. False if it had fired already.

    Its pending timer is made due now (or, while paused, one is written due now) and
    fired through the engine in the next transaction: the claim means neither this
    nor a message already at the broker can fire it a second time.
    """
    with transaction.atomic():
        now = now or timezone.now()
        exercise = _locked(exercise)
        _refuse(exercise, Exercise.Status.RUNNING, Exercise.Status.PAUSED)
        inject = Inject.objects.get(pk=inject.pk, exercise=exercise)
        if inject.fired_at is not None:
            return False
        timer = Timer.objects.filter(inject=inject, state=Timer.State.PENDING).first()
        if timer is None:
            timer = Timer.objects.create(
                incident_id=exercise.incident_id, kind=Timer.Kind.INJECT, inject=inject, due_at=now
            )
        else:
            Timer.objects.filter(pk=timer.pk, state=Timer.State.PENDING).update(
                due_at=now, enqueued_at=None
            )
        _note(
            exercise,
            actor,
            _("%(who)s fired inject %(n)s early: “%(title)s”.")
            % {"who": actor_name(actor), "n": inject.position, "title": inject.title},
            now=now,
            step="fired_early",
        )
    escalation.timer_fire(timer_id=timer.pk, now=max(now, timezone.now()))
    return True


@transaction.atomic
def exercise_end(
    *,
    exercise: Exercise,
    actor: AbstractBaseUser,
    observations: str = "",
    counts_as_review: bool = False,
    now: datetime | None = None,
) -> Exercise:
    """End it: pending injects cancelled, the drill incident resolved, and the playbook
    marked reviewed when the facilitator says the exercise counts as its review."""
    now = now or timezone.now()
    exercise = _locked(exercise)
    _refuse(exercise, Exercise.Status.RUNNING, Exercise.Status.PAUSED)
    if exercise.status == Exercise.Status.PAUSED:
        _pause_over(exercise, now)
    exercise.status, exercise.ended_at = Exercise.Status.ENDED, now
    exercise.observations = (observations or "").strip()
    exercise.counts_as_review = counts_as_review
    exercise.full_clean(exclude=["incident", "playbook", "facilitator"])
    exercise.save()
    incident = exercise.incident
    timers.cancel_pending(incident=incident, kinds=[Timer.Kind.INJECT], now=now)
    _note(
        exercise,
        actor,
        _("%(who)s ended the exercise.") % {"who": actor_name(actor)},
        now=now,
        step="ended",
    )
    incident.refresh_from_db()
    if incident.is_active:
        services.incident_resolve(incident=incident, actor=actor, summary=_("Exercise ended."))
    if counts_as_review:
        playbook_services.playbook_mark_reviewed(playbook=exercise.playbook, on=now.date())
    return exercise
