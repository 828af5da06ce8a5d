"""What every API endpoint shares: permissions, errors, filtering and the router."""

from __future__ import annotations

import django_filters
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django_filters.fields import ModelMultipleChoiceField
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, filters, pagination, permissions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from crisisdesk.errors import AppendOnlyError


class ModelPermissions(permissions.DjangoModelPermissions):
    """Django's model permissions, reading included: GET needs the view permission."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }
    STANDARD = {"list", "retrieve", "create", "update", "partial_update", "destroy", None}

    def has_permission(self, request, view):
        if getattr(view, "action", None) in self.STANDARD:
            return super().has_permission(request, view)
        # An action (acknowledge, approve, publish...) needs to see the object here
        # and checks its own permission (see require()) or lets the service decide.
        if not request.user or not request.user.is_authenticated:
            return False
        model = self._queryset(view).model
        return request.user.has_perms(self.get_required_permissions("GET", model))


def require(request, *perms: str) -> None:
    """Refuse an action unless the user holds every permission named."""
    if not request.user.has_perms(perms):
        raise exceptions.PermissionDenied(
            _("You need the permission %(perms)s for this.") % {"perms": ", ".join(perms)}
        )


def exception_handler(exc, context):
    """Errors from the services become clear 4xx answers, never a 500."""
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            data = {field: [str(m) for m in msgs] for field, msgs in exc.message_dict.items()}
        else:
            data = {"non_field_errors": [str(m) for m in exc.messages]}
        return Response(data, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, AppendOnlyError):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    return drf_exception_handler(exc, context)


class Pagination(pagination.PageNumberPagination):
    """Pages of 50 by default; ?page_size= up to 500."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


FILTERS = [DjangoFilterBackend, filters.SearchFilter, filters.OrderingFilter]


def service_response(call, serializer_class, *, context, code=status.HTTP_200_OK):
    """Run one service in a transaction and answer with the object it returns."""
    with transaction.atomic():
        result = call()
    return Response(serializer_class(result, context=context).data, status=code)


def document_errors(result, generator, request, public):
    """Schema post-processing: every operation documents the errors it can answer."""
    for path, methods in result.get("paths", {}).items():
        for method, operation in methods.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"description": "Not authenticated"})
            responses.setdefault("403", {"description": "No permission"})
            if "{" in path:
                responses.setdefault("404", {"description": "Not found, or not visible to you"})
            if method in {"post", "put", "patch"}:
                responses.setdefault("400", {"description": "Invalid input: messages per field"})
            if method == "get" and "{" not in path:
                responses.setdefault("400", {"description": "Invalid filter value"})
    return result


# A database id is a signed 64-bit integer: a larger number is no id, and SQLite
# cannot even be asked about it (OverflowError, a 500) before the choice is checked.
ID_RANGE = range(-(2**63), 2**63)


class IdsField(ModelMultipleChoiceField):
    """Several ids of a queryset; a number out of any id's range is refused like an
    id that is not there (the same "invalid_choice" error), never sent to the database."""

    def _check_values(self, value):
        for item in value:
            try:
                number = int(str(item).strip())
            except (TypeError, ValueError):
                continue  # not a number: the parent names it
            if number not in ID_RANGE:
                raise DjangoValidationError(
                    self.error_messages["invalid_choice"], code="invalid_choice"
                )
        return super()._check_values(value)


class IdsFilter(django_filters.ModelMultipleChoiceFilter):
    field_class = IdsField
