"""Reads for listening, permission-filtered.

A mention tied to an incident is visible only to who may see that incident
(``incidents_visible_to``); one tied to none is visible to whoever may view
mentions at all. What is left out answers exactly like a row that does not exist.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from incidents.listening.models import Detection, ListeningRule, Mention, Source
from incidents.selectors import incidents_visible_to


def _may(user, perm: str) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.has_perm(perm))


def mentions_visible_to(user) -> QuerySet[Mention]:
    if not _may(user, "listening.view_mention"):
        return Mention.objects.none()
    return Mention.objects.filter(
        Q(incident__isnull=True) | Q(incident__in=incidents_visible_to(user))
    )


def mention_list(
    *,
    user,
    source: str = "",
    channel: str = "",
    sentiment: int | None = None,
    risk: int | None = None,
    kind: str = "",
    incident: int | None = None,
    state: str = "",
    assignee: int | None = None,
) -> QuerySet[Mention]:
    """Recent mentions, newest first, with what each row shows, in a fixed number of queries.

    The triage inbox's filters too: ``incident`` (an id the user may not see matches
    nothing, like one that does not exist), ``state`` and ``assignee`` (a user id)."""
    qs = mentions_visible_to(user).select_related("source", "risk", "incident", "assignee", "reply")
    if incident is not None:
        qs = qs.filter(incident_id=incident)
    if state:
        qs = qs.filter(state=state)
    if assignee is not None:
        qs = qs.filter(assignee_id=assignee)
    if source:
        qs = qs.filter(source__slug=source)
    if channel:
        qs = qs.filter(channel=channel)
    if sentiment is not None:
        qs = qs.filter(sentiment=sentiment)
    if risk is not None:
        qs = qs.filter(risk_id=risk)
    if kind:
        qs = qs.filter(kind=kind)
    return qs.order_by("-received_at", "-pk")


def detections_visible_to(user) -> QuerySet[Detection]:
    if not _may(user, "listening.view_detection"):
        return Detection.objects.none()
    return Detection.objects.filter(incident__in=incidents_visible_to(user))


def sources_visible_to(user) -> QuerySet[Source]:
    if not _may(user, "listening.view_source"):
        return Source.objects.none()
    return Source.objects.all()


def sources_unhealthy() -> QuerySet[Source]:
    """Feeds whose last poll failed, for the war-room dashboard (no incident data in them)."""
    return Source.objects.filter(enabled=True, healthy=False).order_by("name")


def rules_visible_to(user) -> QuerySet[ListeningRule]:
    if not _may(user, "listening.view_listeningrule"):
        return ListeningRule.objects.none()
    return ListeningRule.objects.select_related("risk")
