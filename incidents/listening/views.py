"""The war room's Mentions page, the triage inbox: recent mentions with filters (state,
assignee "mine", incident...), one typed by hand, a CSV import; and one mention's page
with its triage (assign, needs a reply, no reply needed, dismissed) and its reply
(drafted from the playbook's reply template, approved on the message's page like any
message, then recorded as published here)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from crisisdesk.csvimport import CsvImportError
from incidents.listening import inbox, services
from incidents.listening.forms import (
    AssignForm,
    DismissForm,
    MentionAddForm,
    MentionFilterForm,
    MentionImportForm,
    NeedsReplyForm,
    NoReplyForm,
    ReplyDraftForm,
    ReplyPublishForm,
)
from incidents.listening.mention_import import mentions_import_csv
from incidents.listening.models import Mention
from incidents.listening.selectors import mention_list, mentions_visible_to

PAGE_SIZE = 25
ADD_PERM = "listening.add_mention"
TRIAGE_PERM = "listening.change_mention"
DRAFT_PERM = "incidents.add_message"
PUBLISH_PERM = "incidents.change_message"


@login_required
@permission_required("listening.view_mention", raise_exception=True)
def mentions(request: HttpRequest) -> HttpResponse:
    add_form = MentionAddForm(prefix="add")
    import_form = MentionImportForm(prefix="csv")
    import_errors: list = []
    if request.method == "POST":
        if not request.user.has_perm(ADD_PERM):
            raise PermissionDenied
        if "add-text" in request.POST:
            add_form = MentionAddForm(request.POST, prefix="add")
            if add_form.is_valid():
                try:
                    services.mention_record(
                        source=services.manual_source(), actor=request.user, **add_form.cleaned_data
                    )
                except ValidationError as exc:
                    for field, errors in exc.message_dict.items():
                        add_form.add_error(field if field in add_form.fields else None, errors)
                else:
                    messages.success(request, _("The mention is added."))
                    return redirect("listening:mentions")
        else:
            import_form = MentionImportForm(request.POST, request.FILES, prefix="csv")
            if import_form.is_valid():
                try:
                    written = mentions_import_csv(
                        text=import_form.cleaned_data["file"],
                        source=services.manual_source(),
                        actor=request.user,
                    )
                except CsvImportError as exc:
                    import_errors = [str(e) for e in exc.errors[:200]]
                else:
                    messages.success(
                        request,
                        ngettext("%(n)s mention imported.", "%(n)s mentions imported.", written)
                        % {"n": written},
                    )
                    return redirect("listening:mentions")
    filters = MentionFilterForm(request.GET or None, user=request.user)
    options: dict = {}
    if filters.is_valid():
        data = filters.cleaned_data
        options = {
            "source": data["source"].slug if data["source"] else "",
            "channel": data["channel"],
            "sentiment": data["sentiment"],
            "risk": data["risk"].pk if data["risk"] else None,
            "incident": data["incident"].pk if data["incident"] else None,
            "state": data["state"],
            "assignee": request.user.pk if data["mine"] else None,
        }
    page = Paginator(mention_list(user=request.user, **options), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "listening/mentions.html",
        {
            "filters": filters,
            "page": page,
            "query": query.urlencode(),
            "add_form": add_form,
            "import_form": import_form,
            "import_errors": import_errors,
            "may_add": request.user.has_perm(ADD_PERM),
        },
        status=400 if import_errors or add_form.errors or import_form.errors else 200,
    )


# ------------------------------------------------------------------ one mention: triage, reply

# action -> (its form, the form's prefix, the permission it needs)
ACTIONS = {
    "assign": (AssignForm, "assign", TRIAGE_PERM),
    "needs-reply": (NeedsReplyForm, "needs", TRIAGE_PERM),
    "no-reply": (NoReplyForm, "noreply", TRIAGE_PERM),
    "dismiss": (DismissForm, "dismiss", TRIAGE_PERM),
    "reopen": (None, "", TRIAGE_PERM),
    "draft": (ReplyDraftForm, "draft", DRAFT_PERM),
    "publish": (ReplyPublishForm, "publish", PUBLISH_PERM),
}


def _form(request: HttpRequest, mention: Mention, action: str, data=None):
    form_class, prefix, _perm = ACTIONS[action]
    extra: dict = {}
    if action == "needs-reply":
        extra = {"user": request.user}
    elif action == "draft":
        extra = {"mention": mention}
    elif action == "assign" and data is None:
        extra = {"initial": {"assignee": mention.assignee_id}}
    return form_class(data, prefix=prefix, **extra)


def _mention(request: HttpRequest, mention_id: int) -> Mention:
    """The mention, or 404 when it does not exist or belongs to an incident this person
    may not see (the same answer)."""
    return get_object_or_404(
        mentions_visible_to(request.user).select_related(
            "source", "risk", "incident__playbook", "assignee", "reply", "triaged_by"
        ),
        pk=mention_id,
    )


def _forms(request: HttpRequest, mention: Mention, bound: dict | None = None) -> dict:
    forms = {action: _form(request, mention, action) for action, spec in ACTIONS.items() if spec[0]}
    forms.update(bound or {})
    return {name.replace("-", "_") + "_form": form for name, form in forms.items()}


def _render_mention(
    request: HttpRequest, mention: Mention, bound: dict | None = None, status: int = 200
) -> HttpResponse:
    user = request.user
    return render(
        request,
        "listening/mention.html",
        {
            "mention": mention,
            "now": timezone.now(),
            "may_triage": user.has_perm(TRIAGE_PERM),
            "may_draft": user.has_perm(DRAFT_PERM),
            "may_publish": user.has_perm(PUBLISH_PERM),
            **_forms(request, mention, bound),
        },
        status=status,
    )


@login_required
@permission_required("listening.view_mention", raise_exception=True)
def mention_page(request: HttpRequest, mention_id: int) -> HttpResponse:
    return _render_mention(request, _mention(request, mention_id))


@login_required
@require_POST
@permission_required("listening.view_mention", raise_exception=True)
def mention_action(request: HttpRequest, mention_id: int, action: str) -> HttpResponse:
    mention = _mention(request, mention_id)
    if action not in ACTIONS:
        return _render_mention(request, mention, status=404)
    form_class, _prefix, perm = ACTIONS[action]
    if not request.user.has_perm(perm):
        raise PermissionDenied
    form = None
    if form_class is not None:
        form = _form(request, mention, action, request.POST)
        if not form.is_valid():
            return _render_mention(request, mention, {action: form}, status=400)
    data = form.cleaned_data if form is not None else {}
    user = request.user
    try:
        if action == "assign":
            inbox.mention_assign(mention=mention, actor=user, assignee=data["assignee"])
            done = _("Assigned.")
        elif action == "needs-reply":
            inbox.mention_needs_reply(mention=mention, actor=user, incident=data["incident"])
            done = _("Marked as needing a reply; the deadline's timers are set.")
        elif action == "no-reply":
            inbox.mention_no_reply(
                mention=mention, actor=user, reason=data["reason"], note=data["note"]
            )
            done = _("Marked as needing no reply.")
        elif action == "dismiss":
            inbox.mention_dismiss(mention=mention, actor=user, reason=data["reason"])
            done = _("Dismissed; it stays findable under its state.")
        elif action == "reopen":
            inbox.mention_reopen(mention=mention, actor=user)
            done = _("Reopened.")
        elif action == "draft":
            message = inbox.reply_draft(
                mention=mention, author=user, template=data["template"], body=data["body"]
            )
            messages.success(
                request, _("Reply drafted: make it specific, then submit it for approval.")
            )
            return redirect("warroom:message", mention.incident.reference, message.pk)
        else:
            inbox.reply_publish(
                mention=mention, actor=user, url=data["url"], by_email=data["by_email"]
            )
            done = _("Recorded as published.")
    except ValidationError as exc:
        if form is None:
            messages.error(request, " ".join(exc.messages))
            return _render_mention(request, _mention(request, mention_id), status=400)
        for field, errors in (
            exc.message_dict.items() if hasattr(exc, "error_dict") else [(None, exc.messages)]
        ):
            form.add_error(field if field in form.fields else None, errors)
        return _render_mention(request, _mention(request, mention_id), {action: form}, status=400)
    messages.success(request, done)
    return redirect("listening:mention", mention.pk)
