"""Communications: drafting from templates, one-voice approval, sending, publishing, correcting.

Every step is a service with its actor and time on the incident's timeline.
The rules a crisis team relies on live here and only here:
- facts an incident cannot supply stay visibly marked and block approval;
- a message sent unchanged from its template is flagged as boilerplate and
  needs a deliberate approval;
- approving needs the approval permission, and nobody approves their own
  message unless they are the crisis manager and say so; whoever may approve
  may instead return it to its author as a draft, with a comment;
- only approved messages go out; what went out is never changed, only
  corrected by a new message;
- the first public statement stamps the incident's milestone and settles the
  first-statement deadline; each message to an audience restarts its cadence.
"""

from __future__ import annotations

import string
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from incidents import dispatch, timers
from incidents.models import (
    Incident,
    Message,
    MessageRevision,
    Notification,
    RoleAssignment,
    TimelineEntry,
    Timer,
)
from incidents.timeline import actor_name, timeline_add
from playbooks.models import Channel, CrisisRole, MessageTemplate, StakeholderGroup

MISSING = "[[missing: {name}]]"
PER_RECIPIENT = ("recipient_name",)
AUTHOR_FACTS = ("what_happened", "what_we_do", "what_you_can_do", "affected")


def _stamp(value: datetime | None) -> str | None:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else None


def incident_facts(
    *, incident: Incident, audience: StakeholderGroup | None = None, facts: dict | None = None
) -> dict[str, str | None]:
    """What an incident can say about itself for templates; None where it cannot."""
    facts = {k: (v or "").strip() or None for k, v in (facts or {}).items()}
    spokesperson = (
        RoleAssignment.objects.filter(
            incident=incident, role__slug="spokesperson", relieved_at=None
        )
        .select_related("user")
        .first()
    )
    now = timezone.now()
    every = None
    if audience is not None and incident.playbook_id:
        cadence = incident.playbook.cadences.filter(audience=audience).first()
        every = cadence.every_minutes if cadence else None
    values: dict[str, str | None] = {
        "company": settings.COMPANY_NAME,
        "incident_title": incident.title,
        "incident_reference": incident.reference,
        "severity": incident.severity_label,
        "detected_at": _stamp(incident.detected_at),
        "opened_at": _stamp(incident.opened_at),
        "now": _stamp(now),
        "next_update_at": _stamp(now + timedelta(minutes=every)) if every else None,
        "spokesperson": actor_name(spokesperson.user) if spokesperson else None,
        "contact_channel": getattr(settings, "CRISISDESK_CONTACT_CHANNEL", None) or None,
        "status_page_url": getattr(settings, "CRISISDESK_STATUS_PAGE_URL", None) or None,
        "what_happened": incident.summary or None,
    }
    for name in AUTHOR_FACTS:
        if facts.get(name):
            values[name] = facts[name]
    for name, value in facts.items():
        if name in MessageTemplate.PLACEHOLDERS and value and name not in PER_RECIPIENT:
            values[name] = value
    return values


def fill(text: str, values: dict[str, str | None]) -> str:
    """Fill {placeholders}; unknown facts become a visible marker; per-recipient ones stay."""
    out = []
    for literal, field, _spec, _conv in string.Formatter().parse(text):
        out.append(literal)
        if field is None:
            continue
        if field in PER_RECIPIENT:
            out.append("{" + field + "}")
        elif values.get(field):
            out.append(str(values[field]))
        else:
            out.append(MISSING.format(name=field))
    return "".join(out)


def personalise(text: str, name: str) -> str:
    """The one placeholder left after drafting: the greeting, filled per recipient at sending."""
    return text.replace("{recipient_name}", name)


def markers_in(text: str) -> list[str]:
    """The facts still marked missing in one text, in order, each once."""
    found: list[str] = []
    start = 0
    while (i := (text or "").find("[[missing: ", start)) >= 0:
        end = text.find("]]", i)
        if end < 0:
            break
        name = text[i + len("[[missing: ") : end]
        if name not in found:
            found.append(name)
        start = end
    return found


