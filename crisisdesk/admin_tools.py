"""Admin pieces both apps share: a read-only audit history that follows the object's
visibility, and a view-on-site shortcut that resolves objects the same way."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.contenttypes.models import ContentType
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

# The one answer for anything this person may not open: hidden, made up or not permitted.
NOT_FOUND = _("Not found.")


class AuditHistoryAdmin(SimpleHistoryAdmin):
    """django-simple-history's admin, made to follow the object and never to write.

    1. The history list and each revision answer only for an object this person may
       open: in ``get_queryset`` (the permission-filtered selector) and with the view
       or change permission. Anything else, hidden, made up or not permitted, is the
       same 404 (simple-history alone falls back to the historical record of a hidden
       object, and answers 403 where a made-up id gets 404).
    2. There is no revert: a revision is shown read-only and a POST to it changes
       nothing (405). Records with a life cycle change through their services, which
       check the rules and write the timeline; an old revision is never written back.
    """

    def _visible_or_404(self, request: HttpRequest, object_id: str):
        if not self.has_view_or_change_permission(request):
            raise Http404(NOT_FOUND)
        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.has_view_or_change_permission(request, obj):
            raise Http404(NOT_FOUND)
        return obj

    def history_view(self, request, object_id, extra_context=None):
        self._visible_or_404(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        self._visible_or_404(request, object_id)
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        request.showing_revision = True
        return super().history_form_view(request, object_id, version_id, extra_context)

    def revert_disabled(self, request, obj=None) -> bool:
        return True

    def get_readonly_fields(self, request, obj=None):
        fixed = super().get_readonly_fields(request, obj)
        if not getattr(request, "showing_revision", False):
            return fixed
        opts = self.model._meta
        every = [f.name for f in [*opts.fields, *opts.many_to_many] if f.editable]
        return [*fixed, *(name for name in every if name not in fixed)]


def view_on_site(request: HttpRequest, content_type_id: str, object_id: str) -> HttpResponse:
    """The admin's "view on site" redirect (``/admin/r/<type>/<id>/``), resolved through
    the model admin's queryset, so through the visibility selectors.

    Django's own view tells a real object from a made-up one (different 404 messages
    with DEBUG on) and redirects to any object's page. Here every object this person
    may not open, and every made-up type or id, gets the same 404.
    """
    try:
        model = ContentType.objects.get_for_id(int(content_type_id)).model_class()
    except (ContentType.DoesNotExist, ValueError):
        raise Http404(NOT_FOUND) from None
    if model is None or not admin.site.is_registered(model):
        raise Http404(NOT_FOUND)
    model_admin = admin.site.get_model_admin(model)
    if not model_admin.has_view_or_change_permission(request):
        raise Http404(NOT_FOUND)
    obj = model_admin.get_object(request, unquote(object_id))
    if obj is None or not hasattr(obj, "get_absolute_url"):
        raise Http404(NOT_FOUND)
    return redirect(obj.get_absolute_url())


# What the change form's submit row shows for a record nobody may change there
# (a frozen playbook version, a message that went out): no Save, no Delete.
READ_ONLY_SUBMIT_ROW = {
    "show_save": False,
    "show_save_and_continue": False,
    "show_save_and_add_another": False,
    "show_save_as_new": False,
    "show_delete": False,
}
