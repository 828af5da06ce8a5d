"""Rules that raise the alarm, evaluated one mention at a time.

``rules_evaluate`` runs in the transaction that writes the mention, so the
incident is open when the request that carried the threshold-crossing mention
answers (seconds, not a sweep):

1. Match the mention (text normalised once by the caller) against each enabled
   rule: its channels, its keywords (whole words, case and accents ignored), or,
   for an alert, its label matchers.
2. For each match write one ``RuleHit`` (rule, mention, received_at). The window
   is then counted with one query on the (rule, received_at) index: nothing is
   rescanned, however many mentions there are.
3. When the window crosses the rule's threshold (a count, or a negative share
   over at least ``min_mentions``), or a firing alert matches, lock the risk's
   row (``select_for_update``: every rule of a risk fires under the same lock, so
   two bursts at once never open two incidents), then re-read the rule: if it
   already fired within its window, the mention is only added to the risk's open
   incident. Otherwise fire: open an incident with the risk's playbook through
   ``incidents.services.incident_open`` (or take the risk's open incident), link
   the window's mentions to it, and write a timeline entry citing them (at most
   ``CITE_MAX``) and a ``Detection`` row.
4. A matching mention below the threshold while the risk has an open incident
   joins that incident (no timeline entry: the mentions list shows it).

Steps 2 to 4 run under the matched risks' row locks, taken first and in pk order,
so the mentions of one risk are counted one transaction after the other and none
is left out of the incident a concurrent one opened. A webhook delivery whose
items match several risks in another order than a concurrent one's can still
deadlock; PostgreSQL ends one, and ``mentions_receive`` runs it again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, Max, Q, Subquery
from django.utils.translation import gettext as _

from incidents import services as incident_services
from incidents.listening.models import Detection, ListeningRule, Mention, RuleHit
from incidents.listening.text import matches_any
from incidents.models import Incident, TimelineEntry
from incidents.timeline import timeline_add
from playbooks.models import Playbook, Risk

CITE_MAX = 10  # mentions quoted in the timeline text
CITE_IDS_MAX = 100  # mention ids kept in the entry's data
QUOTE_CHARS = 140


@dataclass(frozen=True)
class Fired:
    detection: Detection
    opened: bool


# The enabled rules (with their risks) are kept per process for this long: every
# delivery is matched against them, and reading them was a fifth of a webhook
# delivery's cost (bench/intake.py). A rule or risk saved or deleted through the models
# is forgotten at once by the process that changed it, and again when its transaction
# commits (``rules_forget``, connected in apps.py); other processes use it within
# RULES_TTL_SECONDS. The window counts, the risks' locks and the incidents are always
# read fresh: only the rules' own settings are kept.
RULES_TTL_SECONDS = 5.0
_rules_kept: tuple[float, list[ListeningRule]] | None = None


def enabled_rules() -> list[ListeningRule]:
    """The rules to evaluate, read once per request (or per poll), not once per mention,
    and kept for ``RULES_TTL_SECONDS``."""
    global _rules_kept
    now = time.monotonic()
    if _rules_kept is None or now - _rules_kept[0] > RULES_TTL_SECONDS:
        _rules_kept = (
            now,
            list(ListeningRule.objects.filter(enabled=True).select_related("risk")),
        )
    return list(_rules_kept[1])


def rules_forget(**_signal) -> None:
    """Read the rules again at the next delivery (a rule or a risk changed)."""
    _rules_drop()
    if transaction.get_connection().in_atomic_block:
        # A delivery between now and the commit would keep the old rules again.
        transaction.on_commit(_rules_drop)


def _rules_drop() -> None:
    global _rules_kept
    _rules_kept = None


def rule_matches(rule: ListeningRule, *, mention: Mention, normalised: str) -> bool:
    if mention.kind == Mention.Kind.ALERT:
        labels = rule.alert_labels or {}
        return bool(labels) and all(
            str(mention.labels.get(key, "")) == value for key, value in labels.items()
        )
    if rule.threshold_count is None and rule.negative_percent is None:
        return False  # an alert-only rule
    if rule.channels and mention.channel not in rule.channels:
        return False
    return not rule.keywords or matches_any(normalised, rule.keywords) is not None


def _crossing(rule: ListeningRule, *, now: datetime) -> tuple[str | None, int | None]:
    """Why the rule fires now, or None; and the risk's open incident (its id, or None).

    One query: the window counted on the (rule, received_at) index, with the risk's
    open incident read in the same statement (a mention below the threshold joins it):
    the window always holds this mention's own hit, so the aggregate has a row.
    """
    since = now - timedelta(minutes=rule.window_minutes)
    counts = RuleHit.objects.filter(rule=rule, received_at__gte=since).aggregate(
        total=Count("pk"),
        negative=Count("pk", filter=Q(negative=True)),
        open_incident=Max(Subquery(_open_detections(rule.risk_id).values("incident_id")[:1])),
    )
    return _crossing_reason(rule, counts["total"], counts["negative"]), counts["open_incident"]


def _crossing_reason(rule: ListeningRule, total: int, negative: int) -> str | None:
    if rule.threshold_count is not None and total >= rule.threshold_count:
        return _("%(n)s matching mentions within %(m)s minutes (threshold %(t)s)") % {
            "n": total,
            "m": rule.window_minutes,
            "t": rule.threshold_count,
        }
    if (
        rule.negative_percent is not None
        and total >= rule.min_mentions
        and negative * 100 > rule.negative_percent * total
    ):
        return _(
            "%(p)s%% of %(n)s matching mentions negative within %(m)s minutes (above %(t)s%%)"
        ) % {
            "p": negative * 100 // total,
            "n": total,
            "m": rule.window_minutes,
            "t": rule.negative_percent,
        }
    return None


def _open_detections(risk_id: int):
    return Detection.objects.filter(
        risk_id=risk_id, incident__status__in=Incident.ACTIVE_STATUSES
    ).order_by("-at", "-pk")


def risk_open_incident(risk: Risk) -> Incident | None:
    """The active incident listening last opened or added to for this risk, if any."""
    detection = _open_detections(risk.pk).select_related("incident").first()
    return detection.incident if detection else None


def risk_open_incident_id(risk_id: int) -> int | None:
    """``risk_open_incident``'s id alone: what a mention below the threshold needs to
    join it, in a query that reads one column."""
    return _open_detections(risk_id).values_list("incident_id", flat=True).first()


def _playbook_for(risk: Risk) -> Playbook | None:
    playbook = risk.current_playbook
    if playbook is None or playbook.status != Playbook.Status.PUBLISHED:
        return None
    return playbook


def _quote(mention: Mention) -> str:
    text = " ".join(mention.text.split())
    if len(text) > QUOTE_CHARS:
        text = text[: QUOTE_CHARS - 1] + "…"
    who = mention.author or mention.source.name
    return f"#{mention.pk} {mention.get_channel_display()}, {who}: {text}"


def _fire(rule: ListeningRule, *, mention: Mention, reason: str, now: datetime) -> Fired | None:
    """Step 3 of the module docstring, under the risk's row lock."""
    risk = Risk.objects.select_for_update().get(pk=rule.risk_id)
    rule = ListeningRule.objects.get(pk=rule.pk)
    since = now - timedelta(minutes=rule.window_minutes)
    incident = risk_open_incident(risk)
    if rule.last_fired_at is not None and rule.last_fired_at >= since and incident is not None:
        _attach(mention, incident_id=incident.pk)
        return None
    window_ids = list(
        RuleHit.objects.filter(rule=rule, received_at__gte=since)
        .order_by("received_at", "mention_id")
        .values_list("mention_id", flat=True)[:CITE_IDS_MAX]
    )
    if mention.pk not in window_ids:
        window_ids.append(mention.pk)
    cited = list(
        Mention.objects.filter(pk__in=window_ids[:CITE_MAX])
        .select_related("source")
        .order_by("received_at", "pk")
    )
    opened = incident is None
    if opened:
        detected = min((m.received_at for m in cited), default=now)
        incident = incident_services.incident_open(
            title=_("%(risk)s: %(rule)s") % {"risk": risk.title, "rule": rule.name},
            severity=rule.severity,
            playbook=_playbook_for(risk),
            category=risk.category,
            summary=_("Opened by listening: %(reason)s.") % {"reason": reason},
            detected_at=min(detected, now),
            now=now,
        )
    Mention.objects.filter(
        pk__in=RuleHit.objects.filter(rule=rule, received_at__gte=since).values("mention_id"),
        incident__isnull=True,
    ).update(incident=incident)
    mention.incident = incident
    lines = "\n".join(_quote(m) for m in cited)
    more = len(window_ids) - len(cited)
    text = _("Listening rule “%(rule)s” (risk “%(risk)s”) fired: %(reason)s.") % {
        "rule": rule.name,
        "risk": risk.title,
        "reason": reason,
    }
    text += "\n" + lines
    if more > 0:
        text += "\n" + _("… and %(n)s more mentions.") % {"n": more}
    timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.NOTE,
        text=text,
        at=now,
        data={"listening_rule_id": rule.pk, "mention_ids": window_ids, "opened": opened},
    )
    detection = Detection.objects.create(
        rule=rule,
        risk=risk,
        incident=incident,
        opened=opened,
        reason=reason[:300],
        mention_ids=window_ids,
        at=now,
    )
    ListeningRule.objects.filter(pk=rule.pk).update(last_fired_at=now)
    return Fired(detection=detection, opened=opened)