def missing_facts(message: Message) -> list[str]:
    texts = [message.subject, message.body]
    for variant in message.translations.values():
        texts += [variant.get("subject", ""), variant.get("body", "")]
    found: list[str] = []
    for text in texts:
        found += [name for name in markers_in(text) if name not in found]
    return found


def _log(message: Message, actor, text: str, **data) -> None:
    timeline_add(
        incident=message.incident,
        kind=TimelineEntry.Kind.MESSAGE,
        actor=actor,
        text=text,
        data={"message_id": message.pk, "status": message.status, **data},
    )


def _label(message: Message) -> str:
    return _("“%(subject)s” to %(audience)s (%(channel)s)") % {
        "subject": message.subject or message.body[:40],
        "audience": message.audience.name,
        "channel": message.get_channel_display(),
    }


@transaction.atomic
def message_words_validate(*, subject: str, language: str | None = None) -> None:
    """What the message table holds: a language the desk speaks, a subject that fits."""
    errors = {}
    if language is not None and language not in {code for code, _name in settings.LANGUAGES}:
        errors["language"] = _("“%(value)s” is not one of: %(known)s.") % {
            "value": language,
            "known": ", ".join(code for code, _name in settings.LANGUAGES),
        }
    limit = Message._meta.get_field("subject").max_length
    if len(subject or "") > limit:
        errors["subject"] = _("At most %(n)s characters (this has %(got)s).") % {
            "n": limit,
            "got": len(subject),
        }
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def message_draft(
    *,
    incident: Incident,
    author: AbstractBaseUser,
    audience: StakeholderGroup,
    channel: str,
    language: str = "en",
    template: MessageTemplate | None = None,
    facts: dict | None = None,
    subject: str = "",
    body: str = "",
    corrects: Message | None = None,
    is_public: bool | None = None,
) -> Message:
    """Draft a message, from a template (filled from the incident) or from scratch.

    With a template, the same template in every other language the playbook
    has is filled too, so an e-mail reaches each contact in their language.
    """
    errors = {}
    if channel not in Channel.values:
        errors["channel"] = _("Unknown channel.")
    if template is None and not (body or "").strip():
        errors["body"] = _("Write the message or choose a template.")
    if corrects is not None and (corrects.incident_id != incident.pk or not corrects.is_final):
        errors["corrects"] = _(
            "Only a sent or published message of this incident can be corrected."
        )
    try:
        message_words_validate(subject=subject, language=language)
    except ValidationError as exc:
        errors.update({field: messages[0] for field, messages in exc.message_dict.items()})
    if errors:
        raise ValidationError(errors)
    translations = {}
    filled_template = ""
    if template is not None:
        values = incident_facts(incident=incident, audience=audience, facts=facts)
        subject = fill(template.subject, values)
        body = fill(template.body, values)
        filled_template = body
        language = template.language
        message_words_validate(subject=subject)
        siblings = MessageTemplate.objects.filter(
            playbook_id=template.playbook_id, name=template.name
        )
        for sibling in siblings.exclude(pk=template.pk):
            translations[sibling.language] = {
                "subject": fill(sibling.subject, values),
                "body": fill(sibling.body, values),
                "filled": fill(sibling.body, values),
            }
    if is_public is None:
        is_public = audience.kind != StakeholderGroup.Kind.EMPLOYEES and channel != Channel.INTERNAL
    message = Message.objects.create(
        incident=incident,
        audience=audience,
        channel=channel,
        language=language,
        template=template,
        subject=subject,
        body=body,
        filled_template=filled_template,
        translations=translations,
        author=author,
        corrects=corrects,
        is_public=is_public,
    )
    text = _("%(who)s drafted %(m)s.") % {"who": actor_name(author), "m": _label(message)}
    if corrects is not None:
        text = _("%(who)s drafted a correction of message #%(id)s: %(m)s.") % {
            "who": actor_name(author),
            "id": corrects.pk,
            "m": _label(message),
        }
    _log(message, author, text, corrects=corrects.pk if corrects else None)
    return message


def _locked(message: Message) -> Message:
    """Lock the message's incident, then the message: the engine's one lock order
    (incidents/escalation.py). A scheduled send fires holding the incident lock, so
    locking the message first here could deadlock with it on PostgreSQL."""
    Incident.objects.select_for_update().get(pk=message.incident_id)
    return (
        Message.objects.select_for_update()
        .select_related("incident", "audience")
        .get(pk=message.pk)
    )


