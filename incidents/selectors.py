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
