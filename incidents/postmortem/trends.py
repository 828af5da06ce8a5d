"""Figures across incidents (the trends page): drills apart from real incidents."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from incidents.models import (
    Incident,
    Severity,
)
from incidents.postmortem.facts import acknowledge_target, reply_figures, time_to_acknowledge
from playbooks.models import Scenario


def _median_minutes(values: list[timedelta]) -> float | None:
    if not values:
        return None
    return round(statistics.median(v.total_seconds() for v in values) / 60, 1)


def _rate(values: list[bool]) -> float | None:
    return round(100 * sum(values) / len(values)) if values else None


def _figures(incidents: list[Incident]) -> dict:
    """Medians and rates. Time to acknowledge (the median and the within-target rate alike)
    runs from the first page, like the report's target (``facts.time_to_acknowledge``);
    first statement and resolution run from opening."""
    tta, ttfs, ttr, ack_met, fs_met = [], [], [], [], []
    for inc in incidents:
        ack_after = time_to_acknowledge(inc)
        if ack_after is not None:
            tta.append(ack_after)
        if inc.first_statement_at:
            ttfs.append(inc.first_statement_at - inc.opened_at)
        if inc.resolved_at:
            ttr.append(inc.resolved_at - inc.opened_at)
        target = acknowledge_target(inc)
        if target is not None and ack_after is not None:
            ack_met.append(ack_after <= target)
        if inc.first_statement_at or not inc.is_active:
            fs_met.append(
                inc.first_statement_at is not None
                and inc.first_statement_at - inc.opened_at
                <= timedelta(minutes=inc.first_statement_minutes)
            )
    return {
        "count": len(incidents),
        "tta": _median_minutes(tta),
        "ttfs": _median_minutes(ttfs),
        "ttr": _median_minutes(ttr),
        "ack_rate": _rate(ack_met),
        "ack_n": len(ack_met),
        "fs_rate": _rate(fs_met),
        "fs_n": len(fs_met),
    }


def trends(incidents: QuerySet[Incident]) -> dict:
    """Figures across incidents: drills apart from real incidents."""
    rows = list(incidents.order_by("opened_at"))
    real = [i for i in rows if not i.drill]
    drills = [i for i in rows if i.drill]
    by_month: dict[str, list[Incident]] = defaultdict(list)
    for inc in real:
        by_month[timezone.localtime(inc.opened_at).strftime("%Y-%m")].append(inc)
    category_labels = dict(Scenario.choices)
    categories: dict[str, int] = defaultdict(int)
    severities: dict[int, int] = defaultdict(int)
    for inc in real:
        categories[inc.category] += 1
        severities[inc.severity] += 1
    return {
        "months": [(month, _figures(items)) for month, items in sorted(by_month.items())],
        "overall": _figures(real),
        "drills": _figures(drills),
        "by_category": sorted(
            ((category_labels.get(k, k), n) for k, n in categories.items()), key=lambda r: -r[1]
        ),
        "by_severity": [(label, severities.get(value, 0)) for value, label in Severity.choices],
        "replies": _replies(incidents.filter(drill=False)),
        "drill_replies": _replies(incidents.filter(drill=True)),
    }


def _replies(incidents: QuerySet[Incident]):
    """The public comments of these incidents and how they were answered: the listening
    app's mentions, reached by the reverse relation (incidents never imports it)."""
    Mention = Incident._meta.get_field("mentions").related_model
    return reply_figures(
        Mention.objects.filter(incident__in=incidents.values("pk")), now=timezone.now()
    )