@transaction.atomic
def message_edit(
    *,
    message: Message,
    editor: AbstractBaseUser,
    subject: str,
    body: str,
    translations: dict | None = None,
) -> Message:
    """Change a draft's words; the previous words are kept as a revision."""
    message = _locked(message)
    if message.status not in Message.EDITABLE:
        raise ValidationError(_("Only a draft or a message in review can be edited."))
    if not (body or "").strip():
        raise ValidationError({"body": _("A message needs a body.")})
    message_words_validate(subject=subject)
    if subject == message.subject and body == message.body and translations is None:
        return message
    MessageRevision.objects.create(
        message=message, editor=editor, subject=message.subject, body=message.body
    )
    message.subject, message.body = subject, body
    if translations is not None:
        message.translations = translations
    if message.status == Message.Status.IN_REVIEW:
        message.status = Message.Status.DRAFT  # changed words need a fresh review
    message.save()
    _log(
        message,
        editor,
        _("%(who)s edited %(m)s.") % {"who": actor_name(editor), "m": _label(message)},
    )
    return message


@transaction.atomic
def message_submit(*, message: Message, actor: AbstractBaseUser) -> Message:
    message = _locked(message)
    if message.status != Message.Status.DRAFT:
        raise ValidationError(_("Only a draft can be submitted for review."))
    message.status = Message.Status.IN_REVIEW
    message.submitted_at = timezone.now()
    message.save()
    _log(
        message,
        actor,
        _("%(who)s submitted %(m)s for approval.")
        % {"who": actor_name(actor), "m": _label(message)},
    )
    return message


def can_approve(user: AbstractBaseUser) -> bool:
    """Approval needs its own permission: the approve permission, or a role that approves."""
    if not user.is_active:
        return False
    if user.has_perm("incidents.approve_message"):
        return True
    return CrisisRole.objects.filter(holders=user, can_approve_messages=True).exists()


def is_crisis_manager(user) -> bool:
    """Holds the crisis-manager role: the one person who may approve their own message."""
    return CrisisRole.objects.filter(holders=user, slug="crisis-manager").exists()


@transaction.atomic
def message_approve(
    *,
    message: Message,
    approver: AbstractBaseUser,
    note: str = "",
    accept_boilerplate: bool = False,
    approve_own: bool = False,
) -> Message:
    message = _locked(message)
    if message.status != Message.Status.IN_REVIEW:
        raise ValidationError(_("Only a message in review can be approved."))
    if not can_approve(approver):
        raise PermissionDenied(
            _(
                "Approving messages needs the approval permission "
                "(communications lead, legal counsel or crisis manager)."
            )
        )
    if message.author_id == approver.pk and not (approve_own and is_crisis_manager(approver)):
        raise PermissionDenied(
            _("Nobody approves their own message, unless they are the crisis manager and say so.")
        )
    missing = missing_facts(message)
    if missing:
        raise ValidationError(
            _("Fill in the missing facts first: %(names)s.") % {"names": ", ".join(missing)}
        )
    if message.reads_as_boilerplate and not accept_boilerplate:
        raise ValidationError(
            _(
                "This reads as boilerplate: it is the template unchanged. "
                "Make it specific, or approve it deliberately."
            )
        )
    message.status = Message.Status.APPROVED
    message.approver = approver
    message.approved_at = timezone.now()
    message.approval_note = note
    message.boilerplate_approved = message.reads_as_boilerplate
    message.save()
    extra = []
    if message.author_id == approver.pk:
        extra.append(_("own message, as crisis manager"))
    if message.boilerplate_approved:
        extra.append(_("unchanged from template, deliberately"))
    _log(
        message,
        approver,
        _("%(who)s approved %(m)s%(extra)s.")
        % {
            "who": actor_name(approver),
            "m": _label(message),
            "extra": f" ({'; '.join(extra)})" if extra else "",
        },
        boilerplate=message.boilerplate_approved,
    )
    return message


RETURN_COMMENT_MAX = 1000


