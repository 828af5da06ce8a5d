"""Communications: drafting from templates, one-voice approval, sending, publishing, correcting.

Every step is a service with its actor and time on the incident's timeline.
The rules a crisis team relies on live here and only here:
- facts an incident cannot supply stay visibly marked and block approval;
- a message is one statement with a variant per language its audience needs;
  facts the team typed belong to one language and are never pasted into
  another: a variant without them in its own language is marked *not
  translated* and blocks approval until it is written or its language dropped;
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
from collections import Counter
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from crisisdesk.timefmt import format_when
from incidents import dispatch, notify, selectors, statuscache, timers
from incidents.models import (
    Incident,
    Message,
    MessageRevision,
    Notification,
    RoleAssignment,
    SendRun,
    TimelineEntry,
    Timer,
)
from incidents.timeline import actor_name, timeline_add
from playbooks.models import Channel, CrisisRole, MessageTemplate, Stakeholder, StakeholderGroup

MISSING = "[[missing: {name}]]"
NOT_TRANSLATED = "[[not translated: {name}]]"
PER_RECIPIENT = ("recipient_name",)
AUTHOR_FACTS = ("what_happened", "what_we_do", "what_you_can_do", "affected")
# Facts a person typed, in one language: the author's facts and the incident's title.
# In a variant of another language they are never filled with these words.
LANGUAGE_BOUND = (*AUTHOR_FACTS, "incident_title")
# What a variant written from scratch (or a correction's) holds until someone writes it.
WHOLE_TEXT = "message"


def _stamp(value: datetime | None) -> str | None:
    """A moment for many readers in many zones: in UTC, written as the active language
    writes dates."""
    return format_when(value, "UTC") if value else None


def _moments(incident: Incident, audience: StakeholderGroup | None) -> dict[str, datetime | None]:
    """The times a message can state: detection, opening, now and the next update due."""
    now = timezone.now()
    every = None
    if audience is not None and incident.playbook_id:
        cadence = incident.playbook.cadences.filter(audience=audience).first()
        every = cadence.every_minutes if cadence else None
    return {
        "detected_at": incident.detected_at,
        "opened_at": incident.opened_at,
        "now": now,
        "next_update_at": now + timedelta(minutes=every) if every else None,
    }


def incident_facts(
    *,
    incident: Incident,
    audience: StakeholderGroup | None = None,
    facts: dict | None = None,
    moments: dict[str, datetime | None] | None = None,
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
    values: dict[str, str | None] = {
        "company": settings.COMPANY_NAME,
        # A public audience (the status page, subscribers) reads the public title,
        # never the internal one.
        "incident_title": (
            incident.public_heading if audience is not None and audience.public else incident.title
        ),
        "incident_reference": incident.reference,
        "severity": incident.severity_label,
        **{
            name: _stamp(moment)
            for name, moment in (moments or _moments(incident, audience)).items()
        },
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


def fill(text: str, values: dict[str, str | None], *, untranslated: frozenset = frozenset()) -> str:
    """Fill {placeholders}; unknown facts become a visible marker; per-recipient ones stay.

    ``untranslated``: facts known only in another language, marked *not translated*.
    """
    out = []
    for literal, field, _spec, _conv in string.Formatter().parse(text):
        out.append(literal)
        if field is None:
            continue
        if field in PER_RECIPIENT:
            out.append("{" + field + "}")
        elif field in untranslated:
            out.append(NOT_TRANSLATED.format(name=field))
        elif values.get(field):
            out.append(str(values[field]))
        else:
            out.append(MISSING.format(name=field))
    return "".join(out)


def personalise(text: str, name: str) -> str:
    """The one placeholder left after drafting: the greeting, filled per recipient at sending."""
    return text.replace("{recipient_name}", name)


def markers_in(text: str, marker: str = MISSING) -> list[str]:
    """The facts still marked (missing, or with ``NOT_TRANSLATED`` not translated) in one
    text, in order, each once."""
    opening = marker.split("{", 1)[0]
    found: list[str] = []
    start = 0
    while (i := (text or "").find(opening, start)) >= 0:
        end = text.find("]]", i)
        if end < 0:
            break
        name = text[i + len(opening) : end]
        if name not in found:
            found.append(name)
        start = end
    return found


def untranslated_facts(message: Message) -> dict[str, list[str]]:
    """Per variant language, the facts not yet written in it: each blocks approval."""
    out = {}
    for code, variant in sorted(message.translations.items()):
        names = []
        for text in (variant.get("subject", ""), variant.get("body", "")):
            names += [n for n in markers_in(text, NOT_TRANSLATED) if n not in names]
        if names:
            out[code] = names
    return out


def audience_languages(audience: StakeholderGroup) -> list[str]:
    """The languages an audience needs: the group's default first, then every other
    language its contacts read, each once."""
    needed = [audience.default_language]
    own = (
        Stakeholder.objects.filter(group=audience)
        .exclude(language="")
        .values_list("language", flat=True)
        .distinct()
        .order_by("language")
    )
    needed += [code for code in own if code not in needed]
    return needed


def language_sent(message: Message, wanted: str) -> str:
    """The variant a contact reading ``wanted`` gets: their own language when the message
    has it, else the group's default language when it has that, else the main text's."""
    have = {message.language, *message.translations}
    if wanted in have:
        return wanted
    if message.audience.default_language in have:
        return message.audience.default_language
    return message.language


def language_name(code: str) -> str:
    return str(dict(settings.LANGUAGES).get(code, code))


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


def message_words_validate(
    *, subject: str, language: str | None = None, body: str = "", field: str = ""
) -> None:
    """What the message table holds: a language the desk speaks, a subject and a body that
    fit. ``field`` prefixes the error keys (a variant's: "translations.hu.")."""
    errors = {}
    if language is not None and language not in {code for code, _name in settings.LANGUAGES}:
        errors[field + "language"] = _("“%(value)s” is not one of: %(known)s.") % {
            "value": language,
            "known": ", ".join(code for code, _name in settings.LANGUAGES),
        }
    for name, value, limit in (
        ("subject", subject, Message._meta.get_field("subject").max_length),
        ("body", body, Message.BODY_MAX),
    ):
        if len(value or "") > limit:
            errors[field + name] = _("At most %(n)s characters (this has %(got)s).") % {
                "n": limit,
                "got": len(value),
            }
    if errors:
        raise ValidationError(errors)


def _in_language(
    values: dict[str, str | None],
    moments: dict[str, datetime | None],
    incident: Incident,
    code: str,
) -> dict:
    """The incident's facts as a variant in ``code`` says them: the severity's name, and
    dates as that language writes them."""
    with translation.override(code):
        stamps = {name: _stamp(moment) for name, moment in moments.items()}
        return {**values, **stamps, "severity": str(incident.severity_label)}


def _variants_from_templates(
    *,
    template: MessageTemplate,
    values: dict[str, str | None],
    moments: dict[str, datetime | None],
    incident: Incident,
    needed: list[str],
    facts_by_language: dict[str, dict],
) -> dict[str, dict]:
    """The same template in each other language the audience needs, filled; the facts the
    team typed in the main language are marked not translated, never pasted in."""
    typed = {name for name in LANGUAGE_BOUND if values.get(name)}
    variants = {}
    siblings = MessageTemplate.objects.filter(
        playbook_id=template.playbook_id,
        name=template.name,
        audience_id=template.audience_id,
        channel=template.channel,
        language__in=needed,
    ).exclude(language=template.language)
    for sibling in siblings.order_by("language"):
        own = {
            k: (v or "").strip() or None
            for k, v in facts_by_language.get(sibling.language, {}).items()
        }
        local = {
            **_in_language(values, moments, incident, sibling.language),
            **{k: v for k, v in own.items() if v},
        }
        untranslated = frozenset(name for name in typed if not own.get(name))
        filled = fill(sibling.body, local, untranslated=untranslated)
        variants[sibling.language] = {
            "subject": fill(sibling.subject, local, untranslated=untranslated),
            "body": filled,
            "filled": filled,
        }
    return variants


def _unwritten(subject: str = "") -> dict:
    """A variant nobody has written yet: it blocks approval until written or dropped."""
    return {"subject": subject, "body": NOT_TRANSLATED.format(name=WHOLE_TEXT), "filled": ""}


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
    facts_by_language: dict[str, dict] | None = None,
    subject: str = "",
    body: str = "",
    corrects: Message | None = None,
    is_public: bool | None = None,
    languages: list[str] | None = None,
) -> Message:
    """Draft a message, from a template (filled from the incident) or from scratch.

    The message gets a variant for every language its audience needs
    (``audience_languages``). From a template, each is the same template in that
    language, filled; the facts typed for this message (``facts``, the incident's
    summary and title) are in the template's language, so in the others they are
    marked not translated unless ``facts_by_language`` gives them. Written from
    scratch (or a correction), every other variant starts unwritten. A language
    with no template gets no variant: its contacts read the group's default.
    ``languages`` overrides the audience's: a reply to one comment is written in the
    commenter's language only.
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
    facts_by_language = facts_by_language or {}
    try:
        message_words_validate(subject=subject, language=language, body=body)
        for code in facts_by_language:
            message_words_validate(subject="", language=code)
    except ValidationError as exc:
        errors.update({field: messages[0] for field, messages in exc.message_dict.items()})
    if errors:
        raise ValidationError(errors)
    needed = languages or audience_languages(audience)
    filled_template = ""
    dropped: list[str] = []
    if template is not None:
        moments = _moments(incident, audience)
        values = incident_facts(incident=incident, audience=audience, facts=facts, moments=moments)
        language = template.language
        main = _in_language(values, moments, incident, language)
        subject = fill(template.subject, main)
        body = fill(template.body, main)
        filled_template = body
        message_words_validate(subject=subject)
        translations = _variants_from_templates(
            template=template,
            values=values,
            moments=moments,
            incident=incident,
            needed=needed,
            facts_by_language=facts_by_language,
        )
    else:
        if corrects is not None:
            # A correction reaches each reader in the language the original did: its
            # variants, to be written anew; its dropped languages stay dropped.
            dropped = list(corrects.dropped_languages)
            translations = {
                code: _unwritten(variant.get("subject", ""))
                for code, variant in corrects.translations.items()
                if code != language
            }
        else:
            translations = {code: _unwritten() for code in needed if code != language}
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
        dropped_languages=dropped,
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
    _log(
        message,
        author,
        text,
        corrects=corrects.pk if corrects else None,
        languages=[language, *sorted(translations)],
    )
    return message


@transaction.atomic
def message_language_drop(*, message: Message, language: str, actor: AbstractBaseUser) -> Message:
    """Take a language out of a draft on purpose: its contacts get the group's default."""
    message = _locked(message)
    if message.status not in Message.EDITABLE:
        raise ValidationError(_("Only a draft or a message in review can change its languages."))
    if language in (message.audience.default_language, message.language):
        raise ValidationError(
            {
                "language": _(
                    "%(lang)s is the main text or the default language of %(group)s: whoever "
                    "has no variant of their own reads it, so it cannot be dropped."
                )
                % {"lang": language_name(language), "group": message.audience.name}
            }
        )
    if language not in message.translations:
        raise ValidationError(
            {"language": _("This message has no variant in “%(code)s”.") % {"code": language}}
        )
    message.translations = {k: v for k, v in message.translations.items() if k != language}
    message.dropped_languages = sorted({*message.dropped_languages, language})
    if message.status == Message.Status.IN_REVIEW:
        message.status = Message.Status.DRAFT
    message.save()
    fallback = language_sent(message, language)
    _log(
        message,
        actor,
        _(
            "%(who)s dropped %(lang)s from %(m)s: its contacts in %(lang)s get the "
            "%(fallback)s text."
        )
        % {
            "who": actor_name(actor),
            "lang": language_name(language),
            "m": _label(message),
            "fallback": language_name(fallback),
        },
        dropped=language,
        fallback=fallback,
    )
    return message


