"""Admin for the response side. Every state change goes through incidents.services."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import get_language_info
from django.utils.translation import gettext_lazy as _

from crisisdesk.admin_tools import READ_ONLY_SUBMIT_ROW, AuditHistoryAdmin
from incidents import comms, postmortem, services
from incidents.models import (
    ActionItem,
    DeliveryAttempt,
    Exercise,
    ExerciseParticipant,
    Incident,
    Inject,
    Message,
    MessageRevision,
    Notification,
    PostMortem,
    PostMortemRevision,
    RoleAssignment,
    Subscription,
    Task,
    TimelineEntry,
    Timer,
)
from incidents.selectors import VISIBLE_BY_MODEL
from playbooks.models import Playbook


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class TimelineInline(ReadOnlyInline):
    model = TimelineEntry
    fields = ("at", "kind", "actor", "text", "corrects")
    readonly_fields = fields
    ordering = ("at", "id")
    verbose_name_plural = _("timeline (append-only)")


class TaskInline(ReadOnlyInline):
    model = Task
    fields = ("position", "phase", "title", "role", "assignee", "due_at", "status", "done_at")
    readonly_fields = fields


class AssignmentInline(ReadOnlyInline):
    model = RoleAssignment
    fields = ("role", "user", "assumed_at", "relieved_at", "assigned_by")
    readonly_fields = fields


class TimerInline(ReadOnlyInline):
    model = Timer
    fields = ("kind", "round", "cycle", "level", "due_at", "state", "fired_at", "outcome")
    readonly_fields = fields


class NotificationInline(ReadOnlyInline):
    model = Notification
    fields = ("to_email", "reason", "subject", "status", "attempts", "sent_at", "last_error")
    readonly_fields = fields


class IncidentOpenForm(forms.ModelForm):
    """The add form: opening goes through incident_open, which starts the playbook."""

    class Meta:
        model = Incident
        fields = (
            "title", "summary", "severity", "category", "playbook", "confidential", "drill",
            "detected_at",
        )  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["playbook"].queryset = Playbook.objects.filter(status=Playbook.Status.PUBLISHED)
        self.fields["category"].required = False
        self.fields["category"].help_text = _("Empty: the playbook's scenario.")


class VisibleChoicesMixin:
    """Every field that chooses a record of an incident (an incident, message,
    post-mortem, action item...) offers only those this person may see."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        selector = VISIBLE_BY_MODEL.get(db_field.related_model)
        if selector is not None:
            kwargs["queryset"] = selector(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class VisibleRowsMixin(VisibleChoicesMixin):
    """Rows come through the model's visibility selector, as on every other surface:
    confidential incidents and their records only for crisis managers and the people
    on them. Change pages, history, autocomplete and actions all start here."""

    def get_queryset(self, request):
        return super().get_queryset(request) & VISIBLE_BY_MODEL[self.model](request.user)


@admin.register(Incident)
class IncidentAdmin(VisibleRowsMixin, AuditHistoryAdmin):
    list_display = (
        "reference", "title", "severity", "status", "category", "confidential", "drill",
        "opened_at", "acknowledged_at",
    )  # fmt: skip
    list_filter = ("status", "severity", "category", "confidential", "drill")
    search_fields = ("reference", "title", "summary")
    date_hierarchy = "opened_at"
    ordering = ("-opened_at",)
    inlines = (AssignmentInline, TaskInline, TimelineInline, TimerInline, NotificationInline)
    actions = ("acknowledge", "contain", "resolve", "close", "reopen", "start_postmortem")
    readonly_fields = (
        "reference", "status", "playbook", "opened_by", "acknowledged_by", "opened_at",
        "acknowledged_at", "first_statement_at", "contained_at", "resolved_at", "closed_at",
        "escalation_round", "first_paged_at", "first_statement_minutes", "communications",
        "postmortem_link",
    )  # fmt: skip

    @admin.display(description=_("post-mortem"))
    def postmortem_link(self, obj: Incident):
        from django.utils.html import format_html

        url = reverse("incidents:postmortem", args=[obj.reference])
        return format_html('<a href="{}">{}</a>', url, _("Open the post-mortem report"))

    @admin.action(description=_("Start the post-mortem"))
    def start_postmortem(self, request, queryset):
        for incident in queryset:
            postmortem.postmortem_start(incident=incident, actor=request.user)
        messages.success(request, _("Post-mortems started."))

    @admin.display(description=_("communications timeline"))
    def communications(self, obj: Incident):
        from django.utils.html import format_html

        url = reverse("incidents:communications", args=[obj.reference])
        return format_html('<a href="{}">{}</a>', url, _("Open the communications timeline"))

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = IncidentOpenForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # Severity changes go through the service (timeline entry); the rest is fixed.
        fixed = ("severity", "category", "confidential", "drill", "detected_at")
        return list(dict.fromkeys([*super().get_readonly_fields(request, obj), *fixed]))

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        try:
            opened = services.incident_open(
                title=data["title"],
                summary=data.get("summary") or "",
                severity=data["severity"],
                category=data.get("category") or None,
                playbook=data.get("playbook"),
                confidential=data.get("confidential", False),
                drill=data.get("drill", False),
                detected_at=data.get("detected_at"),
                actor=request.user,
            )
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
            raise
        obj.pk = opened.pk
        obj.reference = opened.reference

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # incidents are the record: they are closed, never deleted

    def _each(self, request: HttpRequest, queryset, service, done: str, **kwargs) -> None:
        ok = 0
        for incident in queryset:
            try:
                result = service(incident=incident, actor=request.user, **kwargs)
            except ValidationError as exc:
                messages.warning(
                    request,
                    # Translators: an incident reference (INC-2026-0001), then why it failed.
                    _("%(ref)s: %(problem)s")
                    % {"ref": incident.reference, "problem": "; ".join(exc.messages)},
                )
                continue
            if result is False:
                messages.info(
                    request, _("%(ref)s was not waiting for that.") % {"ref": incident.reference}
                )
                continue
            ok += 1
        if ok:
            messages.success(request, done % {"n": ok})

    @admin.action(description=_("Acknowledge (stop escalation)"))
    def acknowledge(self, request, queryset):
        self._each(
            request, queryset, services.incident_acknowledge, _("%(n)s acknowledged."), via="admin"
        )

    @admin.action(description=_("Mark contained"))
    def contain(self, request, queryset):
        self._each(request, queryset, services.incident_contain, _("%(n)s marked contained."))

    @admin.action(description=_("Resolve"))
    def resolve(self, request, queryset):
        self._each(request, queryset, services.incident_resolve, _("%(n)s resolved."))

    @admin.action(description=_("Close"))
    def close(self, request, queryset):
        self._each(request, queryset, services.incident_close, _("%(n)s closed."))

    @admin.action(description=_("Reopen (fresh escalation)"))
    def reopen(self, request, queryset):
        self._each(request, queryset, services.incident_reopen, _("%(n)s reopened."))

    def response_add(self, request, obj, post_url_continue=None):
        return HttpResponseRedirect(reverse("admin:incidents_incident_change", args=[obj.pk]))


class DeliveryAttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ("at", "ok", "permanent", "error")
    readonly_fields = fields


@admin.register(Notification)
class NotificationAdmin(VisibleRowsMixin, admin.ModelAdmin):
    """The outbox: every e-mail CrisisDesk sent or tried to send, readable here."""

    list_display = (
        "created_at", "to_email", "subject", "reason", "status", "attempts", "sent_at",
        "cancel_reason",
    )  # fmt: skip
    list_filter = ("status", "reason")
    search_fields = ("to_email", "subject", "incident__reference", "message_id")
    readonly_fields = [f.name for f in Notification._meta.fields]
    inlines = (DeliveryAttemptInline,)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    """Status-page subscriptions, read here; written only by the subscriber's confirmed
    link and removed by their unsubscribe link (incidents/subscribers.py). Only public
    incidents can be subscribed to, so every row may be shown."""

    list_display = ("contact", "incident", "confirmed_at")
    list_filter = ("incident",)
    search_fields = ("contact__email", "incident__reference")
    list_select_related = ("contact", "incident")
    readonly_fields = ("contact", "incident", "confirmed_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Timer)
class TimerAdmin(VisibleRowsMixin, admin.ModelAdmin):
    list_display = (
        "incident",
        "kind",
        "round",
        "cycle",
        "level",
        "due_at",
        "state",
        "fired_at",
        "outcome",
    )
    list_filter = ("state", "kind")
    search_fields = ("incident__reference",)
    readonly_fields = [f.name for f in Timer._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# ------------------------------------------------------------ exercises


class ParticipantInline(ReadOnlyInline):
    model = ExerciseParticipant
    fields = ("user", "role")


class InjectInline(ReadOnlyInline):
    model = Inject
    fields = ("position", "offset_seconds", "title", "text", "fired_at")


@admin.register(Exercise)
class ExerciseAdmin(VisibleRowsMixin, admin.ModelAdmin):
    """Read-only here: exercises are planned and run from the war room (/exercises/),
    through incidents/exercises.py, so the script and its timers stay in step."""

    list_display = ("title", "playbook", "status", "facilitator", "started_at", "ended_at")
    list_filter = ("status",)
    search_fields = ("title",)
    readonly_fields = [f.name for f in Exercise._meta.fields]
    inlines = (ParticipantInline, InjectInline)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# ------------------------------------------------------------ communications


class MessageDraftForm(forms.ModelForm):
    """Drafting: from a template (facts filled from the incident) or from scratch."""

    what_happened = forms.CharField(
        label=_("What happened"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    what_we_do = forms.CharField(
        label=_("What we are doing"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    what_you_can_do = forms.CharField(
        label=_("What the reader can do"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    affected = forms.CharField(label=_("Who or what is affected"), required=False)

    class Meta:
        model = Message
        fields = ("incident", "template", "audience", "channel", "language", "subject", "body")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["body"].required = False
        self.fields["body"].help_text = _("Leave empty to start from the template.")
        # Narrow the admin's choices (the incidents this person may see), never replace them.
        incident = self.fields["incident"]
        incident.queryset = incident.queryset.filter(status__in=Incident.ACTIVE_STATUSES)

    def clean(self):
        data = super().clean()
        if not data.get("template") and not (data.get("body") or "").strip():
            self.add_error("body", _("Write the message or choose a template."))
        try:  # the service's rule, said on the form
            comms.message_words_validate(
                subject=data.get("subject") or "", language=data.get("language") or "en"
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                if field not in self.errors:
                    self.add_error(field, messages)
        return data


class PublishForm(forms.Form):
    where = forms.CharField(label=_("Published where (address or note)"), max_length=500)


class ScheduleForm(forms.Form):
    at = forms.DateTimeField(label=_("Send at (UTC)"), help_text=_("YYYY-MM-DD HH:MM"))


class RevisionInline(ReadOnlyInline):
    model = MessageRevision
    fields = ("at", "editor", "subject", "body")
    readonly_fields = fields
    verbose_name_plural = _("earlier wording (every edit is kept)")


class DeliveryInline(ReadOnlyInline):
    model = Notification
    fk_name = "comms_message"
    fields = ("to_email", "status", "attempts", "sent_at", "last_error")
    readonly_fields = fields
    verbose_name_plural = _("delivery per recipient")


@admin.register(Message)
class MessageAdmin(VisibleRowsMixin, AuditHistoryAdmin):
    list_display = (
        "created_at",
        "incident",
        "audience",
        "channel",
        "language",
        "short",
        "status",
        "author",
        "approver",
        "sent_at",
        "corrects",
    )
    list_filter = ("status", "channel", "audience", "language")
    search_fields = ("subject", "body", "incident__reference")
    list_select_related = ("incident", "audience", "author", "approver", "corrects")
    inlines = (RevisionInline, DeliveryInline)
    actions = (
        "submit",
        "approve",
        "approve_boilerplate",
        "approve_own",
        "send",
        "publish",
        "schedule",
        "correct",
    )

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()

    @admin.display(description=_("message"))
    def short(self, obj: Message) -> str:
        text = obj.subject or obj.body
        flag = " ⚠" if obj.reads_as_boilerplate and not obj.is_final else ""
        return (text[:60] + ("…" if len(text) > 60 else "")) + flag

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = MessageDraftForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return (
                *MessageDraftForm.Meta.fields,
                "what_happened",
                "what_we_do",
                "what_you_can_do",
                "affected",
            )
        return (
            "incident",
            "audience",
            "channel",
            "language",
            "template",
            "status",
            "subject",
            "body",
            "variants",
            "boilerplate_warning",
            "missing",
            "author",
            "submitted_at",
            "approver",
            "approved_at",
            "approval_note",
            "boilerplate_approved",
            "scheduled_for",
            "sent_at",
            "sent_by",
            "published_where",
            "corrects",
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        if obj is not None and obj.status not in Message.EDITABLE:
            # Words that went out (or are approved) change only by a correction.
            extra_context = {**(extra_context or {}), **READ_ONLY_SUBMIT_ROW}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        fixed = [f for f in self.get_fields(request, obj) if f not in ("subject", "body")]
        if obj.status not in Message.EDITABLE:
            fixed += ["subject", "body"]
        return list(dict.fromkeys([*super().get_readonly_fields(request, obj), *fixed]))

    @admin.display(description=_("boilerplate"))
    def boilerplate_warning(self, obj: Message):
        if obj.reads_as_boilerplate:
            return _(
                "This reads as boilerplate: it is the template unchanged. "
                "Stereotyped replies anger people most."
            )
        return "—"

    @admin.display(description=_("other languages"))
    def variants(self, obj: Message):
        """Every other-language variant, as the approver must see it; written in the war
        room, where all languages are edited side by side."""

        def flag(code):
            names = comms.untranslated_facts(obj).get(code)
            if not names:
                return ""
            return format_html(
                ' <strong class="errornote">{}</strong>',
                _("not translated: %(names)s") % {"names": ", ".join(names)},
            )

        def direction(code):
            try:
                return "rtl" if get_language_info(code)["bidi"] else "ltr"
            except KeyError:
                return "ltr"

        rows = format_html_join(
            "",
            '<div lang="{}" dir="{}" class="variant"><h4>{}{}</h4><p><strong>{}</strong></p>'
            '<p style="white-space: pre-wrap">{}</p></div>',
            (
                (
                    code,
                    direction(code),
                    comms.language_name(code),
                    flag(code),
                    variant.get("subject", ""),
                    variant.get("body", ""),
                )
                for code, variant in sorted(obj.translations.items())
            ),
        )
        dropped = ""
        if obj.dropped_languages:
            dropped = format_html(
                "<p>{}</p>",
                _("Dropped on purpose (their contacts get the group's default): %(langs)s")
                % {"langs": ", ".join(comms.language_name(c) for c in obj.dropped_languages)},
            )
        link = format_html(
            '<p><a href="{}">{}</a></p>',
            reverse("warroom:message", args=[obj.incident.reference, obj.pk]),
            _("Read and edit every language side by side in the war room"),
        )
        return format_html("{}{}{}", rows or "—", dropped, link)

    @admin.display(description=_("missing facts"))
    def missing(self, obj: Message):
        return ", ".join(comms.missing_facts(obj)) or "—"

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            edited = comms.message_edit(
                message=obj, editor=request.user, subject=data["subject"], body=data["body"]
            )
            obj.pk = edited.pk
            return
        facts = {
            k: data.get(k) for k in ("what_happened", "what_we_do", "what_you_can_do", "affected")
        }
        made = comms.message_draft(
            incident=data["incident"],
            author=request.user,
            audience=data["audience"],
            channel=data["channel"],
            language=data.get("language") or "en",
            template=data.get("template"),
            facts=facts,
            subject=data.get("subject") or "",
            body=data.get("body") or "",
        )
        obj.pk = made.pk

    def save_related(self, request, form, formsets, change):
        # The inlines are read-only records; the message itself was saved by a service.
        for formset in formsets:
            formset.save()

    def has_delete_permission(self, request, obj=None) -> bool:
        return obj is not None and obj.status == Message.Status.DRAFT

    def _each(self, request, queryset, fn, done):
        ok = 0
        for message in queryset:
            try:
                fn(message)
                ok += 1
            except (ValidationError, PermissionDenied) as exc:
                text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
                messages.error(
                    request,
                    # Translators: a message number, then why the action failed on it.
                    _("#%(id)s: %(problem)s") % {"id": message.pk, "problem": text},
                )
        if ok:
            messages.success(request, done % {"n": ok})

    @admin.action(description=_("Submit for approval"))
    def submit(self, request, queryset):
        self._each(
            request,
            queryset,
            lambda m: comms.message_submit(message=m, actor=request.user),
            _("%(n)s submitted."),
        )

    @admin.action(description=_("Approve"), permissions=["view"])
    def approve(self, request, queryset):
        self._each(
            request,
            queryset,
            lambda m: comms.message_approve(message=m, approver=request.user),
            _("%(n)s approved."),
        )

    @admin.action(description=_("Approve although it reads as boilerplate"), permissions=["view"])
    def approve_boilerplate(self, request, queryset):
        self._each(
            request,
            queryset,
            lambda m: comms.message_approve(
                message=m, approver=request.user, accept_boilerplate=True
            ),
            _("%(n)s approved."),
        )

    @admin.action(description=_("Approve my own message (crisis manager)"), permissions=["view"])
    def approve_own(self, request, queryset):
        self._each(
            request,
            queryset,
            lambda m: comms.message_approve(message=m, approver=request.user, approve_own=True),
            _("%(n)s approved."),
        )

    @admin.action(description=_("Send (e-mail to every contact of the audience)"))
    def send(self, request, queryset):
        self._each(
            request,
            queryset,
            lambda m: comms.message_send(message=m, actor=request.user),
            _("%(n)s sent."),
        )

    def _with_form(self, request, queryset, form_class, action, title, apply):
        form = form_class(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            self._each(request, queryset, lambda m: apply(m, form.cleaned_data), _("%(n)s done."))
            return None
        return TemplateResponse(
            request,
            "admin/incidents/message/action_form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": title,
                "form": form,
                "queryset": queryset,
                "action": action,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )

    @admin.action(description=_("Mark published (where, when, by whom)"))
    def publish(self, request, queryset):
        return self._with_form(
            request,
            queryset,
            PublishForm,
            "publish",
            _("Mark published"),
            lambda m, d: comms.message_publish(message=m, actor=request.user, where=d["where"]),
        )

    @admin.action(description=_("Schedule sending"))
    def schedule(self, request, queryset):
        return self._with_form(
            request,
            queryset,
            ScheduleForm,
            "schedule",
            _("Schedule sending"),
            lambda m, d: comms.message_schedule(message=m, actor=request.user, at=d["at"]),
        )

    @admin.action(description=_("Draft a correction"))
    def correct(self, request, queryset):
        made = []
        for original in queryset:
            if not original.is_final:
                messages.error(
                    request, _("#%(id)s has not gone out: edit it instead.") % {"id": original.pk}
                )
                continue
            made.append(
                comms.message_correct(original=original, author=request.user, body=original.body)
            )
        if len(made) == 1:
            return HttpResponseRedirect(
                reverse("admin:incidents_message_change", args=[made[0].pk])
            )
        return None


# ------------------------------------------------------------------ post-mortems


class ActionItemInline(admin.TabularInline):
    model = ActionItem
    extra = 1
    can_delete = False
    fields = ("title", "kind", "owner", "due_on", "status", "playbook", "produced_version")
    readonly_fields = ("produced_version",)
    autocomplete_fields = ("owner",)


def _action_item_save(request, obj: ActionItem, data: dict, change: bool) -> ActionItem:
    """Admin forms (the item's page and the post-mortem's inline) save through the services."""
    fields = {k: data[k] for k in postmortem.ACTION_ITEM_FIELDS if k in data}
    status = data.get("status")
    if change:
        return postmortem.action_item_update(item=obj, actor=request.user, status=status, **fields)
    return postmortem.action_item_create(
        postmortem=data.get("postmortem") or obj.postmortem,
        actor=request.user,
        status=status,
        **fields,
    )


class RevisionInlinePM(ReadOnlyInline):
    model = PostMortemRevision
    fields = ("number", "published_at", "published_by")


@admin.register(PostMortem)
class PostMortemAdmin(VisibleRowsMixin, AuditHistoryAdmin):
    list_display = ("incident", "status", "revision", "updated_at", "published_at")
    list_filter = ("status",)
    search_fields = ("incident__reference", "incident__title", "summary")
    inlines = (ActionItemInline, RevisionInlinePM)
    actions = ("submit", "publish")
    fields = (
        "incident", "report", "status", "revision", *PostMortem.NARRATIVE,
        "updated_by", "submitted_at", "published_at", "published_by",
    )  # fmt: skip
    readonly_fields = (
        "incident", "report", "status", "revision", "updated_by", "submitted_at",
        "published_at", "published_by",
    )  # fmt: skip

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("incident")

    def has_add_permission(self, request) -> bool:
        return False  # started by resolving an incident, or its "Start the post-mortem"

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("report"))
    def report(self, obj: PostMortem):
        from django.utils.html import format_html

        url = reverse("incidents:postmortem", args=[obj.incident.reference])
        return format_html(
            '<a href="{}">{}</a>', url, _("Read the report with the facts from the record")
        )

    def save_formset(self, request, form, formset, change):
        if formset.model is not ActionItem:
            return super().save_formset(request, form, formset, change)
        # The admin's change message reads these three lists after saving.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline in formset.forms:
            if inline.has_changed() and inline.cleaned_data:
                data = {**inline.cleaned_data, "postmortem": form.instance}
                change = inline.instance.pk is not None
                item = _action_item_save(request, inline.instance, data, change)
                if change:
                    formset.changed_objects.append((item, inline.changed_data))
                else:
                    formset.new_objects.append(item)
        return None

    def save_model(self, request, obj, form, change):
        # Through the service: editing a published report starts the next revision.
        narrative = {name: form.cleaned_data[name] for name in PostMortem.NARRATIVE}
        stored = PostMortem.objects.get(pk=obj.pk)
        saved = postmortem.postmortem_edit(postmortem=stored, actor=request.user, **narrative)
        obj.__dict__.update(saved.__dict__)

    @admin.action(description=_("Submit for review"))
    def submit(self, request, queryset):
        self._each(request, queryset, postmortem.postmortem_submit, _("%(n)s submitted."))

    @admin.action(description=_("Publish (freeze this revision)"))
    def publish(self, request, queryset):
        self._each(request, queryset, postmortem.postmortem_publish, _("%(n)s published."))

    def _each(self, request, queryset, service, done):
        ok = 0
        for pm in queryset:
            try:
                service(postmortem=pm, actor=request.user)
            except ValidationError as exc:
                messages.warning(
                    request,
                    _("%(ref)s: %(problem)s")
                    % {"ref": pm.incident.reference, "problem": "; ".join(exc.messages)},
                )
                continue
            except PermissionDenied as exc:
                messages.error(
                    request,
                    _("%(ref)s: %(problem)s") % {"ref": pm.incident.reference, "problem": exc},
                )
                continue
            ok += 1
        if ok:
            messages.success(request, done % {"n": ok})


class OverdueFilter(admin.SimpleListFilter):
    title = _("overdue")
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return (("yes", _("Overdue")),)

    def queryset(self, request, queryset):
        if self.value() == "yes":
            from django.utils import timezone

            return queryset.filter(
                status__in=ActionItem.OPEN_STATUSES, due_on__lt=timezone.localdate()
            )
        return queryset


@admin.register(ActionItem)
class ActionItemAdmin(VisibleRowsMixin, AuditHistoryAdmin):
    list_display = (
        "title", "kind", "owner", "due_on", "overdue", "status", "playbook", "produced_version",
    )  # fmt: skip
    list_filter = (OverdueFilter, "status", "kind")
    search_fields = ("title", "postmortem__incident__reference")
    list_select_related = ("owner", "playbook", "produced_version", "postmortem__incident")
    autocomplete_fields = ("owner",)
    readonly_fields = ("produced_version", "created_at", "done_at", "last_reminded_on")
    actions = ("revise_playbook", "mark_done")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change):
        saved = _action_item_save(request, obj, form.cleaned_data, change)
        obj.__dict__.update(saved.__dict__)

    @admin.display(boolean=True, description=_("overdue"))
    def overdue(self, obj: ActionItem) -> bool:
        return obj.is_overdue

    @admin.action(description=_("Start the playbook revision (new draft version)"))
    def revise_playbook(self, request, queryset):
        for item in queryset:
            try:
                item = postmortem.action_item_revise_playbook(item=item, actor=request.user)
            except ValidationError as exc:
                messages.warning(
                    request,
                    # Translators: an action item's title, then why the revision failed.
                    _("“%(title)s”: %(problem)s")
                    % {"title": item.title, "problem": "; ".join(exc.messages)},
                )
                continue
            messages.success(
                request,
                _("“%(title)s”: draft version %(v)s of %(playbook)s.")
                % {
                    "title": item.title,
                    "v": item.produced_version.version,
                    "playbook": item.produced_version.title,
                },
            )

    @admin.action(description=_("Mark done"))
    def mark_done(self, request, queryset):
        for item in queryset:
            postmortem.action_item_set_status(item=item, status=ActionItem.Status.DONE)
        messages.success(request, _("Marked done."))
