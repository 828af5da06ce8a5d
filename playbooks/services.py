"""Writes for preparedness. The admin, the API, commands and tasks all call these."""

from __future__ import annotations

from datetime import date, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from playbooks.models import (
    MAX_RISK_REVIEW_DAYS,
    EscalationLevel,
    MessageTemplate,
    Playbook,
    PlaybookStep,
    Risk,
    UpdateCadence,
)


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


def playbook_validate_for_publishing(playbook: Playbook) -> None:
    """A playbook an incident can run: steps, at least one escalation level, valid templates."""
    errors = []
    if not playbook.steps.exists():
        errors.append(_("It has no steps."))
    if not playbook.escalation_levels.exists():
        errors.append(_("It has no escalation level: nobody would be paged."))
    for template in playbook.templates.all():
        try:
            template.clean()
        except ValidationError as exc:
            errors.append(
                _("Template “%(name)s”: %(error)s")
                % {"name": template.name, "error": "; ".join(exc.messages)}
            )
    for level in playbook.escalation_levels.all():
        if level.target == EscalationLevel.Target.USERS and not level.users.exists():
            errors.append(_("Escalation level %(n)s names no users.") % {"n": level.position})
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
    """E-mail each owner the playbooks and risks whose review is overdue; once a day each.

    1. Collect overdue items per owner (items without an owner go to superusers,
       so nothing goes stale unseen).
    2. For each person, claim today's ReviewReminder row; a second run the same
       day finds it taken and sends nothing.
    3. Send in the person's language; if sending fails the claim is rolled back
       so the next run tries again.
    Returns how many people were e-mailed.
    """
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.mail import EmailMultiAlternatives
    from django.db import IntegrityError
    from django.template.loader import render_to_string
    from django.utils import translation

    from playbooks.models import ReviewReminder
    from playbooks.selectors import playbooks_review_due, risks_review_due

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

    sent = 0
    for entry in due.values():
        user = entry["user"]
        if not user.email:
            continue
        try:
            with transaction.atomic():
                count = len(entry["playbooks"]) + len(entry["risks"])
                ReviewReminder.objects.create(user=user, sent_on=today, items=count)
                context = {**entry, "count": count, "today": today, "site_url": settings.SITE_URL}
                with translation.override(settings.LANGUAGE_CODE):
                    subject = render_to_string("email/review_reminder_subject.txt", context)
                    text = render_to_string("email/review_reminder.txt", context)
                message = EmailMultiAlternatives(
                    subject=" ".join(subject.split()), body=text, to=[user.email]
                )
                message.send()
        except IntegrityError:
            continue  # already reminded today
        sent += 1
    return sent
