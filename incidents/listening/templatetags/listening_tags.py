"""The war room's listening panels, as template tags: the dashboard (an incidents
template) shows them without ``incidents`` importing this package."""

from __future__ import annotations

from django import template
from django.db.models import Count, Min, Q
from django.utils import timezone

from incidents.listening.selectors import mention_list, sources_unhealthy

register = template.Library()


@register.inclusion_tag("listening/_unhealthy.html", takes_context=True)
def unhealthy_sources(context) -> dict:
    user = context["request"].user
    may = user.has_perm("listening.view_source")
    return {"sources": list(sources_unhealthy()[:20]) if may else [], "user": user}


@register.inclusion_tag("listening/_to_answer.html", takes_context=True)
def comments_to_answer(context, incident) -> dict:
    """On an incident's page: its public comments still waiting for a reply, how many are
    overdue and when the next is due, linking to them in the inbox (one query)."""
    user = context["request"].user
    waiting = mention_list(user=user, incident=incident.pk, state="needs_reply").aggregate(
        n=Count("pk"), overdue=Count("pk", filter=Q(reply_due_at__lt=timezone.now())),
        next_due=Min("reply_due_at"),
    )  # fmt: skip
    return {**waiting, "incident": incident, "now": context.get("now")}