@transaction.atomic
def message_return(*, message: Message, reviewer: AbstractBaseUser, comment: str) -> Message:
    """Send a message in review back to its author as a draft, saying what should change.

    Whoever may approve may return; the comment is required, kept on the timeline
    and shown to the author beside the draft until it is submitted again.
    """
    message = _locked(message)
    if message.status != Message.Status.IN_REVIEW:
        raise ValidationError(_("Only a message in review can be returned."))
    if not can_approve(reviewer):
        raise PermissionDenied(
            _(
                "Returning messages needs the approval permission "
                "(communications lead, legal counsel or crisis manager)."
            )
        )
    comment = (comment or "").strip()
    if not comment:
        raise ValidationError({"comment": _("Say what should change: a return needs a comment.")})
    if len(comment) > RETURN_COMMENT_MAX:
        raise ValidationError(
            {
                "comment": _("At most %(n)s characters (this has %(got)s).")
                % {"n": RETURN_COMMENT_MAX, "got": len(comment)}
            }
        )
    message.status = Message.Status.DRAFT
    message.save()
    _log(
        message,
        reviewer,
        _("%(who)s returned %(m)s to its author: “%(comment)s”")
        % {"who": actor_name(reviewer), "m": _label(message), "comment": comment},
        returned=True,
        comment=comment,
    )
    return message


def _statement_made(message: Message, now: datetime, actor) -> None:
    """The first public statement: stamp it, settle the deadline timers, record met or missed."""
    incident = Incident.objects.select_for_update().get(pk=message.incident_id)
    if not message.is_public or incident.first_statement_at is not None:
        return
    incident.first_statement_at = now
    incident.save(update_fields=["first_statement_at", "updated_at"])
    Timer.objects.filter(
        incident=incident,
        state=Timer.State.PENDING,
        kind__in=(Timer.Kind.FIRST_STATEMENT, Timer.Kind.STATEMENT_REMINDER),
    ).update(state=Timer.State.CANCELLED, outcome="first statement made")
    minutes = round((now - incident.opened_at).total_seconds() / 60, 1)
    met = minutes <= incident.first_statement_minutes
    TimelineEntry.objects.create(
        incident=incident,
        kind=TimelineEntry.Kind.DEADLINE,
        actor=actor,
        at=now,
        text=(
            _("First public statement out after %(m)s minutes: deadline met.")
            if met
            else _("First public statement out after %(m)s minutes: deadline missed.")
        )
        % {"m": minutes},
        data={
            "deadline": "first_statement",
            "met": met,
            "minutes": minutes,
            "message_id": message.pk,
        },
    )


def _cadence_restart(message: Message, now: datetime) -> None:
    incident = message.incident
    if not incident.is_active or incident.playbook_id is None:
        return
    cadence = incident.playbook.cadences.filter(audience_id=message.audience_id).first()
    if cadence is None:
        return
    Timer.objects.filter(
        incident=incident,
        kind=Timer.Kind.UPDATE_CADENCE,
        audience_id=message.audience_id,
        state=Timer.State.PENDING,
    ).update(state=Timer.State.CANCELLED, outcome="audience updated")
    timer = Timer.objects.create(
        incident=incident,
        kind=Timer.Kind.UPDATE_CADENCE,
        audience_id=message.audience_id,
        due_at=now + timedelta(minutes=cadence.every_minutes),
    )
    timers.enqueue_on_commit([timer])


def _went_out(message: Message, actor, now: datetime) -> None:
    _statement_made(message, now, actor)
    _cadence_restart(message, now)


def _variant(message: Message, language: str) -> tuple[str, str, str]:
    variant = message.translations.get(language)
    if language != message.language and variant:
        return language, variant["subject"], variant["body"]
    return message.language, message.subject, message.body