@transaction.atomic
def message_language_add(*, message: Message, language: str, actor: AbstractBaseUser) -> Message:
    """Give a draft a variant in one more language (a dropped one back, or any the desk
    speaks): the playbook's template in that language when there is one, else unwritten."""
    message_words_validate(subject="", language=language)
    message = _locked(message)
    if message.status not in Message.EDITABLE:
        raise ValidationError(_("Only a draft or a message in review can change its languages."))
    if language == message.language or language in message.translations:
        raise ValidationError(
            {
                "language": _("This message already has a variant in “%(code)s”.")
                % {"code": language}
            }
        )
    variant = _unwritten()
    if message.template_id is not None:
        moments = _moments(message.incident, message.audience)
        values = incident_facts(
            incident=message.incident, audience=message.audience, moments=moments
        )
        variant = _variants_from_templates(
            template=message.template,
            values=values,
            moments=moments,
            incident=message.incident,
            needed=[language],
            facts_by_language={},
        ).get(language, variant)
    message.translations = {**message.translations, language: variant}
    message.dropped_languages = [c for c in message.dropped_languages if c != language]
    if message.status == Message.Status.IN_REVIEW:
        message.status = Message.Status.DRAFT
    message.save()
    _log(
        message,
        actor,
        _("%(who)s added a %(lang)s variant to %(m)s.")
        % {"who": actor_name(actor), "lang": language_name(language), "m": _label(message)},
        added=language,
    )
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


