"""Reads for the response side, in a fixed number of queries."""

from __future__ import annotations

from django.db.models import Prefetch, Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from incidents.models import Incident, Message, MessageRevision, Notification
from incidents.permissions import ASSIGNED_PERM, VIEW_CONFIDENTIAL


def incident_messages(
    *, incident: Incident, audience: str = "", channel: str = "", status: str = ""
) -> QuerySet[Message]:
    """An incident's communications timeline, oldest first, with trail and deliveries."""
    qs = (
        Message.objects.filter(incident=incident)
        .select_related("audience", "author", "approver", "sent_by", "corrects", "template")
        .prefetch_related(
            Prefetch("revisions", queryset=MessageRevision.objects.select_related("editor")),
            Prefetch("deliveries", queryset=Notification.objects.order_by("to_email")),
            "corrections",
        )
        .order_by("created_at", "pk")
    )
    if audience:
        qs = qs.filter(audience__slug=audience)
    if channel:
        qs = qs.filter(channel=channel)
    if status:
        qs = qs.filter(status=status)
    return qs


def incidents_visible_to(user) -> QuerySet[Incident]:
    """Every incident this person may see: a confidential one only with the
    see-every-confidential permission (crisis managers) or the object permission
    that assignment grants and relieving withdraws (incidents/permissions.py)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Incident.objects.none()
    if user.is_superuser or user.has_perm(VIEW_CONFIDENTIAL):
        return Incident.objects.all()
    assigned = get_objects_for_user(
        user,
        ASSIGNED_PERM,
        klass=Incident,
        use_groups=False,
        with_superuser=False,
        accept_global_perms=False,
    )
    return Incident.objects.filter(Q(confidential=False) | Q(pk__in=assigned.values("pk")))
