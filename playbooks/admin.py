"""Admin for preparedness: everything a crisis team sets up before a crisis.

Writes go through playbooks.services; a published or retired playbook version
is read-only here (an incident may be running it): the "New version" action
makes an editable draft.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from crisisdesk.admin_tools import READ_ONLY_SUBMIT_ROW, AuditHistoryAdmin
from playbooks import services
from playbooks.models import (
    Channel,
    CrisisRole,
    EscalationLevel,
    MessageTemplate,
    OnCallRotation,
    Playbook,
    PlaybookStep,
    ReviewReminder,
    Risk,
    RotationMember,
    RotationOverride,
    Stakeholder,
    StakeholderGroup,
    SurfaceChannel,
    UpdateCadence,
    UserProfile,
    rating_for,
)
from playbooks.oncall import oncall_holder, rotation_holder, rotation_ical_url, rotation_shifts
from playbooks.playbook_io import (
    MAX_DOCUMENT_BYTES,
    PlaybookImportError,
    playbooks_export_yaml,
    playbooks_import_yaml,
)
from playbooks.stakeholder_import import (
    MAX_CSV_BYTES,
    CsvImportError,
    stakeholders_export_csv,
    stakeholders_import_csv,
)


class ChoicesListField(forms.MultipleChoiceField):
    """A JSON list of choice values edited as checkboxes."""

    widget = forms.CheckboxSelectMultiple

    def prepare_value(self, value):
        return value or []


class UploadForm(forms.Form):
    """An uploaded text file, refused before it is read if it is larger than the import takes."""

    file = forms.FileField(label=_("File"))
    max_bytes = MAX_DOCUMENT_BYTES

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > self.max_bytes:
            raise ValidationError(
                _("The file is larger than %(n)s bytes: split it.") % {"n": self.max_bytes}
            )
        return upload

    def text(self) -> str:
        raw = self.cleaned_data["file"].read()
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationError(_("The file is not UTF-8 text.")) from None


# ----------------------------------------------------------------- playbooks


class FrozenInlineMixin:
    """Inlines of a published or retired version cannot be added to, changed or deleted."""

    extra = 0

    def _editable(self, obj) -> bool:
        return obj is None or not obj.is_frozen

    def has_add_permission(self, request, obj=None):
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._editable(obj) and super().has_delete_permission(request, obj)


class StepInline(FrozenInlineMixin, admin.TabularInline):
    model = PlaybookStep
    fields = ("position", "phase", "title", "role", "due_offset_minutes", "instructions")
    ordering = ("position",)


class TemplateInline(FrozenInlineMixin, admin.StackedInline):
    model = MessageTemplate
    fields = (("name", "audience", "channel", "language"), "subject", "body")

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        names = ", ".join("{%s}" % name for name in MessageTemplate.PLACEHOLDERS)
        formset.form.base_fields["body"].help_text = _("Placeholders: %(names)s") % {"names": names}
        return formset


class LevelFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        positions = [
            form.cleaned_data["position"]
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("position") is not None
        ]
        try:
            services.escalation_positions_validate(positions)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["position"]) from None


class LevelInline(FrozenInlineMixin, admin.TabularInline):
    model = EscalationLevel
    formset = LevelFormSet
    fields = ("position", "delay_seconds", "target", "role", "rotation", "users")
    filter_horizontal = ("users",)
    ordering = ("position",)


class CadenceInline(FrozenInlineMixin, admin.TabularInline):
    model = UpdateCadence
    fields = ("audience", "every_minutes")


class PlaybookForm(forms.ModelForm):
    """The services' rules, checked while the form can still say so."""

    class Meta:
        model = Playbook
        fields = "__all__"  # noqa: DJ007 - the ModelAdmin chooses the fields

    def clean(self):
        data = super().clean()
        if self.instance.pk is None:
            if data.get("key"):
                services.playbook_check_new_key(key=data["key"])
        else:
            changes = {f: data[f] for f in services.PLAYBOOK_FIELDS if f in data}
            services.playbook_check_update(playbook=self.instance, data=changes)
        return data