def _variants_edited(message: Message, translations: dict) -> dict:
    """The variants after an edit: only languages the message has, each with a subject and
    a body that fit; languages not named stay as they were."""
    if not isinstance(translations, dict):
        raise ValidationError(
            {"translations": _("Give the variants as {language: {subject, body}}.")}
        )
    merged = dict(message.translations)
    errors = {}
    for code, words in translations.items():
        field = f"translations.{code}."
        if code not in message.translations:
            errors[f"translations.{code}"] = _(
                "This message has no variant in “%(code)s”: add the language first."
            ) % {"code": code}
            continue
        if not isinstance(words, dict):
            errors[f"translations.{code}"] = _("Give a subject and a body.")
            continue
        subject, body = str(words.get("subject", "")), str(words.get("body", ""))
        if not body.strip():
            errors[field + "body"] = _(
                "A variant needs a body; to send this language nothing, drop it."
            )
        try:
            message_words_validate(subject=subject, body=body, field=field)
        except ValidationError as exc:
            errors.update({k: v[0] for k, v in exc.message_dict.items()})
        merged[code] = {**message.translations[code], "subject": subject, "body": body}
    if errors:
        raise ValidationError(errors)
    return merged


@transaction.atomic
def message_edit(
    *,
    message: Message,
    editor: AbstractBaseUser,
    subject: str,
    body: str,
    translations: dict | None = None,
) -> Message:
    """Change a draft's words, in any of its languages; the previous words are kept as a
    revision, and a message in review goes back to draft: every variant is approved anew."""
    message = _locked(message)
    if message.status not in Message.EDITABLE:
        raise ValidationError(_("Only a draft or a message in review can be edited."))
    if not (body or "").strip():
        raise ValidationError({"body": _("A message needs a body.")})
    message_words_validate(subject=subject, body=body)
    merged = (
        _variants_edited(message, translations)
        if translations is not None
        else message.translations
    )
    if subject == message.subject and body == message.body and merged == message.translations:
        return message
    MessageRevision.objects.create(
        message=message,
        editor=editor,
        subject=message.subject,
        body=message.body,
        translations=message.translations,
    )
    changed = [code for code in merged if merged[code] != message.translations.get(code)]
    if subject != message.subject or body != message.body:
        changed.insert(0, message.language)
    message.subject, message.body = subject, body
    message.translations = merged
    if message.status == Message.Status.IN_REVIEW:
        message.status = Message.Status.DRAFT  # changed words need a fresh review
    message.save()
    _log(
        message,
        editor,
        _("%(who)s edited %(m)s (%(langs)s).")
        % {"who": actor_name(editor), "m": _label(message), "langs": ", ".join(changed)},
        languages=changed,
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
    untranslated = untranslated_facts(message)
    if untranslated:
        raise ValidationError(
            _(
                "Facts not translated: %(where)s. Write them in that language, or drop the "
                "language (its contacts then get the group's default)."
            )
            % {
                "where": "; ".join(
                    f"{language_name(code)} ({', '.join(names)})"
                    for code, names in untranslated.items()
                )
            }
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
    if message.channel == Channel.REPLY:
        return  # an answer to one comment: neither the statement nor an audience's update
    _statement_made(message, now, actor)
    _cadence_restart(message, now)
    if selectors.public_statements().filter(pk=message.pk).exists():
        statuscache.status_changed()  # a statement or a correction on the status page


def message_variant(message: Message, wanted: str) -> tuple[str, str, str]:
    """(language, subject, body) of the text a reader of ``wanted`` gets (``language_sent``)."""
    language = language_sent(message, wanted)
    if language != message.language:
        variant = message.translations[language]
        return language, variant["subject"], variant["body"]
    return message.language, message.subject, message.body


# Contacts per outbox batch: each batch is one transaction, so memory stays bounded
# whatever the audience's size.
FANOUT_BATCH = 1000


def _send_contacts(message: Message):
    """The contacts a message is e-mailed to: its audience's, with an address; a
    status-page subscriber only if they subscribed to everything or to this incident."""
    contacts = Stakeholder.objects.filter(group_id=message.audience_id).exclude(email="")
    if message.audience.kind == StakeholderGroup.Kind.SUBSCRIBERS:
        contacts = contacts.filter(
            Q(subscriptions__incident__isnull=True) | Q(subscriptions__incident=message.incident)
        ).distinct()
    return contacts


@transaction.atomic
def message_send(
    *, message: Message, actor: AbstractBaseUser | None, now: datetime | None = None
) -> int:
    """E-mail an approved message to every contact of its audience, each in their language.

    One outbox row per contact (dedupe key message + contact), so a retried
    send writes nobody twice. The rows are written in batches of
    ``FANOUT_BATCH`` contacts (``message_fanout``): the first batch here, the
    rest by a worker after commit, so memory stays bounded whatever the
    audience's size; delivery goes to the workers in chunks as each batch
    commits. Only the audience's own contacts are written to: a confidential
    incident's message never goes anywhere else. A drill's message reaches none
    of them: each e-mail goes to the drill mailbox
    (settings.CRISISDESK_DRILL_MAILBOX), marked [DRILL] and naming the contact
    it stands for. Every sending path (now, scheduled, a correction, the admin,
    the API, the war room) comes here. Returns the number of contacts.
    """
    now = now or timezone.now()
    message = _locked(message)
    if message.status != Message.Status.APPROVED:
        raise ValidationError(_("Only an approved message can be sent."))
    if message.channel != Channel.EMAIL:
        raise ValidationError(_("Only e-mail messages are sent; mark others published."))
    contacts = _send_contacts(message)
    last = contacts.order_by("-pk").values_list("pk", flat=True).first()
    if last is None:
        raise ValidationError(
            _("%(group)s has no contacts with an e-mail address.")
            % {"group": message.audience.name}
        )
    # Who reads which language, in one grouped query: the timeline says which
    # variants went to how many contacts, and which languages got another's.
    counts: Counter = Counter()
    fallbacks: dict[str, str] = {}  # a language the message lacks -> the one sent instead
    by_language = (
        Stakeholder.objects.filter(pk__in=contacts.values("pk"))
        .values_list("language")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for own, n in by_language:
        wanted = own or message.audience.default_language
        language = language_sent(message, wanted)
        counts[language] += n
        if language != wanted:
            fallbacks.setdefault(wanted, language)
    total = sum(counts.values())
    drill = message.incident.drill
    message.status = Message.Status.SENT
    message.sent_at = now
    message.sent_by = actor
    message.save()
    SendRun.objects.create(message=message, total=total, until_contact=last, started_at=now)
    languages = sorted(counts)
    _log(
        message,
        actor,
        (
            _(
                "Drill: %(who)s sent %(m)s to the drill mailbox, one copy for each of "
                "%(n)s contacts (%(langs)s); no contact received it."
            )
            if drill
            else _("%(who)s sent %(m)s to %(n)s contacts (%(langs)s).")
        )
        % {
            "who": actor_name(actor) if actor else _("CrisisDesk (scheduled)"),
            "m": _label(message),
            "n": total,
            "langs": ", ".join(languages),
        },
        recipients=total,
        languages=dict(counts),
        fallbacks=fallbacks,
        drill=drill,
    )
    _went_out(message, actor, now)
    if not _fanout_batch(message.pk, now=now):
        dispatch.fanout_on_commit(message.pk)
    return total


def message_fanout(*, message_id: int) -> str:
    """Write a sent message's outbox rows, batch after batch, each in its own
    transaction; safe to run twice or after a crash (it resumes at the last contact
    id recorded). Run by a worker (incidents/tasks.py), re-queued by the sweep if
    it stopped."""
    batches = 0
    while not _fanout_batch(message_id):
        batches += 1
    return f"message {message_id}: outbox written ({batches} batches)"


def _rendered(message: Message, wanted: str, cache: dict) -> tuple[str, str, str, str, str]:
    """(language, subject, body, footer, greeting) of a reader of ``wanted``; the parts
    every contact of that language shares, rendered once per batch. ``greeting``
    replaces the contact's name where the audience gave none but an address."""
    if wanted not in cache:
        language, subject, body = message_variant(message, wanted)
        footer = greeting = ""
        if message.audience.kind == StakeholderGroup.Kind.SUBSCRIBERS:
            with translation.override(language):
                footer = _(
                    "You receive this because you subscribed on the status page of "
                    "%(company)s. Unsubscribe: %(url)s"
                )
                # A subscriber's only name is their address: greeted neutrally, in
                # their language, never by the address.
                greeting = pgettext("greeting of a status-page subscriber", "subscriber")
        cache[wanted] = (language, subject, body, footer, greeting)
    return cache[wanted]


@transaction.atomic
def _fanout_batch(message_id: int, *, now: datetime | None = None) -> bool:
    """Write the outbox rows of the next ``FANOUT_BATCH`` contacts; True when every
    contact has its row. The send run's row is locked, so two fan-outs of one
    message take turns; the dedupe key makes a repeated batch write nobody twice."""
    now = now or timezone.now()
    run = SendRun.objects.select_for_update().filter(message_id=message_id).first()
    if run is None or run.finished_at is not None:
        return True
    message = Message.objects.select_related("incident", "audience").get(pk=message_id)
    contacts = list(
        _send_contacts(message)
        .filter(pk__gt=run.after_contact, pk__lte=run.until_contact)
        .select_related("group")
        .order_by("pk")[:FANOUT_BATCH]
    )
    drill = message.incident.drill
    cache: dict = {}
    rows = []
    for contact in contacts:
        language, subject, body, footer, greeting = _rendered(
            message, contact.effective_language, cache
        )
        name = greeting or contact.name
        subject, body = personalise(subject, name), personalise(body, name)
        to = contact.email
        if drill:
            # A drill never reaches the outside world: the drill mailbox gets each e-mail.
            to = settings.CRISISDESK_DRILL_MAILBOX
            subject = f"[{_('DRILL')}] {subject}"
            body = (
                _("DRILL: not sent to %(who)s <%(email)s>; this copy went to the drill mailbox.")
                % {"who": contact.name, "email": contact.email}
                + "\n\n"
                + body
            )
        elif footer:
            body += "\n\n-- \n" + footer % {
                "company": settings.COMPANY_NAME,
                "url": notify.unsubscribe_url(contact),
            }
        rows.append(
            Notification(
                incident=message.incident,
                comms_message=message,
                contact=contact,
                to_email=to,
                reason="message",
                dedupe_key=f"msg:{message.pk}:{contact.pk}",
                message_id=Notification.new_message_id(),
                subject=subject[:400],
                body_text=body,
                language=language,
                created_at=now,
                enqueued_at=now,
            )
        )
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
    keys = [n.dedupe_key for n in rows]
    ids = list(
        Notification.objects.filter(dedupe_key__in=keys, status=Notification.Status.QUEUED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    done = len(contacts) < FANOUT_BATCH
    run.written += len(contacts)
    run.total = max(run.total, run.written)
    run.after_contact = run.until_contact if done else contacts[-1].pk
    run.progress_at = now
    run.finished_at = now if done else None
    run.save()
    dispatch.deliver_chunks_on_commit(ids)
    return done


@transaction.atomic
def message_publish(
    *,
    message: Message,
    actor: AbstractBaseUser,
    where: str,
    now: datetime | None = None,
    as_reply: bool = False,
) -> Message:
    """Record that an approved non-e-mail message was published: where, when, by whom.

    A reply to a public comment is published from its comment (``as_reply``, the
    listening inbox), which records the reply's address and settles its deadline."""
    now = now or timezone.now()
    message = _locked(message)
    if message.status != Message.Status.APPROVED:
        raise ValidationError(_("Only an approved message can be published."))
    if message.channel == Channel.REPLY and not as_reply:
        raise ValidationError(
            _("A reply is published from its comment in the inbox, with the reply's address.")
        )
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