def _attach(mention: Mention, *, incident_id: int) -> None:
    """Add the mention to an incident, unless it already belongs to one."""
    if mention.incident_id is None:
        Mention.objects.filter(pk=mention.pk, incident__isnull=True).update(incident_id=incident_id)
        mention.incident_id = incident_id


def rules_matching(
    *, mention: Mention, normalised: str, rules: list[ListeningRule]
) -> list[ListeningRule]:
    """Step 1, before the mention is saved (so its risk is written with it)."""
    return [rule for rule in rules if rule_matches(rule, mention=mention, normalised=normalised)]


def rules_evaluate(*, mention: Mention, matched: list[ListeningRule], now: datetime) -> list[Fired]:
    """Steps 2 to 4 of the module docstring, for a saved mention and the rules it matched."""
    fired: list[Fired] = []
    if matched:
        # Every matching mention counts its window under its risks' row locks, in pk
        # order: one whose transaction commits while another's fires is then either
        # counted and linked by it, or sees its incident (READ COMMITTED shows a
        # statement what committed before it began; without the lock, a mention
        # below the threshold could miss an incident opened by a transaction that
        # did not yet see it, and stay unlinked).
        list(
            Risk.objects.select_for_update()
            .filter(pk__in=sorted({rule.risk_id for rule in matched}))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    RuleHit.objects.bulk_create(
        RuleHit(
            rule=rule,
            mention=mention,
            received_at=mention.received_at,
            negative=mention.sentiment < 0,
        )
        for rule in matched
    )
    for rule in matched:
        incident_id = None
        if mention.kind == Mention.Kind.ALERT:
            reason = (
                _("alert “%(name)s” firing") % {"name": mention.labels.get("alertname", "?")}
                if mention.alert_status == Mention.AlertStatus.FIRING
                else None
            )
            if reason is None and mention.incident_id is None:
                incident_id = risk_open_incident_id(rule.risk_id)
        else:
            reason, incident_id = _crossing(rule, now=now)
        if reason is not None:
            result = _fire(rule, mention=mention, reason=reason, now=now)
            if result is not None:
                fired.append(result)
        elif mention.incident_id is None and incident_id is not None:
            _attach(mention, incident_id=incident_id)
    return fired
