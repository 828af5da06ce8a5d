"""The append-only timeline: every state change, message, escalation and note writes one entry.

Entries are never edited or deleted (the model refuses it, and a PostgreSQL
trigger too); a correction is a new entry that points at the old one. Every
module that records something on an incident writes through ``timeline_add``.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from django.utils.translation import gettext as _

from incidents.models import Incident, TimelineEntry


def actor_name(actor: AbstractBaseUser | None) -> str:
    """How a person is named in timeline text; nobody means the desk itself."""
    if actor is None:
        return _("CrisisDesk")
    return actor.get_full_name() or actor.get_username()


def timeline_add(
    *,
    incident: Incident,
    kind: str,
    text: str,
    actor: AbstractBaseUser | None = None,
    data: dict | None = None,
    at: datetime | None = None,
    corrects: TimelineEntry | None = None,
) -> TimelineEntry:
    return TimelineEntry.objects.create(
        incident=incident,
        kind=kind,
        text=text,
        actor=actor,
        data=data or {},
        at=at or timezone.now(),
        corrects=corrects,
    )
