"""The triage inbox: every public comment answered, in one voice, within the hour.

Writes only; the reads are in ``selectors``. A mention moves through these states,
each change by a service with its actor and time (and on its incident's timeline
when it has one); nothing is ever deleted:

    new ──> needs a reply ──> replied
     │           │
     ├──> no reply needed (spam, duplicate, positive and thanked...)
     └──> dismissed (a false positive, with the reason); both can be reopened.

1. *Needs a reply* ties the comment to an incident (a reply is a message of an
   incident) and sets its deadline: the incident's playbook version says how many
   minutes per channel and severity (``Playbook.reply_minutes_for``), counted from
   when the comment arrived. Two timers go with it, in the same transaction: a
   warning to the communications lead (and the assignee) ``reply_warn_minutes``
   before, and the escalation at the deadline to the crisis manager and the
   communications lead. Marking it otherwise cancels them.
2. The reply is a ``Message`` on the channel ``reply``, drafted from the playbook's
   reply template in the comment's language and approved like any message
   (incidents/comms.py: the one-voice approval, the boilerplate flag). Publishing it
   here records where (the reply's address, or by e-mail) and when, settles the
   deadline (met or missed, on the timeline) and cancels the timers.
3. The timers fire through the engine (incidents/escalation.py); ``reply_timer_fire``
   is their handler, registered from ``apps.ListeningConfig.ready``. It re-checks the
   comment: one already answered or no longer needing a reply tells nobody.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from incidents import comms, notify, timers
from incidents.listening.models import Mention, MentionChannel
from incidents.models import Incident, Message, TimelineEntry, Timer
from incidents.selectors import incidents_visible_to
from incidents.timeline import actor_name, timeline_add
from playbooks.models import (
    DEFAULT_REPLY_MINUTES,
    DEFAULT_REPLY_WARN_MINUTES,
    Channel,
    MessageTemplate,
    StakeholderGroup,
)

WARN_ROLES = ("communications-lead",)
ESCALATE_ROLES = ("crisis-manager", "communications-lead")
NOTE_MAX = 300


def _locked(mention: Mention) -> Mention:
    """Lock the mention's incident (when it has one), then the mention: the engine's lock
    order (incident first), so a reply timer firing and a triage racing are ordered."""
    if mention.incident_id:
        Incident.objects.select_for_update().get(pk=mention.incident_id)
    # of=("self",): PostgreSQL cannot lock the nullable side of the outer joins.
    return (
        Mention.objects.select_for_update(of=("self",))
        .select_related("incident", "source", "reply")
        .get(pk=mention.pk)
    )


def _note(mention: Mention, actor, text: str, now: datetime, **data) -> None:
    if mention.incident_id is None:
        return
    timeline_add(
        incident=mention.incident,
        kind=TimelineEntry.Kind.NOTE,
        actor=actor,
        text=text,
        at=now,
        data={"mention_id": mention.pk, "state": mention.state, **data},
    )


def _timers_cancel(mention: Mention, outcome: str) -> int:
    return Timer.objects.filter(
        mention=mention, kind__in=Timer.REPLY_KINDS, state=Timer.State.PENDING
    ).update(state=Timer.State.CANCELLED, outcome=outcome)


def _label(mention: Mention) -> str:
    return _("the comment #%(id)s on %(channel)s") % {
        "id": mention.pk,
        "channel": mention.get_channel_display(),
    }


def reply_minutes(*, incident: Incident, channel: str) -> tuple[int, int]:
    """(minutes to answer, minutes of warning before) for a comment on ``channel`` during
    ``incident``, from its frozen playbook version (the defaults without one)."""
    playbook = incident.playbook
    if playbook is None:
        return DEFAULT_REPLY_MINUTES, DEFAULT_REPLY_WARN_MINUTES
    return (
        playbook.reply_minutes_for(channel=channel, severity=incident.severity),
        playbook.reply_warn_minutes,
    )


@transaction.atomic
def mention_assign(
    *, mention: Mention, actor: AbstractBaseUser, assignee: AbstractBaseUser | None
) -> Mention:
    """Give the comment to a person to answer (or to nobody)."""
    mention = _locked(mention)
    if assignee is not None and not (
        assignee.is_active and assignee.has_perm("listening.view_mention")
    ):
        raise ValidationError({"assignee": _("This person cannot work on mentions.")})
    if (
        mention.incident_id
        and assignee is not None
        and not incidents_visible_to(assignee).filter(pk=mention.incident_id).exists()
    ):
        raise ValidationError({"assignee": _("This person cannot see the comment's incident.")})
    mention.assignee = assignee
    Mention.objects.filter(pk=mention.pk).update(assignee=assignee)
    now = timezone.now()
    if assignee is None:
        text = _("%(who)s took %(m)s off whoever had it.") % {
            "who": actor_name(actor),
            "m": _label(mention),
        }
    else:
        text = _("%(who)s assigned %(m)s to %(to)s.") % {
            "who": actor_name(actor),
            "m": _label(mention),
            "to": actor_name(assignee),
        }
    _note(mention, actor, text, now, assignee_id=assignee.pk if assignee else None)
    return mention


@transaction.atomic
def mention_needs_reply(
    *,
    mention: Mention,
    actor: AbstractBaseUser,
    incident: Incident | None = None,
    now: datetime | None = None,
) -> Mention:
    """Mark the comment as needing a reply: tie it to an incident (the one it has, or the
    one given), set its deadline and write its two timers (see the module's docstring)."""
    now = now or timezone.now()
    if incident is not None:
        # The incident first, even when the mention has none yet: the one lock order.
        Incident.objects.select_for_update().get(pk=incident.pk)
    mention = _locked(mention)
    if mention.state in (Mention.State.REPLIED, Mention.State.NEEDS_REPLY):
        raise ValidationError(
            _("This comment is already %(state)s.") % {"state": mention.get_state_display()}
        )
    if mention.kind == Mention.Kind.ALERT:
        raise ValidationError(_("A technical alert is not answered in public."))
    if incident is not None and mention.incident_id not in (None, incident.pk):
        raise ValidationError({"incident": _("The comment belongs to another incident already.")})
    incident = incident or mention.incident
    if incident is None:
        raise ValidationError(
            {
                "incident": _(
                    "Choose the incident it belongs to: a reply is a message of an "
                    "incident, approved in one voice."
                )
            }
        )
    if not incident.is_active:
        raise ValidationError({"incident": _("The incident is over: choose an active one.")})
    minutes, warn = reply_minutes(incident=incident, channel=mention.channel)
    due = mention.received_at + timedelta(minutes=minutes)
    _timers_cancel(mention, "marked again")
    Mention.objects.filter(pk=mention.pk).update(
        incident=incident,
        state=Mention.State.NEEDS_REPLY,
        reply_due_at=due,
        no_reply_reason="",
        dismissed_reason="",
        triaged_at=now,
        triaged_by=actor,
    )
    mention.incident, mention.state, mention.reply_due_at = incident, Mention.State.NEEDS_REPLY, due
    written = [
        Timer.objects.create(
            incident=incident, kind=Timer.Kind.REPLY_DEADLINE, due_at=due, mention=mention
        )
    ]
    if warn and warn < minutes:
        written.append(
            Timer.objects.create(
                incident=incident,
                kind=Timer.Kind.REPLY_WARNING,
                due_at=due - timedelta(minutes=warn),
                mention=mention,
            )
        )
    timers.enqueue_on_commit(written)
    _note(
        mention,
        actor,
        _("%(who)s marked %(m)s as needing a reply, due within %(n)s minutes of arriving.")
        % {"who": actor_name(actor), "m": _label(mention), "n": minutes},
        now,
        reply_due_at=due.isoformat(),
    )
    return mention


def _settle(mention: Mention, actor, *, state: str, now: datetime, **fields) -> Mention:
    if mention.state == Mention.State.REPLIED:
        raise ValidationError(_("This comment was answered: its record stays as it is."))
    if mention.reply_id and mention.reply.status != Message.Status.DRAFT:
        raise ValidationError(
            _("Its reply is in review or approved: return it to a draft first, or publish it.")
        )
    _timers_cancel(mention, str(state))
    Mention.objects.filter(pk=mention.pk).update(
        state=state, reply_due_at=None, triaged_at=now, triaged_by=actor, **fields
    )
    for name, value in {"state": state, "reply_due_at": None, **fields}.items():
        setattr(mention, name, value)
    return mention


@transaction.atomic
def mention_no_reply(
    *,
    mention: Mention,
    actor: AbstractBaseUser,
    reason: str,
    note: str = "",
    now: datetime | None = None,
) -> Mention:
    """No reply needed, and why (spam, duplicate, positive and thanked...); the comment
    stays in the inbox under that state, findable, and can be reopened."""
    now = now or timezone.now()
    note = (note or "").strip()
    errors = {}
    if reason not in Mention.NoReplyReason.values:
        errors["reason"] = _("Choose a reason.")
    elif reason == Mention.NoReplyReason.OTHER and not note:
        errors["note"] = _("Say why no reply is needed.")
    if len(note) > NOTE_MAX:
        errors["note"] = _("At most %(n)s characters.") % {"n": NOTE_MAX}
    if errors:
        raise ValidationError(errors)
    mention = _settle(
        _locked(mention),
        actor,
        state=Mention.State.NO_REPLY,
        now=now,
        no_reply_reason=reason,
        dismissed_reason=note,
    )
    _note(
        mention,
        actor,
        _("%(who)s marked %(m)s as needing no reply: %(why)s.")
        % {
            "who": actor_name(actor),
            "m": _label(mention),
            "why": note or Mention.NoReplyReason(reason).label,
        },
        now,
        reason=reason,
    )
    return mention


@transaction.atomic
def mention_dismiss(
    *, mention: Mention, actor: AbstractBaseUser, reason: str, now: datetime | None = None
) -> Mention:
    """A false positive (not about us, a rule's stray match): dismissed with the reason,
    never deleted; it stays findable under *dismissed*."""
    now = now or timezone.now()
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Say why it is dismissed.")})
    if len(reason) > NOTE_MAX:
        raise ValidationError({"reason": _("At most %(n)s characters.") % {"n": NOTE_MAX}})
    mention = _settle(
        _locked(mention),
        actor,
        state=Mention.State.DISMISSED,
        now=now,
        no_reply_reason="",
        dismissed_reason=reason,
    )
    _note(
        mention,
        actor,
        _("%(who)s dismissed %(m)s as a false positive: %(why)s.")
        % {"who": actor_name(actor), "m": _label(mention), "why": reason},
        now,
    )
    return mention


@transaction.atomic
def mention_reopen(
    *, mention: Mention, actor: AbstractBaseUser, now: datetime | None = None
) -> Mention:
    """Back to *new*: a comment marked no-reply or dismissed by mistake."""
    now = now or timezone.now()
    mention = _locked(mention)
    if mention.state not in (Mention.State.NO_REPLY, Mention.State.DISMISSED):
        raise ValidationError(_("Only a comment marked no-reply or dismissed can be reopened."))
    mention = _settle(
        mention, actor, state=Mention.State.NEW, now=now, no_reply_reason="", dismissed_reason=""
    )
    _note(
        mention,
        actor,
        _("%(who)s reopened %(m)s.") % {"who": actor_name(actor), "m": _label(mention)},
        now,
    )
    return mention


def reply_templates(mention: Mention) -> QuerySet[MessageTemplate]:
    """The reply templates of the comment's incident's playbook version, the comment's
    language first."""
    if mention.incident_id is None or mention.incident.playbook_id is None:
        return MessageTemplate.objects.none()
    return MessageTemplate.objects.filter(
        playbook_id=mention.incident.playbook_id, channel=Channel.REPLY
    ).select_related("audience")


def reply_language(mention: Mention) -> str:
    """The language to answer in: the comment's (its main subtag: "hu-HU" is "hu") when
    the desk speaks it, else "" (the template's, or the desk's default)."""
    code = (mention.language or "").split("-")[0].lower()
    return code if code in dict(settings.LANGUAGES) else ""


def _in_language(template: MessageTemplate, language: str) -> MessageTemplate:
    """The same reply template in the comment's language, when the playbook has it."""
    if not language or template.language == language:
        return template
    return (
        MessageTemplate.objects.filter(
            playbook_id=template.playbook_id,
            name=template.name,
            channel=Channel.REPLY,
            language=language,
        ).first()
        or template
    )


def _default_audience() -> StakeholderGroup:
    group = (
        StakeholderGroup.objects.filter(slug="customers").first()
        or StakeholderGroup.objects.filter(public=True).order_by("pk").first()
        or StakeholderGroup.objects.order_by("pk").first()
    )
    if group is None:
        raise ValidationError(_("Make a stakeholder group first: a reply speaks to one."))
    return group


@transaction.atomic
def reply_draft(
    *,
    mention: Mention,
    author: AbstractBaseUser,
    template: MessageTemplate | None = None,
    body: str = "",
) -> Message:
    """Draft the comment's reply: from a reply template of its playbook (the comment's
    language when the playbook has it) or written from scratch, in one language only.
    It then goes through the one-voice approval like any message."""
    mention = _locked(mention)
    if mention.state != Mention.State.NEEDS_REPLY:
        raise ValidationError(_("Mark the comment as needing a reply first."))
    if mention.reply_id is not None:
        raise ValidationError(_("This comment has a reply already: edit that one."))
    if template is not None:
        if (
            template.channel != Channel.REPLY
            or not reply_templates(mention).filter(pk=template.pk).exists()
        ):
            raise ValidationError({"template": _("Choose a reply template of this playbook.")})
        template = _in_language(template, reply_language(mention))
    language = (
        template.language if template else (reply_language(mention) or settings.LANGUAGE_CODE)
    )
    message = comms.message_draft(
        incident=mention.incident,
        author=author,
        audience=template.audience if template else _default_audience(),
        channel=Channel.REPLY,
        language=language,
        template=template,
        body=body,
        subject="",
        is_public=False,
        languages=[language],
    )
    Mention.objects.filter(pk=mention.pk).update(reply=message)
    mention.reply = message
    return message


@transaction.atomic
def reply_publish(
    *,
    mention: Mention,
    actor: AbstractBaseUser,
    url: str = "",
    by_email: bool = False,
    now: datetime | None = None,
) -> Mention:
    """The approved reply is out: a person posted it where the comment was and pastes its
    address, or sent it by e-mail. Settles the deadline (met or missed, on the
    timeline) and cancels the timers."""
    now = now or timezone.now()
    url = (url or "").strip()
    if by_email == bool(url):
        raise ValidationError(
            {"url": _("Paste the address of the reply, or say it went by e-mail.")}
        )
    if url:
        try:
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError:
            raise ValidationError({"url": _("Enter the reply's address (https://…).")}) from None
        if len(url) > 2000:
            raise ValidationError({"url": _("At most 2000 characters.")})
    mention = _locked(mention)
    if mention.state != Mention.State.NEEDS_REPLY or mention.reply_id is None:
        raise ValidationError(_("This comment has no reply waiting to be published."))
    where = url or _("by e-mail to %(author)s") % {"author": mention.author or _("the author")}
    comms.message_publish(message=mention.reply, actor=actor, where=where, now=now, as_reply=True)
    via = MentionChannel.EMAIL if by_email else mention.channel
    _timers_cancel(mention, "replied")
    Mention.objects.filter(pk=mention.pk).update(
        state=Mention.State.REPLIED, replied_at=now, replied_via=via, reply_url=url
    )
    mention.state, mention.replied_at, mention.replied_via, mention.reply_url = (
        Mention.State.REPLIED,
        now,
        via,
        url,
    )
    minutes = round((now - mention.received_at).total_seconds() / 60, 1)
    met = mention.reply_due_at is None or now <= mention.reply_due_at
    timeline_add(
        incident=mention.incident,
        kind=TimelineEntry.Kind.DEADLINE,
        actor=actor,
        at=now,
        text=(
            _("Reply to %(m)s published after %(n)s minutes: deadline met.")
            if met
            else _("Reply to %(m)s published after %(n)s minutes: deadline missed.")
        )
        % {"m": _label(mention), "n": minutes},
        data={
            "deadline": "reply",
            "met": met,
            "minutes": minutes,
            "mention_id": mention.pk,
            "message_id": mention.reply_id,
        },
    )
    return mention


def reply_timer_fire(*, timer: Timer, incident: Incident, now: datetime):
    """A reply timer is due (the engine's handler, under the incident's lock): warn the
    communications lead and the assignee, or at the deadline escalate to the crisis
    manager too. A comment answered or no longer needing a reply tells nobody."""
    mention = (
        Mention.objects.select_for_update(of=("self",))
        .select_related("assignee")
        .filter(pk=timer.mention_id)
        .first()
    )
    if mention is None or mention.state != Mention.State.NEEDS_REPLY:
        return "comment answered or no reply needed", []
    missed = timer.kind == Timer.Kind.REPLY_DEADLINE
    assignee = mention.assignee if mention.assignee and mention.assignee.is_active else None
    created = notify.reply_due_notifications(
        incident=incident,
        timer=timer,
        role_slugs=ESCALATE_ROLES if missed else WARN_ROLES,
        extra_people=(assignee,) if assignee else (),
        context={
            "due": mention.reply_due_at,
            "channel": MentionChannel(mention.channel).label,
            "author": mention.author,
            "text": mention.text[:500],
            "url": mention.url,
            "assignee": actor_name(assignee) if assignee else "",
            "inbox_url": notify.absolute(reverse("listening:mention", args=[mention.pk])),
            "now": now,
        },
    )
    timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.DEADLINE,
        at=now,
        text=(
            _("Missed: no reply to %(m)s by %(t)s UTC.")
            if missed
            else _("Reminder: the reply to %(m)s is due at %(t)s UTC.")
        )
        % {"m": _label(mention), "t": f"{mention.reply_due_at:%H:%M}"},
        data={
            "timer_id": timer.pk,
            "deadline": "reply",
            "mention_id": mention.pk,
            **({"met": False} if missed else {"reminder": True}),
        },
    )
    return (
        f"reply overdue; told {len(created)}" if missed else f"reply reminder; told {len(created)}"
    ), created


def assignable_people() -> QuerySet:
    """Who may be given a comment to answer: active people who may view mentions (through
    a group, their own permissions, or as superusers)."""
    perm = Q(permissions__codename="view_mention", permissions__content_type__app_label="listening")
    groups = Group.objects.filter(perm)
    User = get_user_model()
    return (
        User.objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(groups__in=groups)
            | Q(
                user_permissions__codename="view_mention",
                user_permissions__content_type__app_label="listening",
            )
        )
        .distinct()
        .order_by("username")
    )
