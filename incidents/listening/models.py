"""Listening: where mentions come from, the mentions themselves, and the rules that
raise the alarm.

Every size and number has a bound, as a field validator (forms, the API and the
CSV import report it on the field) and as a named CheckConstraint.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from incidents.models import Incident, Message
from playbooks.models import (
    MENTION_TEXT_MAX,
    TEXT,
    MentionChannel,
    Risk,
    bounded,
    range_constraint,
)

MAX_TEXT_CHARS = MENTION_TEXT_MAX  # a mention's text
MAX_KEYWORDS = 50  # keywords and phrases per rule
MAX_KEYWORD_CHARS = 100
MAX_LABELS = 20  # alert label matchers per rule
MAX_LABEL_CHARS = 200
MAX_WINDOW_MINUTES = 24 * 60
MAX_THRESHOLD = 10_000
MAX_POLL_MINUTES = 24 * 60
MIN_POLL_MINUTES = 1
MAX_REACH = 10_000_000_000  # more than anyone's audience
MAX_BACKOFF_FAILURES = 30

__all__ = ["MentionChannel"]  # defined in playbooks (reply deadlines name channels too)


def new_secret() -> str:
    return secrets.token_hex(32)


class Source(models.Model):
    """Where mentions come from: a webhook, an Alertmanager receiver, a feed, or by hand."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", _("Webhook (generic JSON)")
        ALERTMANAGER = "alertmanager", _("Prometheus Alertmanager webhook")
        FEED = "feed", _("RSS / Atom feed")
        MANUAL = "manual", _("By hand")
        # The sample comments of exercise injects: drill only, never evaluated by rules.
        EXERCISE = "exercise", _("Exercise injects (drill)")

    name = models.CharField(_("name"), max_length=120, validators=TEXT)
    slug = models.SlugField(_("key"), max_length=50, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    channel = models.CharField(
        _("default channel"),
        max_length=16,
        choices=MentionChannel.choices,
        default=MentionChannel.OTHER,
        help_text=_("For feed entries and payloads that do not name one."),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    # Webhooks: the HMAC-SHA256 key, shown once when the source is made or rotated.
    secret = models.CharField(_("secret"), max_length=64, default=new_secret, editable=False)
    # Feeds.
    feed_url = models.URLField(_("feed address"), max_length=2000, blank=True)
    poll_minutes = models.PositiveIntegerField(
        _("poll every (minutes)"),
        default=15,
        validators=bounded(MIN_POLL_MINUTES, MAX_POLL_MINUTES),
    )
    etag = models.CharField(_("ETag"), max_length=500, blank=True, editable=False)
    last_modified = models.CharField(_("Last-Modified"), max_length=100, blank=True, editable=False)
    healthy = models.BooleanField(_("healthy"), default=True, editable=False)
    last_error = models.CharField(_("last error"), max_length=500, blank=True, editable=False)
    failures = models.PositiveIntegerField(_("failures in a row"), default=0, editable=False)
    last_polled_at = models.DateTimeField(_("last polled"), null=True, blank=True, editable=False)
    next_poll_at = models.DateTimeField(_("next poll"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        ordering = ("name",)
        verbose_name = _("listening source")
        verbose_name_plural = _("listening sources")
        constraints = [
            range_constraint(
                "poll_minutes", MIN_POLL_MINUTES, MAX_POLL_MINUTES, "source_poll_minutes_range"
            ),
            models.CheckConstraint(
                condition=~Q(kind="feed") | ~Q(feed_url=""), name="source_feed_has_url"
            ),
        ]
        indexes = [
            # Serves the poll sweep: enabled feeds whose next poll is due.
            models.Index(
                fields=("next_poll_at",),
                name="source_feed_due_idx",
                condition=Q(kind="feed", enabled=True),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.kind == self.Kind.FEED and not self.feed_url:
            raise ValidationError({"feed_url": _("A feed source needs the feed's address.")})


class Mention(models.Model):
    """One thing said somewhere (or one technical alert), as received.

    Room is kept for the triage inbox: who it is assigned to, whether it needs a
    reply, and why it was dismissed.
    """

    class Kind(models.TextChoices):
        MENTION = "mention", _("Mention")
        ALERT = "alert", _("Technical alert")

    class AlertStatus(models.TextChoices):
        NONE = "", _("Not an alert")
        FIRING = "firing", _("Firing")
        RESOLVED = "resolved", _("Resolved")

    class Sentiment(models.IntegerChoices):
        NEGATIVE = -1, _("Negative")
        NEUTRAL = 0, _("Neutral")
        POSITIVE = 1, _("Positive")

    class State(models.TextChoices):
        NEW = "new", pgettext_lazy("mention state", "New")
        NEEDS_REPLY = "needs_reply", pgettext_lazy("mention state", "Needs a reply")
        REPLIED = "replied", pgettext_lazy("mention state", "Replied")
        NO_REPLY = "no_reply", pgettext_lazy("mention state", "No reply needed")
        DISMISSED = "dismissed", pgettext_lazy("mention state", "Dismissed (false positive)")

    class NoReplyReason(models.TextChoices):
        SPAM = "spam", _("Spam")
        DUPLICATE = "duplicate", _("Duplicate of another comment")
        THANKED = "thanked", _("Positive, and thanked")
        ANSWERED = "answered", _("Answered elsewhere")
        NOT_A_QUESTION = "no_question", _("Nothing to answer")
        OTHER = "other", _("Other (say why)")

    source = models.ForeignKey(
        Source, verbose_name=_("source"), on_delete=models.PROTECT, related_name="mentions"
    )
    external_id = models.CharField(
        _("id at the source"), max_length=200, blank=True, validators=TEXT
    )
    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices, default=Kind.MENTION)
    channel = models.CharField(_("channel"), max_length=16, choices=MentionChannel.choices)
    author = models.CharField(_("author"), max_length=200, blank=True, validators=TEXT)
    url = models.URLField(_("address"), max_length=2000, blank=True)
    text = models.TextField(_("text"), validators=[*TEXT, MaxLengthValidator(MAX_TEXT_CHARS)])
    language = models.CharField(_("language"), max_length=8, blank=True)
    sentiment = models.SmallIntegerField(
        _("sentiment"), choices=Sentiment.choices, default=Sentiment.NEUTRAL
    )
    sentiment_given = models.BooleanField(
        _("sentiment as given"),
        default=False,
        help_text=_("Set by the sender; otherwise computed from the lexicon."),
    )
    reach = models.PositiveBigIntegerField(
        _("reach"), null=True, blank=True, validators=bounded(0, MAX_REACH)
    )
    published_at = models.DateTimeField(_("published"), null=True, blank=True)
    received_at = models.DateTimeField(_("received"), default=timezone.now)
    alert_status = models.CharField(
        _("alert status"), max_length=8, choices=AlertStatus.choices, blank=True, default=""
    )
    labels = models.JSONField(_("alert labels"), default=dict, blank=True)
    risk = models.ForeignKey(
        Risk,
        verbose_name=_("risk"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="mentions",
    )
    incident = models.ForeignKey(
        Incident,
        verbose_name=_("incident"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="mentions",
    )
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("added by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    # The triage inbox (incidents/listening/inbox.py): who answers it, whether it needs
    # a reply and by when, the reply (a Message: one-voice approval in incidents/comms.py)
    # and where it was published; or why no reply is needed, or why it was dismissed.
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("assigned to"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_mentions",
    )
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.NEW)
    no_reply_reason = models.CharField(
        _("no reply because"), max_length=16, choices=NoReplyReason.choices, blank=True
    )
    dismissed_reason = models.CharField(
        _("note on the reason"), max_length=300, blank=True, validators=TEXT
    )
    triaged_at = models.DateTimeField(_("triaged"), null=True, blank=True)
    triaged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("triaged by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    reply_due_at = models.DateTimeField(_("reply due"), null=True, blank=True)
    reply = models.OneToOneField(
        Message,
        verbose_name=_("reply"),
        on_delete=models.SET_NULL,  # a draft may be deleted; a published one never is
        null=True,
        blank=True,
        related_name="reply_to",
    )
    replied_at = models.DateTimeField(_("replied"), null=True, blank=True)
    replied_via = models.CharField(
        _("replied on"), max_length=16, choices=MentionChannel.choices, blank=True
    )
    reply_url = models.URLField(_("address of the reply"), max_length=2000, blank=True)

    class Meta:
        ordering = ("-received_at", "-pk")
        verbose_name = _("mention")
        verbose_name_plural = _("mentions")
        constraints = [
            # Webhook retries and feed re-reads: one row per item of a source.
            models.UniqueConstraint(
                fields=("source", "external_id"),
                condition=~Q(external_id=""),
                name="mention_source_external_id_uniq",
            ),
            range_constraint("sentiment", -1, 1, "mention_sentiment_range"),
            models.CheckConstraint(
                condition=Q(reach__isnull=True) | Q(reach__lte=MAX_REACH),
                name="mention_reach_bound",
            ),
            models.CheckConstraint(
                condition=Q(kind="alert") | Q(alert_status=""),
                name="mention_alert_status_only_alerts",
            ),
            models.CheckConstraint(
                condition=Q(state__in=("new", "needs_reply", "replied", "no_reply", "dismissed")),
                name="mention_state_valid",
            ),
            # A reply is a message of an incident, and has a deadline.
            models.CheckConstraint(
                condition=~Q(state="needs_reply")
                | Q(incident__isnull=False, reply_due_at__isnull=False),
                name="mention_needs_reply_has_deadline",
            ),
            models.CheckConstraint(
                condition=~Q(state="replied") | Q(replied_at__isnull=False, reply__isnull=False),
                name="mention_replied_has_reply",
            ),
            models.CheckConstraint(
                condition=~Q(state="no_reply") | ~Q(no_reply_reason=""),
                name="mention_no_reply_has_reason",
            ),
            models.CheckConstraint(
                condition=~Q(state="dismissed") | ~Q(dismissed_reason=""),
                name="mention_dismissed_has_reason",
            ),
        ]
        indexes = [
            # Serves the war room's Mentions page and the API list: newest first.
            models.Index(fields=("-received_at",), name="mention_received_idx"),
            # Serves an incident's mentions (its page, the timeline citations).
            models.Index(fields=("incident", "received_at"), name="mention_incident_idx"),
            # Serves the inbox's state filter (needs a reply, newest first).
            models.Index(fields=("state", "-received_at"), name="mention_state_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()}: {self.text[:60]}"


class ListeningRule(models.Model):
    """When mentions of a risk become an incident.

    A mention matches when it contains one of the keywords or phrases (case and
    accents ignored; none means any) and comes from one of the channels (none
    means any); an alert matches when its labels include every matcher. The rule
    fires when, within the window, the matches reach the threshold count, or (with
    at least ``min_mentions`` of them) the negative share exceeds the percentage,
    or at once for a firing alert whose labels match.
    """

    risk = models.ForeignKey(
        Risk, verbose_name=_("risk"), on_delete=models.CASCADE, related_name="listening_rules"
    )
    name = models.CharField(_("name"), max_length=120, validators=TEXT)
    enabled = models.BooleanField(_("enabled"), default=True)
    keywords = models.JSONField(
        _("keywords and phrases"),
        default=list,
        blank=True,
        help_text=_("In any language; case and accents are ignored."),
    )
    channels = models.JSONField(_("channels"), default=list, blank=True)
    alert_labels = models.JSONField(
        _("alert labels"),
        default=dict,
        blank=True,
        help_text=_('e.g. {"alertname": "CheckoutDown"}: one firing alert with them fires.'),
    )
    window_minutes = models.PositiveIntegerField(
        _("window (minutes)"), default=10, validators=bounded(1, MAX_WINDOW_MINUTES)
    )
    threshold_count = models.PositiveIntegerField(
        _("matching mentions"),
        null=True,
        blank=True,
        validators=bounded(1, MAX_THRESHOLD),
        help_text=_("Fire when this many match within the window. Empty: not used."),
    )
    negative_percent = models.PositiveSmallIntegerField(
        _("negative share above (%)"),
        null=True,
        blank=True,
        validators=bounded(0, 99),
        help_text=_("Fire when more than this share of the matches is negative. Empty: not used."),
    )
    min_mentions = models.PositiveIntegerField(
        _("at least (mentions) for the share"),
        default=5,
        validators=bounded(1, MAX_THRESHOLD),
    )
    severity = models.PositiveSmallIntegerField(
        _("severity of the incident"), default=2, validators=bounded(1, 4)
    )
    last_fired_at = models.DateTimeField(_("last fired"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        ordering = ("risk", "name")
        verbose_name = _("listening rule")
        verbose_name_plural = _("listening rules")
        constraints = [
            range_constraint("window_minutes", 1, MAX_WINDOW_MINUTES, "rule_window_range"),
            models.CheckConstraint(
                condition=Q(threshold_count__isnull=True)
                | Q(threshold_count__gte=1, threshold_count__lte=MAX_THRESHOLD),
                name="rule_threshold_range",
            ),
            models.CheckConstraint(
                condition=Q(negative_percent__isnull=True) | Q(negative_percent__lte=99),
                name="rule_negative_percent_range",
            ),
            range_constraint("min_mentions", 1, MAX_THRESHOLD, "rule_min_mentions_range"),
            range_constraint("severity", 1, 4, "rule_severity_range"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not isinstance(self.keywords, list) or not all(
            isinstance(k, str) for k in self.keywords
        ):
            errors["keywords"] = _("A list of words or phrases.")
        elif len(self.keywords) > MAX_KEYWORDS:
            errors["keywords"] = _("At most %(n)s keywords.") % {"n": MAX_KEYWORDS}
        elif any(len(k) > MAX_KEYWORD_CHARS or not k.strip() for k in self.keywords):
            errors["keywords"] = _("Each keyword is 1 to %(n)s characters.") % {
                "n": MAX_KEYWORD_CHARS
            }
        allowed = set(MentionChannel.values)
        if not isinstance(self.channels, list) or any(c not in allowed for c in self.channels):
            errors["channels"] = _("A list of channels among: %(c)s.") % {
                "c": ", ".join(sorted(allowed))
            }
        labels = self.alert_labels
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            errors["alert_labels"] = _("An object of label names and values (text).")
        elif len(labels) > MAX_LABELS or any(
            len(k) > MAX_LABEL_CHARS or len(v) > MAX_LABEL_CHARS for k, v in labels.items()
        ):
            errors["alert_labels"] = _("At most %(n)s labels of %(c)s characters.") % {
                "n": MAX_LABELS,
                "c": MAX_LABEL_CHARS,
            }
        if (
            self.threshold_count is None
            and self.negative_percent is None
            and not (isinstance(labels, dict) and labels)
        ):
            errors["threshold_count"] = _(
                "Give a count, a negative share or alert labels: otherwise it never fires."
            )
        if errors:
            raise ValidationError(errors)


class RuleHit(models.Model):
    """A mention that matched a rule: counted over the rule's window, never rescanned."""

    rule = models.ForeignKey(ListeningRule, on_delete=models.CASCADE, related_name="hits")
    mention = models.ForeignKey(Mention, on_delete=models.CASCADE, related_name="hits")
    received_at = models.DateTimeField()
    negative = models.BooleanField(default=False)

    class Meta:
        verbose_name = _("rule hit")
        verbose_name_plural = _("rule hits")
        constraints = [
            models.UniqueConstraint(fields=("rule", "mention"), name="rulehit_rule_mention_uniq")
        ]
        indexes = [
            # Serves the window count: a rule's hits since (now - window).
            models.Index(fields=("rule", "received_at"), name="rulehit_rule_received_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id}:{self.mention_id}"


class Detection(models.Model):
    """A rule firing: the incident it opened or added to, and the mentions it cites."""

    # A rule or risk deleted later leaves the record of what it did.
    rule = models.ForeignKey(
        ListeningRule,
        verbose_name=_("rule"),
        on_delete=models.SET_NULL,
        null=True,
        related_name="detections",
    )
    risk = models.ForeignKey(
        Risk,
        verbose_name=_("risk"),
        on_delete=models.SET_NULL,
        null=True,
        related_name="detections",
    )
    incident = models.ForeignKey(
        Incident, verbose_name=_("incident"), on_delete=models.PROTECT, related_name="detections"
    )
    opened = models.BooleanField(_("opened the incident"), default=False)
    reason = models.CharField(_("reason"), max_length=300)
    mention_ids = models.JSONField(_("mentions cited"), default=list)
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        ordering = ("-at",)
        verbose_name = _("detection")
        verbose_name_plural = _("detections")
        indexes = [
            # Serves "the open incident of this risk": its latest detections.
            models.Index(fields=("risk", "-at"), name="detection_risk_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.rule} → {self.incident_id}"


class SeenSignature(models.Model):
    """A webhook signature already accepted: the same one again within the tolerance is
    a replay. Rows older than the tolerance are pruned by the poll sweep."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    digest = models.CharField(max_length=64)
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("source", "digest"), name="seensig_source_digest_uniq")
        ]
        indexes = [models.Index(fields=("seen_at",), name="seensig_seen_idx")]

    def __str__(self) -> str:
        return self.digest
