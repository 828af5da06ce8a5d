"""Writes for preparedness. The admin, the API, commands and tasks all call these."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from playbooks.models import (
    MAX_RISK_REVIEW_DAYS,
    EscalationLevel,
    MessageTemplate,
    Playbook,
    PlaybookStep,
    ReviewReminder,
    Risk,
    UpdateCadence,
)
from playbooks.people import person_locale
from playbooks.selectors import playbooks_review_due, risks_review_due

# What a person may set on a playbook version; version, status and times are the services'.
PLAYBOOK_FIELDS = (
    "key",
    "title",
    "scenario",
    "summary",
    "severity_guidance",
    "owner",
    "review_cycle_days",
    "last_reviewed_on",
    "first_statement_minutes",
    "escalation_repeat_count",
    "page_at_once_max_severity",
    "roll_call_minutes",
    "reply_minutes",
    "reply_warn_minutes",
    "reply_deadlines",
)

# A draft's content: changed only through playbook_content_save/delete.
PlaybookContent = PlaybookStep | MessageTemplate | EscalationLevel | UpdateCadence


def playbook_ensure_editable(playbook: Playbook) -> None:
    """Refuse changes to a published or retired version: incidents may be running it."""
    if playbook.is_frozen:
        raise ValidationError(
            _(
                "Version %(version)s of “%(title)s” is %(status)s and cannot be changed; "
                "make a new version instead."
            )
            % {
                "version": playbook.version,
                "title": playbook.title,
                "status": playbook.get_status_display().lower(),
            }
        )


def _only_playbook_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(data) - set(PLAYBOOK_FIELDS)
    if unknown:
        raise TypeError(f"not playbook fields: {', '.join(sorted(unknown))}")
    return dict(data)


def playbook_check_new_key(*, key: str) -> None:
    if Playbook.objects.filter(key=key).exists():
        raise ValidationError({"key": _("This playbook exists: make a new version of it instead.")})


@transaction.atomic
def playbook_create(*, data: Mapping[str, Any]) -> Playbook:
    """Version 1 of a new key, as a draft."""
    fields = _only_playbook_fields(data)
    playbook_check_new_key(key=fields.get("key", ""))
    playbook = Playbook(**fields, version=1, status=Playbook.Status.DRAFT)
    playbook.full_clean()
    playbook.save()
    return playbook


def playbook_check_update(*, playbook: Playbook, data: Mapping[str, Any]) -> None:
    """The rules of changing a version, read from the database: a frozen one refuses."""
    playbook_ensure_editable(Playbook.objects.get(pk=playbook.pk))
    if "key" in data and data["key"] != Playbook.objects.values_list("key", flat=True).get(
        pk=playbook.pk
    ):
        raise ValidationError({"key": _("A playbook's key never changes.")})


@transaction.atomic
def playbook_update(*, playbook: Playbook, data: Mapping[str, Any]) -> Playbook:
    fields = _only_playbook_fields(data)
    current = Playbook.objects.select_for_update().get(pk=playbook.pk)
    playbook_check_update(playbook=current, data=fields)
    for name, value in fields.items():
        setattr(current, name, value)
    current.full_clean()
    current.save()
    return current


@transaction.atomic
def playbook_delete(*, playbook: Playbook) -> None:
    current = Playbook.objects.select_for_update().get(pk=playbook.pk)
    playbook_ensure_editable(current)
    if current.incidents.exists():
        raise ValidationError(_("Incidents ran this version; it stays."))
    current.delete()


def escalation_positions_validate(positions: Iterable[int]) -> None:
    """Levels are numbered 1..n: the e-mails say "level 3" for what the playbook calls 3."""
    got = sorted(positions)
    if got != list(range(1, len(got) + 1)):
        raise ValidationError(
            {
                "position": _(
                    "Escalation levels are numbered 1, 2, 3… with no gap or repeat: "
                    "expected %(expected)s, got %(got)s."
                )
                % {
                    "expected": ", ".join(str(n) for n in range(1, len(got) + 1)),
                    "got": ", ".join(map(str, got)),
                }
            }
        )


@transaction.atomic
def playbook_content_save(
    *, instance: PlaybookContent, users: Iterable[AbstractBaseUser] | None = None
) -> PlaybookContent:
    """Add or change a step, template, escalation level or cadence of a draft version.

    ``users`` (escalation levels only) replaces the level's named users when given.
    """
    playbook = Playbook.objects.select_for_update().get(pk=instance.playbook_id)
    playbook_ensure_editable(playbook)
    if instance.pk is not None:
        before = type(instance).objects.select_related("playbook").get(pk=instance.pk)
        playbook_ensure_editable(before.playbook)
        if before.playbook_id != instance.playbook_id:
            raise ValidationError(
                {"playbook": _("Content stays with its playbook version: add it to the other.")}
            )
    if isinstance(instance, EscalationLevel) and isinstance(instance.position, int):
        others = EscalationLevel.objects.filter(playbook=playbook).exclude(pk=instance.pk)
        escalation_positions_validate(
            [*others.values_list("position", flat=True), instance.position]
        )
    instance.full_clean()
    instance.save()
    if users is not None and isinstance(instance, EscalationLevel):
        instance.users.set(users)
    return instance


@transaction.atomic
def playbook_content_delete(*, instance: PlaybookContent, renumber: bool = True) -> None:
    """Remove content from a draft. Later escalation levels move up, unless the caller
    (the admin, which checked the whole new numbering) says not to."""
    playbook = Playbook.objects.select_for_update().get(pk=instance.playbook_id)
    playbook_ensure_editable(playbook)
    position = getattr(instance, "position", None)
    instance.delete()
    if renumber and isinstance(instance, EscalationLevel):
        later = EscalationLevel.objects.filter(playbook=playbook, position__gt=position)
        # One row at a time, lowest first: each target number is already free.
        for level_id, n in later.order_by("position").values_list("pk", "position"):
            EscalationLevel.objects.filter(pk=level_id).update(position=n - 1)


@transaction.atomic
def playbook_new_version(*, playbook: Playbook, actor: AbstractBaseUser | None = None) -> Playbook:
    """Copy a playbook, with its steps, templates, levels and cadences, into a new draft.

    The source version is left exactly as it was. If a draft of the same key
    already exists it is returned instead of making a second one.
    """
    existing = Playbook.objects.filter(key=playbook.key, status=Playbook.Status.DRAFT).first()
    if existing is not None:
        return existing
    latest = Playbook.objects.filter(key=playbook.key).aggregate(v=Max("version"))["v"] or 0
    source_id = playbook.pk
    source = Playbook.objects.get(pk=source_id)
    draft = Playbook.objects.get(pk=source_id)
    draft.pk = None
    draft.id = None
    draft.version = latest + 1
    draft.status = Playbook.Status.DRAFT
    draft.published_at = None
    draft.created_at = timezone.now()
    if actor is not None and draft.owner_id is None:
        draft.owner = actor
    draft.save()

    PlaybookStep.objects.bulk_create(
        PlaybookStep(
            playbook=draft,
            position=s.position,
            phase=s.phase,
            title=s.title,
            instructions=s.instructions,
            role_id=s.role_id,
            due_offset_minutes=s.due_offset_minutes,
        )
        for s in source.steps.all()
    )
    MessageTemplate.objects.bulk_create(
        MessageTemplate(
            playbook=draft,
            name=t.name,
            audience_id=t.audience_id,
            channel=t.channel,
            language=t.language,
            subject=t.subject,
            body=t.body,
        )
        for t in source.templates.all()
    )
    for level in source.escalation_levels.prefetch_related("users"):
        copy = EscalationLevel.objects.create(
            playbook=draft,
            position=level.position,
            delay_seconds=level.delay_seconds,
            target=level.target,
            role_id=level.role_id,
            rotation_id=level.rotation_id,
        )
        copy.users.set(level.users.all())
    UpdateCadence.objects.bulk_create(
        UpdateCadence(playbook=draft, audience_id=c.audience_id, every_minutes=c.every_minutes)
        for c in source.cadences.all()
    )
    return draft


PUBLISH_RULES = (
    "A draft can be published when it has at least one step, at least one escalation "
    "level, every escalation level that pages named users names at least one, and "
    "every message template uses only known {placeholders}. Publishing retires the "
    "version published before (unchanged). A refusal is a 400 keyed by what is "
    "missing: `steps`, `escalation_levels`, `templates`."
)


def playbook_validate_for_publishing(playbook: Playbook) -> None:
    """A playbook an incident can run (PUBLISH_RULES); errors keyed by what is wrong."""
    errors: dict[str, list[str]] = {}
    if not playbook.steps.exists():
        errors.setdefault("steps", []).append(_("It has no steps."))
    if not playbook.escalation_levels.exists():
        errors.setdefault("escalation_levels", []).append(
            _("It has no escalation level: nobody would be paged.")
        )
    for template in playbook.templates.all():
        try:
            template.clean()
        except ValidationError as exc:
            errors.setdefault("templates", []).append(
                _("Template “%(name)s”: %(error)s")
                % {"name": template.name, "error": "; ".join(exc.messages)}
            )
    for level in playbook.escalation_levels.all():
        if level.target == EscalationLevel.Target.USERS and not level.users.exists():
            errors.setdefault("escalation_levels", []).append(
                _("Escalation level %(n)s names no users.") % {"n": level.position}
            )
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def playbook_publish(*, playbook: Playbook, actor: AbstractBaseUser | None = None) -> Playbook:
    """Publish a draft; the previously published version of the same key is retired.

    The old version's rows are untouched apart from its status, so incidents
    running it keep every step and template they started with.
    """
    # Lock the key's versions so two publishers cannot both retire and publish.
    versions = list(Playbook.objects.select_for_update().filter(key=playbook.key))
    playbook = next(p for p in versions if p.pk == playbook.pk)
    if playbook.status != Playbook.Status.DRAFT:
        raise ValidationError(_("Only a draft can be published."))
    playbook_validate_for_publishing(playbook)
    now = timezone.now()
    Playbook.objects.filter(key=playbook.key, status=Playbook.Status.PUBLISHED).update(
        status=Playbook.Status.RETIRED, updated_at=now
    )
    playbook.status = Playbook.Status.PUBLISHED
    playbook.published_at = now
    if playbook.last_reviewed_on is None:
        playbook.last_reviewed_on = timezone.localdate()
    playbook.save(update_fields=["status", "published_at", "last_reviewed_on", "updated_at"])
    return playbook


@transaction.atomic
def playbook_retire(*, playbook: Playbook) -> Playbook:
    if playbook.status == Playbook.Status.RETIRED:
        return playbook
    playbook.status = Playbook.Status.RETIRED
    if playbook.published_at is None:
        playbook.published_at = timezone.now()
    playbook.save(update_fields=["status", "published_at", "updated_at"])
    return playbook


def playbook_mark_reviewed(*, playbook: Playbook, on: date | None = None) -> Playbook:
    """Record a review. Allowed on any version: reviewing changes no content."""
    playbook.last_reviewed_on = on or timezone.localdate()
    playbook.save(update_fields=["last_reviewed_on", "updated_at"])
    return playbook


def risk_mark_reviewed(*, risk: Risk, next_review_in_days: int = 90) -> Risk:
    if not 1 <= next_review_in_days <= MAX_RISK_REVIEW_DAYS:
        raise ValidationError(
            {
                "next_review_in_days": _("The next review is 1 to %(n)s days away.")
                % {"n": MAX_RISK_REVIEW_DAYS}
            }
        )
    risk.next_review_on = timezone.localdate() + timedelta(days=next_review_in_days)
    risk.save(update_fields=["next_review_on", "updated_at"])
    return risk


def review_reminders_send(*, today: date | None = None) -> int:
    """E-mail each owner one digest of the playbooks and risks whose review is overdue,
    at most once a week (Monday to Sunday) each.

    1. Collect overdue items per owner (items without an owner go to superusers,
       so nothing goes stale unseen).
    2. Skip a person already reminded this week; otherwise claim today's
       ReviewReminder row: a second run the same day (two schedulers, a retried
       task) finds it taken and sends nothing.
    3. Send in the person's language; if sending fails the claim is rolled back
       so the next run tries again.
    Returns how many people were e-mailed.
    """
    today = today or timezone.localdate()
    fallback = list(get_user_model().objects.filter(is_superuser=True, is_active=True))
    due: dict[int, dict] = {}

    def add(owner, kind: str, item) -> None:
        for person in [owner] if owner is not None and owner.is_active else fallback:
            entry = due.setdefault(person.pk, {"user": person, "playbooks": [], "risks": []})
            entry[kind].append(item)

    for playbook in playbooks_review_due(today=today):
        add(playbook.owner, "playbooks", playbook)
    for risk in risks_review_due(today=today):
        add(risk.owner, "risks", risk)

    week_start = today - timedelta(days=today.weekday())
    reminded = set(
        ReviewReminder.objects.filter(
            user_id__in=due, sent_on__gte=week_start, sent_on__lte=today
        ).values_list("user_id", flat=True)
    )
    sent = 0
    for entry in due.values():
        user = entry["user"]
        if not user.email or user.pk in reminded:
            continue
        try:
            with transaction.atomic():
                count = len(entry["playbooks"]) + len(entry["risks"])
                ReviewReminder.objects.create(user=user, sent_on=today, items=count)
                context = {**entry, "count": count, "today": today, "site_url": settings.SITE_URL}
                # In the owner's own language (their profile), else the desk's.
                with translation.override(person_locale(user)[0]):
                    subject = render_to_string("email/review_reminder_subject.txt", context)
                    text = render_to_string("email/review_reminder.txt", context)
                message = EmailMultiAlternatives(
                    subject=" ".join(subject.split()), body=text, to=[user.email]
                )
                message.send()
        except IntegrityError:
            continue  # another run reminded them today
        sent += 1
    return sent
