"""Reads for preparedness."""

from __future__ import annotations

from datetime import date

from django.db.models import QuerySet
from django.utils import timezone

from playbooks.models import Playbook, Risk


def playbooks_review_due(*, today: date | None = None) -> list[Playbook]:
    """Published versions whose review cycle has run out.

    The next review date is derived (last review + cycle), not stored, and the
    number of published playbooks is small, so this filters in Python.
    """
    today = today or timezone.localdate()
    published = Playbook.objects.filter(status=Playbook.Status.PUBLISHED).select_related("owner")
    return [p for p in published if p.next_review_on is None or p.next_review_on < today]


def risks_review_due(*, today: date | None = None) -> QuerySet[Risk]:
    today = today or timezone.localdate()
    return (
        Risk.objects.exclude(status=Risk.Status.CLOSED)
        .filter(next_review_on__lt=today)
        .select_related("owner")
    )