@admin.register(Playbook)
class PlaybookAdmin(AuditHistoryAdmin):
    form = PlaybookForm
    list_display = (
        "title",
        "key",
        "version",
        "status",
        "scenario",
        "owner",
        "next_review",
        "review_state",
    )
    list_filter = ("status", "scenario", "owner")
    search_fields = ("title", "key", "summary")
    ordering = ("key", "-version")
    inlines = (StepInline, TemplateInline, LevelInline, CadenceInline)
    readonly_fields = ("version", "status", "published_at", "created_at", "updated_at")
    actions = ("mark_reviewed", "publish", "retire", "new_version", "export_yaml")
    change_list_template = "admin/playbooks/playbook/change_list.html"
    fieldsets = (
        (None, {"fields": ("key", "title", "scenario", "owner", "summary", "severity_guidance")}),
        (
            _("Targets"),
            {
                "fields": (
                    "first_statement_minutes",
                    "escalation_repeat_count",
                    "page_at_once_max_severity",
                    "roll_call_minutes",
                    "reply_minutes",
                    "reply_warn_minutes",
                    "reply_deadlines",
                )
            },
        ),
        (_("Review"), {"fields": ("review_cycle_days", "last_reviewed_on")}),
        (
            _("Version"),
            {"fields": ("version", "status", "published_at", "created_at", "updated_at")},
        ),
    )

    @admin.display(description=_("next review"))
    def next_review(self, obj: Playbook):
        return obj.next_review_on

    @admin.display(description=_("review"))
    def review_state(self, obj: Playbook):
        if obj.review_overdue:
            return format_html('<strong class="cd-overdue">{}</strong>', _("overdue"))
        return "—"

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.is_frozen:
            return [f.name for f in Playbook._meta.fields if f.name != "id"]
        return super().get_readonly_fields(request, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        if obj is not None and obj.is_frozen and request.method == "GET":
            messages.info(
                request,
                _(
                    "This version is %(status)s and read-only: "
                    "use the “New version” action to change it."
                )
                % {"status": obj.get_status_display().lower()},
            )
        if obj is not None and obj.is_frozen:
            extra_context = {**(extra_context or {}), **READ_ONLY_SUBMIT_ROW}
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        data = {f: form.cleaned_data[f] for f in services.PLAYBOOK_FIELDS if f in form.cleaned_data}
        if change:
            saved = services.playbook_update(playbook=obj, data=data)
        else:
            saved = services.playbook_create(data=data)
        obj.pk = saved.pk
        obj.refresh_from_db()
        obj._state.adding = False

    def save_formset(self, request, form, formset, change):
        """Steps, templates, levels and cadences go through the content services."""
        instances = formset.save(commit=False)
        for gone in formset.deleted_objects:
            # The formset checked the whole new numbering: no renumbering behind its back.
            services.playbook_content_delete(instance=gone, renumber=False)
        for instance in sorted(instances, key=lambda i: getattr(i, "position", 0) or 0):
            services.playbook_content_save(instance=instance)
        formset.save_m2m()

    def delete_model(self, request, obj):
        services.playbook_delete(playbook=obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_frozen:
            return False  # the same rule as services.playbook_delete
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        # A bulk delete would skip the service's rules; versions are deleted one by one.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="playbooks_playbook_import",
            ),
            *super().get_urls(),
        ]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        errors: list[str] = []
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                result = playbooks_import_yaml(text=form.text(), actor=request.user)
            except ValidationError as exc:
                form.add_error("file", exc)
            except PlaybookImportError as exc:
                errors = exc.errors
            else:
                messages.success(
                    request,
                    _("Imported: %(created)s created, %(unchanged)s unchanged.")
                    % {"created": len(result.created), "unchanged": len(result.unchanged)},
                )
                return HttpResponseRedirect(reverse("admin:playbooks_playbook_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "errors": errors,
            "title": _("Import playbooks (YAML)"),
            "help": _(
                "A file with an error is refused whole; every error is listed with its line."
            ),
        }
        return render(request, "admin/playbooks/upload.html", context)

    def _each(self, request, queryset, fn, done) -> int:
        ok = 0
        for playbook in queryset:
            try:
                fn(playbook)
                ok += 1
            except ValidationError as exc:
                messages.error(
                    request,
                    # Translators: a playbook's title and version, then why it failed.
                    _("%(playbook)s: %(problem)s")
                    % {"playbook": playbook, "problem": " ".join(exc.messages)},
                )
        if ok:
            messages.success(request, done % {"n": ok})
        return ok

    @admin.action(description=_("Mark reviewed today"))
    def mark_reviewed(self, request, queryset):
        self._each(
            request,
            queryset,
            lambda p: services.playbook_mark_reviewed(playbook=p),
            _("%(n)s marked reviewed."),
        )

    @admin.action(description=_("Publish (retires the previous version)"))
    def publish(self, request, queryset):
        self._each(
            request,
            queryset,
            lambda p: services.playbook_publish(playbook=p, actor=request.user),
            _("%(n)s published."),
        )

    @admin.action(description=_("Retire"))
    def retire(self, request, queryset):
        self._each(
            request, queryset, lambda p: services.playbook_retire(playbook=p), _("%(n)s retired.")
        )

    @admin.action(description=_("New version (editable draft)"))
    def new_version(self, request, queryset):
        drafts = [services.playbook_new_version(playbook=p, actor=request.user) for p in queryset]
        if len(drafts) == 1:
            return HttpResponseRedirect(
                reverse("admin:playbooks_playbook_change", args=[drafts[0].pk])
            )
        messages.success(request, _("%(n)s drafts ready.") % {"n": len(drafts)})
        return None

    @admin.action(description=_("Export as YAML"))
    def export_yaml(self, request, queryset):
        text = playbooks_export_yaml(playbooks=queryset.order_by("key", "version"))
        response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="playbooks-{stamp}.yaml"'
        return response


# --------------------------------------------------------------------- risks


class RiskForm(forms.ModelForm):
    channels = ChoicesListField(choices=SurfaceChannel.choices, required=False, label=_("channels"))

    class Meta:
        model = Risk
        fields = "__all__"  # noqa: DJ007 - the ModelAdmin chooses the fields


class CellFilter(admin.SimpleListFilter):
    """Lets the heat map link to one cell: ?likelihood=..&impact=.. are plain lookups."""

    title = _("rating")
    parameter_name = "rating"

    def lookups(self, request, model_admin):
        return [
            ("critical", _("Critical")),
            ("high", _("High")),
            ("medium", _("Medium")),
            ("low", _("Low")),
        ]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        ids = [r.pk for r in queryset if r.rating == self.value()]
        return queryset.filter(pk__in=ids)


@admin.register(Risk)
class RiskAdmin(AuditHistoryAdmin):
    form = RiskForm
    list_display = (
        "title",
        "category",
        "likelihood",
        "impact",
        "score_display",
        "velocity",
        "status",
        "owner",
        "next_review_on",
        "review_state",
    )
    list_filter = ("category", "status", "owner", "likelihood", "impact", CellFilter)
    search_fields = ("title", "description", "mitigations")
    autocomplete_fields = ("playbook",)
    actions = ("mark_reviewed",)
    change_list_template = "admin/playbooks/risk/change_list.html"

    @admin.display(description=_("score"), ordering="likelihood")
    def score_display(self, obj: Risk):
        return format_html('<span class="cd-rating cd-{}">{}</span>', obj.rating, obj.score)

    @admin.display(description=_("review"))
    def review_state(self, obj: Risk):
        if obj.review_overdue:
            return format_html('<strong class="cd-overdue">{}</strong>', _("overdue"))
        return "—"

    @admin.action(description=_("Mark reviewed (next review in 90 days)"))
    def mark_reviewed(self, request, queryset):
        for risk in queryset:
            services.risk_mark_reviewed(risk=risk)
        messages.success(request, _("%(n)s marked reviewed.") % {"n": queryset.count()})

    def get_urls(self):
        return [
            path(
                "heatmap/",
                self.admin_site.admin_view(self.heatmap_view),
                name="playbooks_risk_heatmap",
            ),
            *super().get_urls(),
        ]

    def heatmap_view(self, request: HttpRequest) -> HttpResponse:
        """5 × 5 likelihood × impact, counts per cell; closed risks left out unless asked for."""
        include_closed = request.GET.get("closed") == "1"
        risks = (
            Risk.objects.all()
            if include_closed
            else Risk.objects.exclude(status=Risk.Status.CLOSED)
        )
        counts = {
            (row["likelihood"], row["impact"]): row["n"]
            for row in risks.values("likelihood", "impact").annotate(n=Count("id"))
        }
        changelist = reverse("admin:playbooks_risk_changelist")
        rows = []
        for likelihood in range(5, 0, -1):
            cells = []
            for impact in range(1, 6):
                n = counts.get((likelihood, impact), 0)
                cells.append(
                    {
                        "likelihood": likelihood,
                        "impact": impact,
                        "count": n,
                        "rating": rating_for(likelihood * impact),
                        "url": f"{changelist}?likelihood={likelihood}&impact={impact}",
                    }
                )
            rows.append({"likelihood": likelihood, "cells": cells})
        overdue = [
            r for r in risks.select_related("owner").order_by("next_review_on") if r.review_overdue
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Risk heat map"),
            "rows": rows,
            "impacts": range(1, 6),
            "overdue": overdue,
            "total": sum(counts.values()),
            "include_closed": include_closed,
        }
        return render(request, "admin/playbooks/risk/heatmap.html", context)


# ------------------------------------------------------------ people & roles


@admin.register(CrisisRole)
class CrisisRoleAdmin(AuditHistoryAdmin):
    list_display = ("name", "slug", "can_approve_messages", "holder_names", "on_call_now")
    search_fields = ("name", "slug")
    filter_horizontal = ("holders",)
    prepopulated_fields = {"slug": ("name",)}

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("holders")

    @admin.display(description=_("team members"))
    def holder_names(self, obj: CrisisRole) -> str:
        return ", ".join(u.get_full_name() or u.get_username() for u in obj.holders.all())

    @admin.display(description=_("on call now"))
    def on_call_now(self, obj: CrisisRole) -> str:
        user = oncall_holder(role=obj)
        return (user.get_full_name() or user.get_username()) if user else "—"


class MemberInline(admin.TabularInline):
    model = RotationMember
    extra = 0
    ordering = ("position",)


class OverrideInline(admin.TabularInline):
    model = RotationOverride
    extra = 0
    fields = ("user", "starts_at", "ends_at", "reason")


@admin.register(OnCallRotation)
class OnCallRotationAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "role",
        "priority",
        "handoff_hours",
        "timezone",
        "is_active",
        "holder_now",
    )
    list_filter = ("role", "is_active", "timezone")
    search_fields = ("name", "role__name")
    inlines = (MemberInline, OverrideInline)
    readonly_fields = ("holder_now", "calendar_feed", "upcoming")

    @admin.display(description=_("on call now"))
    def holder_now(self, obj: OnCallRotation) -> str:
        if obj.pk is None:
            return "—"
        user = rotation_holder(rotation=obj)
        return (user.get_full_name() or user.get_username()) if user else "—"

    @admin.display(description=_("calendar feed (subscribe in your calendar app)"))
    def calendar_feed(self, obj: OnCallRotation):
        if obj.pk is None:
            return "—"
        url = rotation_ical_url(obj)
        return format_html('<input type="text" readonly size="80" value="{}" dir="ltr">', url)

    @admin.display(description=_("next shifts"))
    def upcoming(self, obj: OnCallRotation):
        if obj.pk is None:
            return "—"
        now = timezone.now()
        shifts = rotation_shifts(rotation=obj, start=now, end=now + timedelta(days=28))[:8]
        lines = []
        for s in shifts:
            values = {
                "start": timezone.localtime(s.starts_at).strftime("%Y-%m-%d %H:%M"),
                "end": timezone.localtime(s.ends_at).strftime("%Y-%m-%d %H:%M"),
                "who": s.user.get_full_name() or s.user.get_username(),
            }
            line = (
                # Translators: one shift of an on-call rotation: from, to, and who holds it.
                _("%(start)s – %(end)s: %(who)s (override)")
                if s.is_override
                else _("%(start)s – %(end)s: %(who)s")
            )
            lines.append((line % values,))
        return format_html_join("", "<div>{}</div>", lines)