@transaction.atomic
def message_send(
    *, message: Message, actor: AbstractBaseUser | None, now: datetime | None = None
) -> int:
    """E-mail an approved message to every contact of its audience, each in their language.

    One outbox row per contact (dedupe key message + contact), so a retried
    send writes nobody twice; delivery fans out to the workers after commit.
    Only the audience's own contacts are written to: a confidential incident's
    message never goes anywhere else.
    """
    now = now or timezone.now()
    message = _locked(message)
    if message.status != Message.Status.APPROVED:
        raise ValidationError(_("Only an approved message can be sent."))
    if message.channel != Channel.EMAIL:
        raise ValidationError(_("Only e-mail messages are sent; mark others published."))
    contacts = list(message.audience.contacts.exclude(email="").select_related("group"))
    if not contacts:
        raise ValidationError(
            _("%(group)s has no contacts with an e-mail address.")
            % {"group": message.audience.name}
        )
    created = []
    for contact in contacts:
        language, subject, body = _variant(message, contact.effective_language)
        n = Notification(
            incident=message.incident,
            comms_message=message,
            contact=contact,
            to_email=contact.email,
            reason="message",
            dedupe_key=f"msg:{message.pk}:{contact.pk}",
            message_id=Notification.new_message_id(),
            subject=personalise(subject, contact.name)[:400],
            body_text=personalise(body, contact.name),
        )
        n.language = language
        created.append(n)
    Notification.objects.bulk_create(created, ignore_conflicts=True)
    ids = list(Notification.objects.filter(comms_message=message).values_list("pk", flat=True))
    message.status = Message.Status.SENT
    message.sent_at = now
    message.sent_by = actor
    message.save()
    languages = sorted({n.language for n in created})
    _log(
        message,
        actor,
        _("%(who)s sent %(m)s to %(n)s contacts (%(langs)s).")
        % {
            "who": actor_name(actor) if actor else _("CrisisDesk (scheduled)"),
            "m": _label(message),
            "n": len(created),
            "langs": ", ".join(languages),
        },
        recipients=len(created),
    )
    _went_out(message, actor, now)
    dispatch.deliver_on_commit(ids)
    return len(ids)


@transaction.atomic
def message_publish(
    *, message: Message, actor: AbstractBaseUser, where: str, now: datetime | None = None
) -> Message:
    """Record that an approved non-e-mail message was published: where, when, by whom."""
    now = now or timezone.now()
    message = _locked(message)
    if message.status != Message.Status.APPROVED:
        raise ValidationError(_("Only an approved message can be published."))
    if message.channel == Channel.EMAIL:
        raise ValidationError(_("E-mail messages are sent, not marked published."))
    if not (where or "").strip():
        raise ValidationError({"where": _("Say where it was published (address or note).")})
    message.status = Message.Status.PUBLISHED
    message.published_where = where.strip()[:500]
    message.sent_at = now
    message.sent_by = actor
    message.save()
    _log(
        message,
        actor,
        _("%(who)s published %(m)s at %(where)s.")
        % {"who": actor_name(actor), "m": _label(message), "where": message.published_where},
        where=message.published_where,
    )
    _went_out(message, actor, now)
    return message


@transaction.atomic
def message_schedule(*, message: Message, actor: AbstractBaseUser, at: datetime) -> Timer:
    """Send an approved e-mail at a set time, through the timer engine."""
    message = _locked(message)
    if message.status != Message.Status.APPROVED or message.channel != Channel.EMAIL:
        raise ValidationError(_("Only an approved e-mail message can be scheduled."))
    if at <= timezone.now():
        raise ValidationError({"at": _("Choose a time in the future.")})
    Timer.objects.filter(message=message, state=Timer.State.PENDING).update(
        state=Timer.State.CANCELLED, outcome="rescheduled"
    )
    message.scheduled_for = at
    message.save()
    timer = Timer.objects.create(
        incident=message.incident, kind=Timer.Kind.MESSAGE_SEND, due_at=at, message=message
    )
    timers.enqueue_on_commit([timer])
    _log(
        message,
        actor,
        _("%(who)s scheduled %(m)s for %(at)s.")
        % {"who": actor_name(actor), "m": _label(message), "at": _stamp(at)},
    )
    return timer


def message_correct(
    *, original: Message, author: AbstractBaseUser, body: str, subject: str = ""
) -> Message:
    """A correction: a new message to the same audience and channel that points at the original."""
    return message_draft(
        incident=original.incident,
        author=author,
        audience=original.audience,
        channel=original.channel,
        language=original.language,
        subject=subject or original.subject,
        body=body,
        corrects=original,
        is_public=original.is_public,
    )
