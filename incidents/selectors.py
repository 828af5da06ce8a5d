"""Reads for the response side, in a fixed number of queries."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from incidents.models import Incident, Message, MessageRevision, Notification


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
    """Every incident this person may see: a confidential one only by crisis managers
    (the see-every-confidential permission) and the people currently assigned to it."""
    from django.db.models import Exists, OuterRef, Q

    from incidents.models import RoleAssignment

    if user is None or not user.is_authenticated or not user.is_active:
        return Incident.objects.none()
    if user.is_superuser or user.has_perm("incidents.view_confidential_incident"):
        return Incident.objects.all()
    assigned = RoleAssignment.objects.filter(
        incident=OuterRef("pk"), user=user, relieved_at__isnull=True
    )
    return Incident.objects.filter(Q(confidential=False) | Q(Exists(assigned)))
