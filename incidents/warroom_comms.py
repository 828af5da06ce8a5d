"""The war room's communications: statements drafted, approved and sent from the incident.

The incident page carries a communications panel (``comms_panel``, shown by
templates/warroom/_comms.html): the first-statement target and each audience's
update cadence, what awaits approval (approve, or return with a comment), the
drafts, what is approved and ready to go out, and what went out with its
corrections beside it, and the templates of *this incident's* playbook version to
draft from. Each message has a page of its own (``message_page``): its words in
every language side by side, editable while it is a draft, and the actions its
state allows (submit, approve, return, send, publish, schedule, correct).

Reads go through incidents/selectors.py, so a message of an incident someone may
not see answers 404 exactly like a made-up one. Writes are one service call each
(incidents/comms.py) behind the permissions the API checks (incidents/api.py,
``MessageViewSet``): drafting and correcting need *add message*; editing,
submitting, sending, publishing and scheduling *change message*; approving and
returning the approval permission (``comms.can_approve``). Every POST checks the
message's state again: an action someone else overtook (approving what was just
returned or sent) says who did what and when, and goes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import get_language_info
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from crisisdesk.timefmt import format_when
from incidents import comms
from incidents.forms import (
    ApproveForm,
    ComposeForm,
    CorrectForm,
    LanguageForm,
    MessageEditForm,
    PublishForm,
    ReturnForm,
    ScheduleForm,
    ScratchForm,
)
from incidents.models import Incident, Message, TimelineEntry
from incidents.selectors import (
    incident_cadences,
    incident_comms,
    incident_templates,
    incidents_visible_to,
    message_delivery,
    message_latest_entry,
    message_returns,
)
from playbooks.models import Channel, MessageTemplate, StakeholderGroup

# Reading messages: the incident and its messages (the API's GET on messages needs the latter).
READ_PERMS = ("incidents.view_incident", "incidents.view_message")
VIEW = "incidents.view_message"
ADD = "incidents.add_message"
CHANGE = "incidents.change_message"


def _reader(view):
    """Signed in (else to the sign-in page) and allowed to read messages (else 403)."""
    return login_required(permission_required(READ_PERMS, raise_exception=True)(view))


# ------------------------------------------------------------------ reads


def _incident(request: HttpRequest, reference: str) -> Incident:
    """The incident, or 404 when it does not exist or this person may not see it."""
    return get_object_or_404(
        incidents_visible_to(request.user).select_related("playbook"), reference=reference
    )


def _message(request: HttpRequest, incident: Incident, message_id: int) -> Message:
    """A message of this incident, or 404 (another incident's id answers like a made-up one)."""
    return get_object_or_404(incident_comms(user=request.user, incident=incident), pk=message_id)


@dataclass(frozen=True)
class Powers:
    """What this person may do with messages: the API's permissions, read once per request."""

    user_id: int
    add: bool
    change: bool
    approve: bool
    own: bool  # a crisis manager, who may approve their own message by saying so

    def approves(self, message: Message) -> bool:
        return self.approve and (message.author_id != self.user_id or self.own)


def _powers(user) -> Powers:
    approve = comms.can_approve(user)
    return Powers(
        user_id=user.pk,
        add=user.has_perm(ADD),
        change=user.has_perm(CHANGE),
        approve=approve,
        own=approve and comms.is_crisis_manager(user),
    )


def _languages() -> dict[str, str]:
    return {code: _(name) for code, name in settings.LANGUAGES}


@dataclass
class TemplateGroup:
    """The templates for one audience and channel: each name once, with its languages."""

    audience: StakeholderGroup
    channel: str
    names: dict[str, list[MessageTemplate]] = field(default_factory=dict)


def template_groups(templates) -> list[TemplateGroup]:
    groups: dict[tuple[int, str], TemplateGroup] = {}
    labels = dict(Channel.choices)
    for template in templates:
        key = (template.audience_id, template.channel)
        group = groups.setdefault(
            key, TemplateGroup(template.audience, labels.get(template.channel, template.channel))
        )
        group.names.setdefault(template.name, []).append(template)
    return list(groups.values())


@dataclass
class AudienceTarget:
    audience: StakeholderGroup
    every_minutes: int
    last: Message | None


@dataclass
class Panel:
    """What the communications panel of the incident page shows."""

    powers: Powers
    first_statement_minutes: int
    first_statement_at: datetime | None
    targets: list[AudienceTarget]
    awaiting: list[Message]
    drafts: list[Message]
    approved: list[Message]
    out: list[Message]
    templates: list[TemplateGroup]


def _annotate(rows: list[Message], powers: Powers, returns: dict[int, TimelineEntry]) -> None:
    """What each row needs beyond its columns, computed here rather than queried per row."""
    for message in rows:
        message.missing = comms.missing_facts(message)
        message.may_approve = powers.approves(message)
        # A return speaks to the draft it made: not to one submitted again since.
        returned = returns.get(message.pk)
        current = returned is not None and (
            message.submitted_at is None or returned.at >= message.submitted_at
        )
        message.returned = returned if current and message.status == Message.Status.DRAFT else None


def comms_panel(request: HttpRequest, incident: Incident) -> dict:
    """The incident page's communications panel, in a fixed number of queries; nothing
    for someone who may not read messages."""
    user = request.user
    if not user.has_perm(VIEW):
        return {"comms": None}
    powers = _powers(user)
    rows = list(incident_comms(user=user, incident=incident))
    _annotate(rows, powers, message_returns(user=user, incident=incident))
    out = [m for m in rows if m.is_final]
    last_out: dict[int, Message] = {}
    for message in sorted(out, key=lambda m: m.sent_at):
        last_out[message.audience_id] = message
    targets = [
        AudienceTarget(c.audience, c.every_minutes, last_out.get(c.audience_id))
        for c in incident_cadences(incident)
    ]
    status = Message.Status
    return {
        "comms": Panel(
            powers=powers,
            first_statement_minutes=incident.first_statement_minutes,
            first_statement_at=incident.first_statement_at,
            targets=targets,
            awaiting=[m for m in rows if m.status == status.IN_REVIEW],
            drafts=[m for m in rows if m.status == status.DRAFT],
            approved=[m for m in rows if m.status == status.APPROVED],
            # Newest first; a correction sits beside the message it corrects.
            out=sorted(out, key=lambda m: (m.sent_at, m.pk), reverse=True),
            templates=template_groups(incident_templates(incident)) if powers.add else [],
        )
    }


def _what_happened(request: HttpRequest, message: Message) -> str:
    """The message's state now and the last thing done to it: who, what and when."""
    message.refresh_from_db(fields=["status"])
    text = _("Not done: message #%(id)s is now “%(status)s”.") % {
        "id": message.pk,
        "status": message.get_status_display(),
    }
    entry = message_latest_entry(user=request.user, message=message)
    if entry is not None:
        text += " " + _("Latest on its record, %(when)s: %(entry)s") % {
            "when": f"{timezone.localtime(entry.at):%Y-%m-%d %H:%M}",
            "entry": entry.text,
        }
    return text


def _overtaken(message: Message, statuses) -> bool:
    """Whether the message left the states the action was for since the page was read."""
    now = Message.objects.filter(pk=message.pk).values_list("status", flat=True).first()
    return now not in statuses


# ------------------------------------------------------------------ pages


@dataclass
class Variant:
    """One language of a message: the main one, or a variant for contacts in that language."""

    code: str
    name: str
    main: bool
    rtl: bool
    subject: object  # a bound form field, or the text when read-only
    body: object
    subject_missing: list[str]  # facts still marked missing, flagged beside the field
    body_missing: list[str]
    untranslated: list[str] = field(default_factory=list)  # still to write in this language
    droppable: bool = False  # may be taken out on purpose (not the main text, not the default)


def _variants(message: Message, form: MessageEditForm | None) -> list[Variant]:
    """The main language first, then every other-language variant: fields when editable."""
    names = _languages()
    rows = []
    for code in [message.language, *sorted(message.translations)]:
        main = code == message.language
        suffix = "" if main else f"_{code}"
        if form is not None:
            subject, body = form["subject" + suffix], form["body" + suffix]
            subject_missing = form.missing("subject" + suffix)
            body_missing = form.missing("body" + suffix)
            untranslated = [
                *form.untranslated("subject" + suffix),
                *form.untranslated("body" + suffix),
            ]
        else:
            variant = {"subject": message.subject, "body": message.body}
            if not main:
                variant = message.translations.get(code, {})
            subject, body = variant.get("subject", ""), variant.get("body", "")
            subject_missing, body_missing = comms.markers_in(subject), comms.markers_in(body)
            untranslated = [
                *comms.markers_in(subject, comms.NOT_TRANSLATED),
                *comms.markers_in(body, comms.NOT_TRANSLATED),
            ]
        try:
            rtl = bool(get_language_info(code)["bidi"])
        except KeyError:
            rtl = False
        rows.append(
            Variant(
                code=code,
                name=names.get(code, code),
                main=main,
                rtl=rtl,
                subject=subject,
                body=body,
                subject_missing=subject_missing,
                body_missing=body_missing,
                untranslated=list(dict.fromkeys(untranslated)),
                droppable=not main and code != message.audience.default_language,
            )
        )
    return rows


def _add_language_form(message: Message, editable: bool, needed: list[str]) -> LanguageForm | None:
    """Languages the draft could gain: those the desk speaks that it has not, the
    audience's own (``needed``) first; nothing to offer, no form."""
    if not editable:
        return None
    have = {message.language, *message.translations}
    absent = [(c, n) for c, n in settings.LANGUAGES if c not in have]
    if not absent:
        return None
    absent.sort(key=lambda pair: (pair[0] not in needed, str(pair[1])))
    form = LanguageForm(initial={"language": absent[0][0]})
    form.fields["language"].choices = absent
    return form


@dataclass
class Reader:
    """Who reads which text: one line per language the audience needs."""

    code: str
    name: str
    gets: str  # the language of the text they receive
    gets_name: str
    why: str  # "own", "dropped" or "no_variant"


def _readers(message: Message, needed: list[str]) -> list[Reader]:
    names = _languages()
    rows = []
    for code in needed:
        gets = comms.language_sent(message, code)
        why = (
            "own"
            if gets == code
            else ("dropped" if code in message.dropped_languages else "no_variant")
        )
        rows.append(Reader(code, names.get(code, code), gets, names.get(gets, gets), why))
    return rows


def _render_message(
    request: HttpRequest,
    incident: Incident,
    message: Message,
    powers: Powers,
    *,
    forms: dict[str, Form] | None = None,
    unsaved: dict | None = None,
) -> HttpResponse:
    forms = forms or {}
    status = Message.Status
    editable = powers.change and message.status in Message.EDITABLE
    edit_form = forms.get("edit") or (MessageEditForm(message=message) if editable else None)
    _annotate([message], powers, message_returns(user=request.user, incident=incident))
    is_email = message.channel == Channel.EMAIL
    needed = comms.audience_languages(message.audience)  # read once, for two sections
    context = {
        "incident": incident,
        "message": message,
        "powers": powers,
        "variants": _variants(message, edit_form),
        "readers": _readers(message, needed),
        "untranslated": comms.untranslated_facts(message),
        "add_language": forms.get("add-language") or _add_language_form(message, editable, needed),
        "edit_form": edit_form,
        "placeholders": MessageTemplate.PLACEHOLDERS,
        "unsaved": unsaved,
        "corrections": list(message.corrections.all()),
        "approve_form": forms.get("approve")
        or (ApproveForm() if message.status == status.IN_REVIEW and message.may_approve else None),
        "return_form": forms.get("return")
        or (ReturnForm() if message.status == status.IN_REVIEW and powers.approve else None),
        "publish_form": forms.get("publish")
        or (
            PublishForm()
            # A reply to a comment is published from the comment (the inbox records where).
            if message.status == status.APPROVED
            and powers.change
            and message.channel not in (Channel.EMAIL, Channel.REPLY)
            else None
        ),
        "schedule_form": forms.get("schedule")
        or (
            ScheduleForm()
            if message.status == status.APPROVED and powers.change and is_email
            else None
        ),
        "may_send": message.status == status.APPROVED and powers.change and is_email,
        "delivery": message_delivery(user=request.user, message=message) if is_email else None,
        "time_zone": timezone.get_current_timezone_name(),
        "correct_form": forms.get("correct")
        or (
            CorrectForm(initial={"subject": message.subject, "body": message.body})
            if message.is_final and powers.add
            else None
        ),
    }
    if context["may_send"]:
        context["recipients"] = message.audience.contacts.exclude(email="").count()
    return render(request, "warroom/message.html", context)


@_reader
@require_http_methods(["GET", "POST"])
def message_new(request: HttpRequest, reference: str) -> HttpResponse:
    """Draft from a template of this incident's playbook version (and only those)."""
    incident = _incident(request, reference)
    if not request.user.has_perm(ADD):
        raise PermissionDenied
    templates = incident_templates(incident)
    scratch = ScratchForm(request.POST if "scratch-body" in request.POST else None)
    if scratch.is_bound:
        form = ComposeForm(templates=templates)
        if scratch.is_valid():
            data = scratch.cleaned_data
            try:
                message = comms.message_draft(
                    incident=incident,
                    author=request.user,
                    audience=data["audience"],
                    channel=data["channel"],
                    language=data["language"],
                    subject=data["subject"],
                    body=data["body"],
                )
            except ValidationError as exc:
                _add_errors(scratch, exc)
            else:
                text = _("Drafted.")
                if message.translations:
                    text += " " + _(
                        "Write it in the audience's other languages too, or drop those "
                        "languages: %(langs)s."
                    ) % {"langs": ", ".join(comms.language_name(c) for c in message.translations)}
                messages.success(request, text)
                return redirect(
                    "warroom:message", reference=incident.reference, message_id=message.pk
                )
        return render(
            request,
            "warroom/compose.html",
            {
                "incident": incident,
                "form": form,
                "scratch": scratch,
                "template_groups": template_groups(templates),
            },
        )
    form = ComposeForm(request.POST or None, templates=templates)
    if request.method == "POST" and form.is_valid():
        template = form.cleaned_data["template"]
        try:
            message = comms.message_draft(
                incident=incident,
                author=request.user,
                audience=template.audience,
                channel=template.channel,
                language=template.language,
                template=template,
            )
        except ValidationError as exc:
            form.add_error(None, exc.messages)
        else:
            text = _("Drafted from “%(name)s” [%(lang)s].") % {
                "name": template.name,
                "lang": template.language,
            }
            if comms.missing_facts(message):
                text += " " + _("Fill in the marked facts in every language, then submit it.")
            messages.success(request, text)
            return redirect("warroom:message", reference=incident.reference, message_id=message.pk)
    return render(
        request,
        "warroom/compose.html",
        {
            "incident": incident,
            "form": form,
            "scratch": ScratchForm(),
            "template_groups": template_groups(templates),
        },
    )


@_reader
@require_http_methods(["GET", "POST"])
def message_page(request: HttpRequest, reference: str, message_id: int) -> HttpResponse:
    """A message in every language; a draft's words are edited here (POST)."""
    incident = _incident(request, reference)
    message = _message(request, incident, message_id)
    powers = _powers(request.user)
    if request.method == "GET":
        return _render_message(request, incident, message, powers)
    if not powers.change:
        raise PermissionDenied
    if message.status not in Message.EDITABLE:
        # Approved or sent by someone else meanwhile: say so, and keep the words typed.
        messages.warning(request, _what_happened(request, message))
        return _render_message(request, incident, message, powers, unsaved=request.POST)
    form = MessageEditForm(request.POST, message=message)
    if form.is_valid():
        try:
            message = comms.message_edit(
                message=message,
                editor=request.user,
                subject=form.cleaned_data["subject"],
                body=form.cleaned_data["body"],
                translations=form.translations(),
            )
        except ValidationError as exc:
            if _overtaken(message, Message.EDITABLE):
                messages.warning(request, _what_happened(request, message))
                return _render_message(request, incident, message, powers, unsaved=request.POST)
            _add_errors(form, exc)
        else:
            if request.POST.get("then") == "submit":
                return _perform(request, incident, message, "submit", {}, powers)
            messages.success(request, _("Saved."))
            return redirect("warroom:message", reference=incident.reference, message_id=message.pk)
    return _render_message(request, incident, message, powers, forms={"edit": form})


def _add_errors(form: Form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for name, errors in exc.message_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


# ------------------------------------------------------------------ actions


@dataclass(frozen=True)
class Action:
    statuses: tuple[str, ...]  # the states it applies to; any other is someone else's doing
    form: type[Form] | None

    def allowed(self, name: str, powers: Powers) -> bool:
        if name in ("approve", "return"):
            return powers.approve  # the service decides the rest, as in the API
        if name == "correct":
            return powers.add
        return powers.change


S = Message.Status
ACTIONS: dict[str, Action] = {
    "submit": Action((S.DRAFT,), None),
    "approve": Action((S.IN_REVIEW,), ApproveForm),
    "return": Action((S.IN_REVIEW,), ReturnForm),
    "send": Action((S.APPROVED,), None),
    "publish": Action((S.APPROVED,), PublishForm),
    "schedule": Action((S.APPROVED,), ScheduleForm),
    "correct": Action(tuple(Message.FINAL), CorrectForm),
    "drop-language": Action(tuple(Message.EDITABLE), LanguageForm),
    "add-language": Action(tuple(Message.EDITABLE), LanguageForm),
}


def _back(request: HttpRequest, incident: Incident, message: Message) -> HttpResponse:
    """Back where the action was asked from: the incident's panel, or the message's page."""
    if request.POST.get("back") == "incident":
        return redirect(reverse("warroom:incident", args=[incident.reference]) + "#comms")
    return redirect("warroom:message", reference=incident.reference, message_id=message.pk)


@_reader
@require_POST
def message_action(
    request: HttpRequest, reference: str, message_id: int, action: str
) -> HttpResponse:
    incident = _incident(request, reference)
    message = _message(request, incident, message_id)
    spec = ACTIONS.get(action)
    if spec is None:
        raise Http404
    powers = _powers(request.user)
    if not spec.allowed(action, powers):
        raise PermissionDenied
    if message.status not in spec.statuses:
        messages.warning(request, _what_happened(request, message))
        return _back(request, incident, message)
    form = spec.form(request.POST) if spec.form else None
    if form is not None and not form.is_valid():
        return _render_message(request, incident, message, powers, forms={action: form})
    return _perform(
        request, incident, message, action, form.cleaned_data if form else {}, powers, form
    )


def _perform(
    request: HttpRequest,
    incident: Incident,
    message: Message,
    action: str,
    data: dict,
    powers: Powers,
    form: Form | None = None,
) -> HttpResponse:
    user = request.user
    try:
        if action == "submit":
            comms.message_submit(message=message, actor=user)
            text = _("Submitted for approval.")
            missing = comms.missing_facts(message)
            if missing:
                text += " " + _(
                    "It cannot be approved until the marked facts are filled in: %(names)s."
                ) % {"names": ", ".join(missing)}
            messages.success(request, text)
        elif action == "approve":
            comms.message_approve(message=message, approver=user, **data)
            messages.success(request, _("Approved: it may go out now."))
        elif action == "return":
            comms.message_return(message=message, reviewer=user, comment=data["comment"])
            messages.success(request, _("Returned to its author with your comment."))
        elif action == "send":
            n = comms.message_send(message=message, actor=user)
            messages.success(
                request,
                _("Sent: %(n)s e-mails are in the outbox, each in its contact's language.")
                % {"n": n},
            )
        elif action == "publish":
            comms.message_publish(message=message, actor=user, where=data["where"])
            messages.success(request, _("Recorded as published."))
        elif action == "schedule":
            comms.message_schedule(message=message, actor=user, at=data["at"])
            messages.success(
                request,
                _("Scheduled: it goes out at %(at)s.")
                % {"at": format_when(data["at"], timezone.get_current_timezone())},
            )
        elif action == "drop-language":
            dropped = comms.message_language_drop(
                message=message, language=data["language"], actor=user
            )
            messages.success(
                request,
                _("%(lang)s dropped: its contacts get the %(fallback)s text.")
                % {
                    "lang": comms.language_name(data["language"]),
                    "fallback": comms.language_name(comms.language_sent(dropped, data["language"])),
                },
            )
        elif action == "add-language":
            comms.message_language_add(message=message, language=data["language"], actor=user)
            messages.success(
                request,
                _("%(lang)s added: write it, then submit.")
                % {"lang": comms.language_name(data["language"])},
            )
        elif action == "correct":
            correction = comms.message_correct(
                original=message, author=user, body=data["body"], subject=data["subject"]
            )
            messages.success(
                request, _("Correction drafted: check it in every language, then submit it.")
            )
            return redirect(
                "warroom:message", reference=incident.reference, message_id=correction.pk
            )
    except ValidationError as exc:
        if _overtaken(message, ACTIONS[action].statuses):
            messages.warning(request, _what_happened(request, message))
            return _back(request, incident, message)
        if form is None:
            messages.error(request, " ".join(exc.messages))
            return _back(request, incident, message)
        _add_errors(form, exc)
        message.refresh_from_db()
        return _render_message(request, incident, message, powers, forms={action: form})
    except PermissionDenied as exc:
        # Approving one's own message: a rule to explain, not a door to close.
        if form is None:
            raise
        form.add_error(None, str(exc))
        return _render_message(request, incident, message, powers, forms={action: form})
    return _back(request, incident, message)
