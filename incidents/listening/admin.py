"""Listening in the admin: sources (the secret shown once), rules, and mentions and
detections read through the same visibility selectors as every other surface."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from incidents.listening import services
from incidents.listening.models import Detection, ListeningRule, Mention, Source
from incidents.listening.selectors import detections_visible_to, mentions_visible_to
from incidents.selectors import VISIBLE_BY_MODEL


def _secret_page(request, source: Source, *, opts) -> TemplateResponse:
    """The secret, once: on a page of its own, never in a message cookie or a log."""
    return TemplateResponse(
        request,
        "listening/admin_secret.html",
        {
            "source": source,
            "secret": source.secret,
            "opts": opts,
            "title": _("The webhook secret of %(name)s") % {"name": source.name},
        },
    )


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "kind", "enabled", "healthy", "last_error", "next_poll_at")
    list_filter = ("kind", "enabled", "healthy")
    search_fields = ("name", "slug")
    readonly_fields = (
        "healthy", "last_error", "failures", "last_polled_at", "next_poll_at", "created_at",
    )  # fmt: skip
    actions = ("rotate_secret",)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "feed_url":
            kwargs["assume_scheme"] = "https"
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        created = services.source_create(
            name=obj.name, slug=obj.slug, kind=obj.kind, channel=obj.channel,
            feed_url=obj.feed_url, poll_minutes=obj.poll_minutes, enabled=obj.enabled,
        )  # fmt: skip
        obj.pk, obj.secret = created.pk, created.secret
        obj._state.adding = False

    def response_add(self, request, obj, post_url_continue=None):
        if obj.kind in (Source.Kind.WEBHOOK, Source.Kind.ALERTMANAGER):
            return _secret_page(request, obj, opts=self.model._meta)
        return super().response_add(request, obj, post_url_continue)

    @admin.action(description=_("Make a new webhook secret (shown once)"))
    def rotate_secret(self, request, queryset):
        if not request.user.has_perm("listening.change_source"):
            raise PermissionDenied
        if queryset.count() != 1:
            self.message_user(request, _("Choose one source at a time."), level="warning")
            return None
        source = services.source_rotate_secret(source=queryset.get())
        return _secret_page(request, source, opts=self.model._meta)


@admin.register(ListeningRule)
class ListeningRuleAdmin(admin.ModelAdmin):
    list_display = (
        "name", "risk", "enabled", "window_minutes", "threshold_count", "negative_percent",
        "last_fired_at",
    )  # fmt: skip
    list_filter = ("enabled",)
    search_fields = ("name", "risk__title")
    autocomplete_fields = ("risk",)


@admin.register(Mention)
class MentionAdmin(admin.ModelAdmin):
    """Read-only: mentions arrive through their sources and the war room's page."""

    list_display = ("__str__", "received_at", "source", "author", "sentiment", "risk", "incident")
    list_filter = ("state", "channel", "sentiment", "kind", "source")
    search_fields = ("text", "author")
    readonly_fields = [f.name for f in Mention._meta.fields]
    # Read-only: no form field is built, so no URL field warns about its scheme.
    fields = readonly_fields

    def get_queryset(self, request):
        return mentions_visible_to(request.user).select_related("source", "risk", "incident")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Detection)
class DetectionAdmin(admin.ModelAdmin):
    list_display = ("at", "rule", "risk", "incident", "opened", "reason")
    readonly_fields = [f.name for f in Detection._meta.fields]

    def get_queryset(self, request):
        return detections_visible_to(request.user).select_related("rule", "risk", "incident")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        selector = VISIBLE_BY_MODEL.get(db_field.related_model)
        if selector is not None:
            kwargs["queryset"] = selector(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
