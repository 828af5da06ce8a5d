"""Writes for listening: sources, mentions (webhook, feed, by hand, CSV) and their rules.

Every mention goes through ``mention_record``: validated by the model's own
rules, written once per (source, id at the source), its sentiment computed from
the lexicon unless given, and evaluated against the rules in the same
transaction (incidents/listening/rules.py), so a threshold crossing opens the
incident before the request that carried it answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from incidents.listening import rules as listening_rules
from incidents.listening import sentiment as lexicon
from incidents.listening.models import ListeningRule, Mention, Source, new_secret
from incidents.listening.signing import signature_remember
from incidents.listening.text import normalise
from incidents.models import TimelineEntry
from incidents.timeline import timeline_add
from playbooks.models import LANGUAGE_CODE

MAX_ITEMS_PER_REQUEST = 100
DEADLOCK_ATTEMPTS = 3

log = logging.getLogger(__name__)


@dataclass
class Received:
    accepted: list[Mention] = field(default_factory=list)
    duplicates: list[Mention] = field(default_factory=list)
    fired: list[listening_rules.Fired] = field(default_factory=list)


@transaction.atomic
def source_create(
    *,
    name: str,
    slug: str,
    kind: str,
    channel: str = "other",
    feed_url: str = "",
    poll_minutes: int = 15,
    enabled: bool = True,
) -> Source:
    """A new source with a fresh secret (the caller shows it once)."""
    source = Source(
        name=name,
        slug=slug,
        kind=kind,
        channel=channel,
        feed_url=feed_url,
        poll_minutes=poll_minutes,
        enabled=enabled,
        next_poll_at=timezone.now() if kind == Source.Kind.FEED else None,
    )
    source.full_clean()
    source.save()
    return source


def manual_source() -> Source:
    """The source of mentions typed, pasted or imported in the war room (made on first use)."""
    source, _created = Source.objects.get_or_create(
        slug="by-hand",
        defaults={"name": _("By hand"), "kind": Source.Kind.MANUAL},
    )
    return source


def drill_source() -> Source:
    """The source of the sample comments exercise injects bring (made on first use)."""
    source, _created = Source.objects.get_or_create(
        slug="exercises",
        defaults={"name": _("Exercise injects (drill)"), "kind": Source.Kind.EXERCISE},
    )
    return source


def drill_mentions_record(*, inject, incident, now: datetime) -> list[Mention]:
    """An inject's sample comments, into the inbox as new comments of its drill incident.

    Called by the timer engine inside the inject's fire transaction, after its
    ``fired_at`` claim (escalation.inject_hook_register): once, or not at all. Never
    evaluated against the listening rules (a drill must not open a real incident), and
    tied to the drill incident, so every figure that keeps drills apart keeps these apart.
    The id at the source (inject and position) makes a second write fail, not double.
    """
    if not inject.mentions or not incident.drill:
        return []
    source = drill_source()
    rows = []
    for i, item in enumerate(inject.mentions, start=1):
        try:
            mention, given = mention_validate(
                source=source,
                text=item.get("text", ""),
                channel=item.get("channel", ""),
                external_id=f"inject-{inject.pk}-{i}",
                author=item.get("author", ""),
                language=item.get("language", ""),
                sentiment=item.get("sentiment"),
                now=now,
            )
        except (ValidationError, AttributeError):
            # Every door checks them (Inject.mentions' validator); one written around
            # them must not keep the inject from firing: it is left out, and said so.
            log.warning("inject %s: comment %s left out: not a valid comment", inject.pk, i)
            continue
        mention.sentiment, mention.sentiment_given = (
            (given, True) if given is not None else (lexicon.score(mention.text), False)
        )
        mention.incident = incident
        rows.append(mention)
    return Mention.objects.bulk_create(rows)


@transaction.atomic
def source_rotate_secret(*, source: Source) -> Source:
    """A new secret; the old one stops working at once."""
    source.secret = new_secret()
    Source.objects.filter(pk=source.pk).update(secret=source.secret)
    return source


def _sentiment(value) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        named = {"negative": -1, "neutral": 0, "positive": 1}
        if value in named:
            return named[value]
        raise ValidationError(
            {"sentiment": _("Use negative, neutral or positive, or a number from -1 to 1.")}
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or not -1 <= value <= 1:
        raise ValidationError(
            {"sentiment": _("Use negative, neutral or positive, or a number from -1 to 1.")}
        )
    return (value > 0) - (value < 0)


def mention_validate(
    *,
    source: Source,
    text: str,
    channel: str = "",
    external_id: str = "",
    author: str = "",
    url: str = "",
    language: str = "",
    sentiment=None,
    reach: int | None = None,
    published_at: datetime | None = None,
    kind: str = Mention.Kind.MENTION,
    alert_status: str = "",
    labels: dict | None = None,
    actor: AbstractBaseUser | None = None,
    now: datetime | None = None,
) -> tuple[Mention, int | None]:
    """An unsaved mention checked by the model's rules, and the sentiment given (or None);
    raises ValidationError with a message per field. Nothing is written."""
    now = now or timezone.now()
    external_id = (external_id or "").strip()
    errors: dict[str, list[str]] = {}
    given = None
    try:
        given = _sentiment(sentiment)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    language = (language or "").strip()
    if language and not LANGUAGE_CODE.match(language):
        errors["language"] = [_("A language code such as en, he, hu or el.")]
        language = ""
    mention = Mention(
        source=source,
        external_id=external_id,
        kind=kind,
        channel=channel or source.channel,
        author=(author or "").strip(),
        url=(url or "").strip(),
        text=text or "",
        language=language.lower(),
        reach=reach,
        published_at=published_at,
        received_at=now,
        alert_status=alert_status,
        labels=labels or {},
        added_by=actor,
    )
    # The foreign keys are ours, not the sender's: no query to check them.
    try:
        mention.full_clean(
            exclude=("source", "added_by", "risk", "incident", "assignee"),
            validate_constraints=False,
        )
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    return mention, given


def mention_record(
    *,
    source: Source,
    text: str,
    channel: str = "",
    external_id: str = "",
    author: str = "",
    url: str = "",
    language: str = "",
    sentiment=None,
    reach: int | None = None,
    published_at: datetime | None = None,
    kind: str = Mention.Kind.MENTION,
    alert_status: str = "",
    labels: dict | None = None,
    actor: AbstractBaseUser | None = None,
    rules: list[ListeningRule] | None = None,
    now: datetime | None = None,
    savepoint: bool = True,
    look_first: bool = True,
) -> tuple[Mention, bool, list[listening_rules.Fired]]:
    """Write one mention and evaluate the rules on it; (mention, created, fired).

    The same (source, id at the source) again answers with the first row and
    writes nothing (a webhook retry, a feed entry read twice). Runs in the
    caller's transaction, or in its own. A caller that runs its whole transaction
    again on IntegrityError may skip the look-up first (``look_first=False``) and the
    savepoint (``savepoint=False``): a repeat then fails the insert instead.
    """
    now = now or timezone.now()
    external_id = (external_id or "").strip()
    if external_id and look_first:
        existing = Mention.objects.filter(source=source, external_id=external_id).first()
        if existing is not None:
            return existing, False, []
    mention, given = mention_validate(
        source=source, text=text, channel=channel, external_id=external_id, author=author,
        url=url, language=language, sentiment=sentiment, reach=reach,
        published_at=published_at, kind=kind, alert_status=alert_status, labels=labels,
        actor=actor, now=now,
    )  # fmt: skip
    normalised = normalise(mention.text)
    if given is None:
        mention.sentiment = lexicon.score(mention.text, normalised=normalised)
    else:
        mention.sentiment, mention.sentiment_given = given, True
    matched = listening_rules.rules_matching(
        mention=mention,
        normalised=normalised,
        rules=listening_rules.enabled_rules() if rules is None else rules,
    )
    if matched:
        mention.risk = matched[0].risk
    # No savepoint of its own: an error rolls back the caller's transaction with it.
    with transaction.atomic(savepoint=False):
        try:
            # The savepoint lets a racing duplicate answer with the other row; a caller
            # that retries its whole transaction on IntegrityError (the webhook) skips it.
            with transaction.atomic(savepoint=savepoint):
                mention.save()
        except IntegrityError:
            if not savepoint:
                raise
            # The same item arrived at the same moment: theirs is the row.
            existing = Mention.objects.filter(source=source, external_id=external_id).first()
            if existing is None:
                raise
            return existing, False, []
        fired = listening_rules.rules_evaluate(mention=mention, matched=matched, now=now)
        if mention.alert_status == Mention.AlertStatus.RESOLVED:
            _alert_resolved(mention, now=now)
    return mention, True, fired


def alert_external_id(*, fingerprint: str, status: str, starts_at: str) -> str:
    """An alert's id at its source: one row for its firing, one for its resolution, and a
    repeat of either (Alertmanager re-sends every group interval) writes nothing."""
    return f"{fingerprint}:{status}:{starts_at}"[:200] if fingerprint else ""


def _alert_resolved(mention: Mention, *, now: datetime) -> None:
    """A resolved alert joins the incident its firing joined, with a line on its timeline."""
    fingerprint, _status, starts_at = ([*mention.external_id.split(":", 2), "", ""])[:3]
    firing = (
        Mention.objects.filter(
            source=mention.source,
            external_id=alert_external_id(
                fingerprint=fingerprint, status="firing", starts_at=starts_at
            ),
            incident__isnull=False,
        )
        .select_related("incident")
        .first()
    )
    if firing is None:
        return
    Mention.objects.filter(pk=mention.pk).update(incident=firing.incident, risk=firing.risk_id)
    mention.incident = firing.incident
    timeline_add(
        incident=firing.incident,
        kind=TimelineEntry.Kind.NOTE,
        text=_("Alert “%(name)s” resolved (mention #%(id)s).")
        % {"name": mention.labels.get("alertname", "?"), "id": mention.pk},
        at=now,
        data={"mention_ids": [mention.pk], "alert_resolved": True},
    )


def mentions_receive(
    *, source: Source, items: list[dict], digest: str = "", now: datetime | None = None
) -> Received:
    """A webhook delivery: every item written, or none (a bad one names its index).

    ``digest`` (the verified signature) is remembered in this transaction, so a
    replay is refused and a refused delivery leaves no trace. Most deliveries are
    new, so the first attempt writes each item without looking its id up and without
    a savepoint (three round trips fewer per mention); when an id is a repeat (a
    retry, the same item twice, or one racing in from another request), the unique
    constraint fails that transaction and it runs once more, looking each id up.
    A transaction PostgreSQL ends to break a deadlock runs again, up to
    ``DEADLOCK_ATTEMPTS`` times in all.
    """
    first, deadlocks = True, 0
    while True:
        try:
            return _mentions_receive(
                source=source, items=items, digest=digest, now=now, first=first
            )
        except IntegrityError:
            if not first:
                raise
            first = False
        except OperationalError as exc:
            deadlocks += 1
            if not deadlocked(exc) or deadlocks >= DEADLOCK_ATTEMPTS:
                raise


def deadlocked(exc: BaseException) -> bool:
    """PostgreSQL ended this transaction to break a deadlock (SQLSTATE 40P01): a
    delivery whose items matched several risks, locked in another order than a
    concurrent one's (rules.rules_evaluate). Running it again is safe: nothing of it
    was written."""
    return getattr(exc.__cause__, "sqlstate", None) == "40P01"


@transaction.atomic
def _mentions_receive(
    *, source: Source, items: list[dict], digest: str, now: datetime | None, first: bool
) -> Received:
    now = now or timezone.now()
    if len(items) > MAX_ITEMS_PER_REQUEST:
        raise ValidationError(
            {"items": _("At most %(n)s items per request.") % {"n": MAX_ITEMS_PER_REQUEST}}
        )
    if digest:
        signature_remember(source=source, digest=digest, now=now)
    rules = listening_rules.enabled_rules()
    result = Received()
    for index, item in enumerate(items):
        try:
            mention, created, fired = mention_record(
                source=source, rules=rules, now=now, savepoint=not first, look_first=not first,
                **item,
            )  # fmt: skip
        except ValidationError as exc:
            if len(items) == 1:
                raise
            raise ValidationError(
                {f"items[{index}].{k}": v for k, v in exc.message_dict.items()}
            ) from exc
        (result.accepted if created else result.duplicates).append(mention)
        result.fired += fired
    return result