# -------------------------------------------------------------- stakeholders


class GroupForm(forms.ModelForm):
    preferred_channels = ChoicesListField(
        choices=Channel.choices, required=False, label=_("preferred channels")
    )

    class Meta:
        model = StakeholderGroup
        fields = "__all__"  # noqa: DJ007 - the ModelAdmin chooses the fields


class ContactInline(admin.TabularInline):
    model = Stakeholder
    extra = 0
    fields = ("name", "organisation", "email", "phone", "language")
    show_change_link = True


class CsvImportForm(UploadForm):
    max_bytes = MAX_CSV_BYTES
    group = forms.ModelChoiceField(
        queryset=StakeholderGroup.objects.all(),
        required=False,
        label=_("Group"),
        help_text=_("For rows without a “group” column."),
    )


@admin.register(StakeholderGroup)
class StakeholderGroupAdmin(AuditHistoryAdmin):
    form = GroupForm
    list_display = (
        "name", "slug", "kind", "priority", "default_language", "public", "contact_count",
    )  # fmt: skip
    list_filter = ("kind", "public", "default_language")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = (ContactInline,)
    actions = ("export_csv",)
    change_list_template = "admin/playbooks/stakeholdergroup/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_contacts=Count("contacts"))

    @admin.display(description=_("contacts"), ordering="n_contacts")
    def contact_count(self, obj) -> int:
        return obj.n_contacts

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="playbooks_stakeholder_import",
            ),
            *super().get_urls(),
        ]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        errors = []
        form = CsvImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                report = stakeholders_import_csv(
                    text=form.text(), default_group=form.cleaned_data["group"]
                )
            except ValidationError as exc:
                form.add_error("file", exc)
            except CsvImportError as exc:
                errors = [str(e) for e in exc.errors]
            else:
                messages.success(
                    request,
                    _(
                        "Contacts imported: %(c)s created, %(u)s updated, %(s)s unchanged, "
                        "%(d)s duplicates in the file."
                    )
                    % {
                        "c": report.created,
                        "u": report.updated,
                        "s": report.unchanged,
                        "d": report.duplicates_in_file,
                    },
                )
                return HttpResponseRedirect(reverse("admin:playbooks_stakeholdergroup_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "errors": errors,
            "title": _("Import contacts (CSV)"),
            "help": _(
                "Columns: name, email, phone, organisation, language, group, notes. Nothing is "
                "imported unless every row is valid; contacts are matched by e-mail."
            ),
        }
        return render(request, "admin/playbooks/upload.html", context)

    @admin.action(description=_("Export contacts as CSV"))
    def export_csv(self, request, queryset):
        response = HttpResponse(
            stakeholders_export_csv(groups=queryset), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = 'attachment; filename="contacts.csv"'
        return response


@admin.register(Stakeholder)
class StakeholderAdmin(AuditHistoryAdmin):
    list_display = ("name", "organisation", "email", "phone", "group", "language")
    list_filter = ("group", "language")
    search_fields = ("name", "email", "organisation")
    list_select_related = ("group",)


class TemplateForm(forms.ModelForm):
    class Meta:
        model = MessageTemplate
        fields = "__all__"  # noqa: DJ007 - the ModelAdmin chooses the fields

    def clean_playbook(self):
        playbook = self.cleaned_data["playbook"]
        services.playbook_ensure_editable(playbook)
        return playbook


@admin.register(MessageTemplate)
class MessageTemplateAdmin(AuditHistoryAdmin):
    form = TemplateForm
    list_display = ("name", "playbook", "audience", "channel", "language")
    list_filter = ("channel", "language", "audience")
    search_fields = ("name", "subject", "body", "playbook__title")
    list_select_related = ("playbook", "audience")

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.playbook.is_frozen:
            return False
        return super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        services.playbook_content_save(instance=obj)

    def delete_model(self, request, obj):
        services.playbook_content_delete(instance=obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.playbook.is_frozen:
            return False
        return super().has_delete_permission(request, obj)


@admin.register(ReviewReminder)
class ReviewReminderAdmin(admin.ModelAdmin):
    list_display = ("sent_on", "user", "items")
    list_filter = ("sent_on",)

    def has_add_permission(self, request) -> bool:
        return False


class ProfileInline(admin.StackedInline):
    """A person's phone (shown with them on the dashboard's on-call list), language
    and time zone, next to their account."""

    model = UserProfile
    can_delete = False
    extra = 1
    max_num = 1


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class PersonAdmin(UserAdmin):
    inlines = [ProfileInline]
