"""Preparedness: everything a crisis team sets up before a crisis.

Risks, crisis roles, on-call rotations, stakeholders, and versioned playbooks
with their steps, message templates, escalation levels and comms targets.
Derived values (risk score, heat-map cell, next review date) are properties,
never stored twice.
"""

from __future__ import annotations

import re
import secrets
import string
import zoneinfo
from datetime import date, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
from simple_history.models import HistoricalRecords

ONE_TO_FIVE = [MinValueValidator(1), MaxValueValidator(5)]

# Bounds a crisis team would accept. Each one is a field validator (forms, the
# API and the imports report it on the field) and a named CheckConstraint.
MAX_STEP_DUE_MINUTES = 30 * 24 * 60  # a step due within 30 days of opening
MAX_REVIEW_CYCLE_DAYS = 1096  # review at least every 3 years
MAX_FIRST_STATEMENT_MINUTES = 7 * 24 * 60  # first public statement within a week
MAX_ESCALATION_REPEATS = 20
MAX_ROLL_CALL_MINUTES = 24 * 60  # a role holder answers the roll call within a day
DEFAULT_ROLL_CALL_MINUTES = 10
MAX_REPLY_MINUTES = 7 * 24 * 60  # a public comment is answered within a week at worst
DEFAULT_REPLY_MINUTES = 60  # "answer within the hour"
DEFAULT_REPLY_WARN_MINUTES = 15
MAX_REPLY_DEADLINES = 60  # per-channel / per-severity reply deadlines per playbook
MAX_ESCALATION_DELAY_SECONDS = 24 * 60 * 60  # a level pages within a day of the previous
MAX_ESCALATION_LEVELS = 50
MAX_CADENCE_MINUTES = 7 * 24 * 60  # every audience hears from us at least weekly
MAX_HANDOFF_HOURS = 90 * 24  # a shift lasts at most 90 days
MAX_RISK_REVIEW_DAYS = 1096  # a risk's next review within 3 years
MAX_SEVERITY = 4  # severities run from SEV1 (critical) to SEV4 (minor)

# C0 control characters but tab, line feed and carriage return; NUL among them,
# which PostgreSQL refuses in text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def validate_no_control_characters(value: str) -> None:
    """Shared by every text field: NUL and other control characters are never text."""
    match = _CONTROL.search(value or "")
    if match:
        raise ValidationError(
            _("Contains the control character U+%(code)04X at position %(pos)s: remove it."),
            code="control_character",
            params={"code": ord(match.group()), "pos": match.start() + 1},
        )


TEXT = [validate_no_control_characters]


def bounded(low: int, high: int) -> list:
    return [MinValueValidator(low), MaxValueValidator(high)]


def range_constraint(field: str, low: int, high: int, name: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=Q(**{f"{field}__gte": low, f"{field}__lte": high}), name=name
    )


class Scenario(models.TextChoices):
    """What kind of crisis: shared by risks, playbooks and (later) incidents."""

    DATA_BREACH = "data_breach", _("Data breach")
    SOCIAL_MEDIA_STORM = "social_media_storm", _("Social-media storm")
    NEGATIVE_REVIEWS = "negative_reviews", _("Negative-review wave")
    SERVICE_OUTAGE = "service_outage", _("Service outage")
    PRODUCT_RECALL = "product_recall", _("Product recall")
    LEGAL_REGULATORY = "legal_regulatory", _("Legal / regulatory")
    OTHER = "other", _("Other")


class SurfaceChannel(models.TextChoices):
    """Where a crisis would first surface and spread."""

    SOCIAL_MEDIA = "social_media", _("Social media")
    REVIEW_SITES = "review_sites", _("Review sites")
    NEWS_MEDIA = "news_media", _("News media")
    FORUMS = "forums", _("Forums and communities")
    SEARCH = "search", _("Search results")
    WEBSITE = "website", _("Own website / app")
    CUSTOMER_SUPPORT = "customer_support", _("Customer support")
    INTERNAL = "internal", _("Employees / internal")
    REGULATORS = "regulators", _("Regulators")


class Channel(models.TextChoices):
    """How CrisisDesk speaks to an audience."""

    EMAIL = "email", _("E-mail")
    SOCIAL_POST = "social_post", _("Social-media post")
    PRESS_RELEASE = "press_release", _("Press release")
    WEBSITE = "website", _("Website / status note")
    INTERNAL = "internal", _("Internal announcement")
    PHONE_SCRIPT = "phone_script", _("Phone script")
    # A reply to one public comment, where it was made (the listening inbox): its
    # templates are the playbook's reply templates; it is published by a person, who
    # records where.
    REPLY = "reply", _("Reply to a public comment")


class MentionChannel(models.TextChoices):
    """Where something was said about us (listening): a mention's channel, and the channel
    a playbook's reply deadline applies to."""

    TWITTER = "twitter", _("X / Twitter")
    FACEBOOK = "facebook", _("Facebook")
    INSTAGRAM = "instagram", _("Instagram")
    TIKTOK = "tiktok", _("TikTok")
    LINKEDIN = "linkedin", _("LinkedIn")
    REVIEW = "review", _("Review site")
    NEWS = "news", _("News")
    FORUM = "forum", _("Forum")
    BLOG = "blog", _("Blog")
    EMAIL = "email", _("E-mail")
    PHONE = "phone", _("Phone")
    ALERT = "alert", _("Technical alert")
    OTHER = "other", _("Other")


def validate_timezone(value: str) -> None:
    # A name the zone database does not know, malformed, or too long for a file name
    # (zoneinfo opens a file named after it: OSError) is refused alike.
    try:
        if len(value) > 64:
            raise ValueError(value)
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(
            _("“%(value)s” is not a time zone name such as Europe/Budapest."),
            params={"value": value},
        ) from None


def language_choices() -> list[tuple[str, str]]:
    return [(code, name) for code, name in settings.LANGUAGES]


def validate_choices_list(values, choices, field: str) -> None:
    if not isinstance(values, list):
        raise ValidationError({field: _("Expected a list.")})
    allowed = {value for value, _label in choices}
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValidationError(
            {field: _("Unknown value(s): %(values)s.") % {"values": ", ".join(map(str, unknown))}}
        )


class CrisisRole(models.Model):
    slug = models.SlugField(_("key"), max_length=50, unique=True)
    name = models.CharField(_("name"), max_length=100, validators=TEXT)
    responsibilities = models.TextField(_("responsibilities"), blank=True, validators=TEXT)
    sort_order = models.PositiveSmallIntegerField(_("order"), default=0)
    can_approve_messages = models.BooleanField(
        _("approves outbound messages"),
        default=False,
        help_text=_("Holders may approve messages for release (one voice)."),
    )
    holders = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("team members"),
        related_name="crisis_roles",
        blank=True,
    )

    history = HistoricalRecords()

    class Meta:
        ordering = ("sort_order", "name")
        verbose_name = _("crisis role")
        verbose_name_plural = _("crisis roles")

    def __str__(self) -> str:
        return self.name


# A public comment's text (listening's Mention), and a language code such as en or pt-BR:
# here because an exercise inject carries sample comments too (incidents never imports
# listening), and both must refuse the same things.
MENTION_TEXT_MAX = 10_000
LANGUAGE_CODE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})?$")


MAX_INJECT_MENTIONS = 200  # sample public comments one inject brings into the inbox
INJECT_MENTION_AUTHOR_MAX = 200
_MENTION_KEYS = {"channel", "author", "text", "language", "sentiment"}
_SENTIMENTS = {"negative", "neutral", "positive"}


def inject_mentions_errors(value) -> list[str]:
    """What is wrong with an inject's sample comments (empty: nothing). A field validator,
    so the API, the war-room pages and the starter library refuse the same things with
    the same words; the listening app writes them as mentions when the inject fires."""
    shape = _(
        'A list of at most %(n)s comments, each {"channel": ..., "author": ..., '
        '"text": ..., "language": ..., "sentiment": negative, neutral or positive}.'
    ) % {"n": MAX_INJECT_MENTIONS}
    if not isinstance(value, list) or len(value) > MAX_INJECT_MENTIONS:
        return [shape]
    errors = []
    for i, item in enumerate(value, start=1):
        if not isinstance(item, dict) or set(item) - _MENTION_KEYS:
            return [shape]
        channel, author, text = item.get("channel"), item.get("author", ""), item.get("text")
        language, sentiment = item.get("language", ""), item.get("sentiment")
        if channel not in MentionChannel.values:
            errors.append(
                _("Comment %(i)s: “%(c)s” is not a channel (%(known)s).")
                % {"i": i, "c": channel, "known": ", ".join(MentionChannel.values)}
            )
        if not isinstance(author, str) or len(author) > INJECT_MENTION_AUTHOR_MAX:
            errors.append(
                _("Comment %(i)s: the author is text of at most %(n)s characters.")
                % {"i": i, "n": INJECT_MENTION_AUTHOR_MAX}
            )
        if not isinstance(text, str) or not text.strip() or len(text) > MENTION_TEXT_MAX:
            errors.append(
                _("Comment %(i)s: the text is 1 to %(n)s characters.")
                % {"i": i, "n": MENTION_TEXT_MAX}
            )
        if not isinstance(language, str) or (language and not LANGUAGE_CODE.match(language)):
            errors.append(_("Comment %(i)s: a language code such as en, he, hu or el.") % {"i": i})
        if sentiment is not None and sentiment not in _SENTIMENTS:
            errors.append(
                _("Comment %(i)s: the sentiment is negative, neutral or positive.") % {"i": i}
            )
    return errors


def reply_deadlines_errors(value) -> list[str]:
    """What is wrong with a playbook's ``reply_deadlines`` (empty: nothing). Bounded here so
    the admin, the API and the YAML import refuse the same things with the same words."""
    shape = _(
        'A list of {"channel": ..., "severity": 1-4 or null, "minutes": 1-%(max)s}, '
        "at most %(n)s, each channel and severity once."
    ) % {"max": MAX_REPLY_MINUTES, "n": MAX_REPLY_DEADLINES}
    if not isinstance(value, list) or len(value) > MAX_REPLY_DEADLINES:
        return [shape]
    errors, seen = [], set()
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or set(entry) - {"channel", "severity", "minutes"}:
            return [shape]
        channel, severity, minutes = (
            entry.get("channel") or "",
            entry.get("severity"),
            entry.get("minutes"),
        )
        if channel not in MentionChannel.values and channel != "":
            errors.append(
                _("Entry %(i)s: “%(c)s” is not a channel (%(known)s).")
                % {"i": i + 1, "c": channel, "known": ", ".join(MentionChannel.values)}
            )
        if severity is not None and (
            isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 4
        ):
            errors.append(_("Entry %(i)s: the severity is 1 to 4, or empty.") % {"i": i + 1})
        if (
            isinstance(minutes, bool)
            or not isinstance(minutes, int)
            or not 1 <= minutes <= MAX_REPLY_MINUTES
        ):
            errors.append(
                _("Entry %(i)s: the minutes are a whole number from 1 to %(max)s.")
                % {"i": i + 1, "max": MAX_REPLY_MINUTES}
            )
        if (channel, severity) in seen:
            errors.append(_("Entry %(i)s repeats a channel and severity.") % {"i": i + 1})
        seen.add((channel, severity))
    return errors


class Playbook(models.Model):
    """One version of a playbook.

    Versions of the same playbook share a ``key``. A draft may be edited; a
    published or retired version is frozen (services and the admin refuse to
    change it), so an incident that runs version 3 keeps running version 3
    while version 4 is drafted.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", pgettext_lazy("playbook status", "Draft")
        PUBLISHED = "published", pgettext_lazy("playbook status", "Published")
        RETIRED = "retired", pgettext_lazy("playbook status", "Retired")

    key = models.SlugField(_("key"), max_length=80, help_text=_("Shared by all versions."))
    version = models.PositiveIntegerField(_("version"), default=1)
    title = models.CharField(_("title"), max_length=200, validators=TEXT)
    scenario = models.CharField(_("scenario"), max_length=32, choices=Scenario.choices)
    summary = models.TextField(_("summary"), blank=True, validators=TEXT)
    severity_guidance = models.TextField(_("severity guidance"), blank=True, validators=TEXT)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.DRAFT
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_playbooks",
    )
    review_cycle_days = models.PositiveIntegerField(
        _("review cycle (days)"),
        default=180,
        validators=bounded(1, MAX_REVIEW_CYCLE_DAYS),
        help_text=_("Days between reviews: 1 to 1096 (three years)."),
    )
    last_reviewed_on = models.DateField(_("last reviewed"), null=True, blank=True)
    first_statement_minutes = models.PositiveIntegerField(
        _("first public statement due (minutes)"),
        default=60,
        validators=bounded(1, MAX_FIRST_STATEMENT_MINUTES),
        help_text=_(
            "Minutes after opening by which the first public statement must be out: "
            "1 to 10080 (a week)."
        ),
    )
    escalation_repeat_count = models.PositiveSmallIntegerField(
        _("escalation repeats"),
        default=0,
        validators=bounded(0, MAX_ESCALATION_REPEATS),
        help_text=_("How many times the escalation levels run again after the last one: 0 to 20."),
    )
    page_at_once_max_severity = models.PositiveSmallIntegerField(
        _("page level 1 at once"),
        null=True,
        blank=True,
        validators=bounded(1, MAX_SEVERITY),
        help_text=_(
            "Incidents of this severity or worse page escalation level 1 the moment they "
            "open (or are raised to it), without waiting for its delay: 1 = SEV1 only, "
            "2 = SEV1 and SEV2, up to 4 = every severity. Empty: level 1 always waits."
        ),
    )
    roll_call_minutes = models.PositiveIntegerField(
        _("roll-call window (minutes)"),
        default=DEFAULT_ROLL_CALL_MINUTES,
        validators=bounded(1, MAX_ROLL_CALL_MINUTES),
        help_text=_(
            "Minutes a role holder has to answer the activation e-mail (joining or can't) "
            "before they are chased, and again before the role passes on: 1 to 1440 (a day)."
        ),
    )
    reply_minutes = models.PositiveIntegerField(
        _("public comments answered within (minutes)"),
        default=DEFAULT_REPLY_MINUTES,
        validators=bounded(1, MAX_REPLY_MINUTES),
        help_text=_(
            "Minutes after it arrives by which a comment that needs a reply is answered, "
            "unless a channel or severity below says otherwise: 1 to 10080 (a week)."
        ),
    )
    reply_warn_minutes = models.PositiveIntegerField(
        _("warn before the reply deadline (minutes)"),
        default=DEFAULT_REPLY_WARN_MINUTES,
        validators=bounded(0, MAX_REPLY_MINUTES),
        help_text=_(
            "The communications lead is told this many minutes before a reply is due "
            "(0: no warning, only the escalation when it is missed)."
        ),
    )
    # [{"channel": "twitter" or "", "severity": 1..4 or null, "minutes": 1..10080}]: the
    # most specific entry wins (channel and severity, then channel, then severity).
    reply_deadlines = models.JSONField(
        _("reply deadlines per channel and severity"),
        default=list,
        blank=True,
        help_text=_(
            'e.g. [{"channel": "twitter", "severity": 1, "minutes": 30}]; an empty channel '
            "or severity means any."
        ),
    )
    published_at = models.DateTimeField(_("published at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ("title", "-version")
        verbose_name = _("playbook")
        verbose_name_plural = _("playbooks")
        constraints = [
            models.UniqueConstraint(fields=("key", "version"), name="playbook_key_version_unique"),
            # Incidents open from "the" published version of a playbook: there is one.
            models.UniqueConstraint(
                fields=("key",),
                condition=Q(status="published"),
                name="playbook_one_published_per_key",
            ),
            models.CheckConstraint(
                condition=Q(published_at__isnull=False) | Q(status="draft"),
                name="playbook_published_has_time",
            ),
            range_constraint(
                "review_cycle_days", 1, MAX_REVIEW_CYCLE_DAYS, "playbook_review_cycle_days_range"
            ),
            range_constraint(
                "first_statement_minutes",
                1,
                MAX_FIRST_STATEMENT_MINUTES,
                "playbook_first_statement_minutes_range",
            ),
            range_constraint(
                "escalation_repeat_count",
                0,
                MAX_ESCALATION_REPEATS,
                "playbook_escalation_repeat_count_range",
            ),
            models.CheckConstraint(
                condition=Q(page_at_once_max_severity__isnull=True)
                | Q(page_at_once_max_severity__gte=1, page_at_once_max_severity__lte=MAX_SEVERITY),
                name="playbook_page_at_once_max_severity_range",
            ),
            range_constraint(
                "roll_call_minutes", 1, MAX_ROLL_CALL_MINUTES, "playbook_roll_call_minutes_range"
            ),
            range_constraint("reply_minutes", 1, MAX_REPLY_MINUTES, "playbook_reply_minutes_range"),
            range_constraint(
                "reply_warn_minutes", 0, MAX_REPLY_MINUTES, "playbook_reply_warn_minutes_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title} (v{self.version})"

    def clean(self) -> None:
        errors = reply_deadlines_errors(self.reply_deadlines)
        if errors:
            raise ValidationError({"reply_deadlines": errors})

    def reply_minutes_for(self, *, channel: str, severity: int | None) -> int:
        """Minutes to answer a comment on ``channel`` during an incident of ``severity``:
        the most specific of ``reply_deadlines`` (channel and severity, channel, severity),
        else ``reply_minutes``."""
        best, best_rank = self.reply_minutes, -1
        for entry in self.reply_deadlines if isinstance(self.reply_deadlines, list) else []:
            on_channel, on_severity = entry.get("channel") or "", entry.get("severity")
            if (on_channel and on_channel != channel) or (
                on_severity is not None and on_severity != severity
            ):
                continue
            rank = 2 * bool(on_channel) + bool(on_severity is not None)
            if rank > best_rank:
                best, best_rank = entry["minutes"], rank
        return best

    @property
    def is_frozen(self) -> bool:
        return self.status != self.Status.DRAFT

    @property
    def next_review_on(self) -> date | None:
        start = self.last_reviewed_on or (self.published_at.date() if self.published_at else None)
        if start is None:
            return None
        return start + timedelta(days=self.review_cycle_days)

    @property
    def review_overdue(self) -> bool:
        due = self.next_review_on
        return self.status == self.Status.PUBLISHED and (due is None or due < timezone.localdate())

    @property
    def acknowledge_minutes(self) -> float | None:
        """Time to acknowledge the playbook expects: the first escalation level's delay."""
        first = self.escalation_levels.order_by("position").first()
        return first.delay_seconds / 60 if first else None


class Phase(models.TextChoices):
    DETECT = "detect", _("Detect")
    ASSESS = "assess", _("Assess")
    CONTAIN = "contain", _("Contain")
    COMMUNICATE = "communicate", _("Communicate")
    RECOVER = "recover", _("Recover")
    LEARN = "learn", _("Learn")


class PlaybookStep(models.Model):
    Phase = Phase

    playbook = models.ForeignKey(
        Playbook, verbose_name=_("playbook"), on_delete=models.CASCADE, related_name="steps"
    )
    position = models.PositiveIntegerField(_("position"))
    phase = models.CharField(_("phase"), max_length=16, choices=Phase.choices)
    title = models.CharField(_("title"), max_length=200, validators=TEXT)
    instructions = models.TextField(_("instructions"), blank=True, validators=TEXT)
    role = models.ForeignKey(
        CrisisRole,
        verbose_name=_("responsible role"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="playbook_steps",
    )
    due_offset_minutes = models.PositiveIntegerField(
        _("due (minutes after opening)"),
        default=0,
        validators=bounded(0, MAX_STEP_DUE_MINUTES),
        help_text=_("0 to 43200 (30 days)."),
    )

    class Meta:
        ordering = ("playbook", "position")
        verbose_name = _("playbook step")
        verbose_name_plural = _("playbook steps")
        constraints = [
            models.UniqueConstraint(
                fields=("playbook", "position"), name="playbookstep_position_unique"
            ),
            range_constraint(
                "due_offset_minutes",
                0,
                MAX_STEP_DUE_MINUTES,
                "playbookstep_due_offset_minutes_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.title}"


class StakeholderGroup(models.Model):
    class Kind(models.TextChoices):
        CUSTOMERS = "customers", _("Customers")
        EMPLOYEES = "employees", _("Employees")
        MEDIA = "media", _("Media")
        INVESTORS = "investors", _("Investors")
        REGULATORS = "regulators", _("Regulators")
        PARTNERS = "partners", _("Partners")
        # People who subscribed on the public status page (incidents/subscribers.py).
        SUBSCRIBERS = "subscribers", _("Status-page subscribers")
        OTHER = "other", _("Other")

    slug = models.SlugField(_("key"), max_length=50, unique=True)
    name = models.CharField(_("name"), max_length=120, validators=TEXT)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    priority = models.PositiveSmallIntegerField(
        _("priority"), default=3, validators=ONE_TO_FIVE, help_text=_("1 = told first.")
    )
    preferred_channels = models.JSONField(_("preferred channels"), default=list, blank=True)
    default_language = models.CharField(
        _("default language"), max_length=8, choices=language_choices, default="en"
    )
    description = models.TextField(_("description"), blank=True, validators=TEXT)
    public = models.BooleanField(
        _("public"),
        default=False,
        help_text=_("Statements to this audience appear on the public status page."),
    )

    history = HistoricalRecords()

    class Meta:
        ordering = ("priority", "name")
        verbose_name = _("stakeholder group")
        verbose_name_plural = _("stakeholder groups")
        constraints = [
            models.CheckConstraint(
                condition=Q(priority__gte=1, priority__lte=5),
                name="stakeholdergroup_priority_1_5",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        validate_choices_list(self.preferred_channels, Channel.choices, "preferred_channels")


class Stakeholder(models.Model):
    group = models.ForeignKey(
        StakeholderGroup,
        verbose_name=_("group"),
        on_delete=models.CASCADE,
        related_name="contacts",
    )
    name = models.CharField(_("name"), max_length=200, validators=TEXT)
    organisation = models.CharField(_("organisation"), max_length=200, blank=True, validators=TEXT)
    email = models.EmailField(_("e-mail"), blank=True)
    phone = models.CharField(_("phone"), max_length=40, blank=True, validators=TEXT)
    language = models.CharField(
        _("language"),
        max_length=8,
        choices=language_choices,
        blank=True,
        help_text=_("Empty: the group's default language."),
    )
    notes = models.TextField(_("notes"), blank=True, validators=TEXT)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    history = HistoricalRecords()

    class Meta:
        ordering = ("group", "name")
        verbose_name = _("stakeholder contact")
        verbose_name_plural = _("stakeholder contacts")
        constraints = [
            # One contact per address in a group: imports de-duplicate on it.
            models.UniqueConstraint(
                Lower("email"),
                "group",
                condition=~Q(email=""),
                name="stakeholder_group_email_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.email else self.name

    @property
    def effective_language(self) -> str:
        return self.language or self.group.default_language


class MessageTemplate(models.Model):
    """A pre-approved message with ``{placeholders}`` filled from the incident."""

    # Facts an incident can supply. A placeholder outside this list is refused
    # when the template is saved or imported, never discovered mid-crisis.
    PLACEHOLDERS: dict[str, str] = {
        "company": _("Company name"),
        "incident_title": _("Incident title (to a public audience: its public title)"),
        "incident_reference": _("Incident reference, e.g. INC-2026-0042"),
        "severity": _("Severity"),
        "detected_at": _("When the problem was detected"),
        "opened_at": _("When the incident was opened"),
        "now": _("Time of sending"),
        "next_update_at": _("When the next update will be published"),
        "spokesperson": _("Name of the spokesperson"),
        "contact_channel": _("Private channel for affected people (e-mail or phone)"),
        "status_page_url": _("Address of the status or update page"),
        "affected": _("Who or what is affected"),
        "what_happened": _("Short factual description"),
        "what_we_do": _("What we are doing about it"),
        "what_you_can_do": _("What the reader can do"),
        "recipient_name": _("Recipient's name (personal greeting)"),
    }

    playbook = models.ForeignKey(
        Playbook, verbose_name=_("playbook"), on_delete=models.CASCADE, related_name="templates"
    )
    name = models.CharField(_("name"), max_length=200, validators=TEXT)
    audience = models.ForeignKey(
        StakeholderGroup,
        verbose_name=_("audience"),
        on_delete=models.PROTECT,
        related_name="templates",
    )
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    language = models.CharField(_("language"), max_length=8, choices=language_choices, default="en")
    subject = models.CharField(_("subject"), max_length=300, blank=True, validators=TEXT)
    body = models.TextField(_("body"), validators=TEXT)

    history = HistoricalRecords()

    class Meta:
        ordering = ("playbook", "audience", "channel", "language")
        verbose_name = _("message template")
        verbose_name_plural = _("message templates")
        constraints = [
            models.UniqueConstraint(
                fields=("playbook", "name", "language"), name="messagetemplate_name_lang_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.language}]"

    @classmethod
    def placeholders_in(cls, text: str) -> list[str]:
        """Field names used in ``text``; raises ValueError for malformed braces."""
        names = []
        for _literal, field, spec, conversion in string.Formatter().parse(text):
            if field is None:
                continue
            if field == "" or not field.isidentifier() or spec or conversion:
                raise ValueError(
                    _("“{%(field)s}” is not a placeholder: use {name} with no format or index.")
                    % {"field": field}
                )
            names.append(field)
        return names

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        for field in ("subject", "body"):
            try:
                used = self.placeholders_in(getattr(self, field) or "")
            except ValueError as exc:
                errors[field] = [str(exc)]
                continue
            unknown = sorted(set(used) - set(self.PLACEHOLDERS))
            if unknown:
                errors[field] = [
                    _("Unknown placeholder(s): %(names)s. Known: %(known)s.")
                    % {
                        "names": ", ".join("{%s}" % n for n in unknown),
                        "known": ", ".join("{%s}" % n for n in self.PLACEHOLDERS),
                    }
                ]
        if errors:
            raise ValidationError(errors)


class OnCallRotation(models.Model):
    """Who holds a crisis role when.

    Members take turns in ``position`` order, handing off every
    ``handoff_hours`` of *local wall-clock time* in ``timezone`` from
    ``starts_at``: a daily 09:00 hand-off stays at 09:00 across daylight-saving
    changes. Overrides replace the scheduled holder for a time range.
    """

    name = models.CharField(_("name"), max_length=120, validators=TEXT)
    role = models.ForeignKey(
        CrisisRole, verbose_name=_("role"), on_delete=models.CASCADE, related_name="rotations"
    )
    priority = models.PositiveSmallIntegerField(
        _("priority"),
        default=1,
        help_text=_("When a role has several rotations, 1 is asked first."),
    )
    starts_at = models.DateTimeField(_("first hand-off"))
    handoff_hours = models.PositiveIntegerField(
        _("hand-off every (hours)"),
        default=168,
        validators=bounded(1, MAX_HANDOFF_HOURS),
        help_text=_("1 to 2160 (90 days)."),
    )
    timezone = models.CharField(
        _("time zone"), max_length=64, default="UTC", validators=[validate_timezone]
    )
    is_active = models.BooleanField(_("active"), default=True)
    ical_token = models.CharField(
        _("calendar feed token"),
        max_length=64,
        unique=True,
        default=secrets.token_urlsafe,
        editable=False,
    )

    class Meta:
        ordering = ("role", "priority", "name")
        verbose_name = _("on-call rotation")
        verbose_name_plural = _("on-call rotations")
        constraints = [
            models.CheckConstraint(
                condition=Q(handoff_hours__gte=1), name="rotation_handoff_positive"
            ),
            range_constraint("handoff_hours", 1, MAX_HANDOFF_HOURS, "rotation_handoff_hours_range"),
        ]

    def __str__(self) -> str:
        return self.name


class RotationMember(models.Model):
    rotation = models.ForeignKey(
        OnCallRotation, verbose_name=_("rotation"), on_delete=models.CASCADE, related_name="members"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="rotation_memberships",
    )
    position = models.PositiveIntegerField(_("position"))

    class Meta:
        ordering = ("rotation", "position")
        verbose_name = _("rotation member")
        verbose_name_plural = _("rotation members")
        constraints = [
            models.UniqueConstraint(
                fields=("rotation", "position"), name="rotationmember_position_unique"
            ),
            models.UniqueConstraint(fields=("rotation", "user"), name="rotationmember_user_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.user}"


class RotationOverride(models.Model):
    rotation = models.ForeignKey(
        OnCallRotation,
        verbose_name=_("rotation"),
        on_delete=models.CASCADE,
        related_name="overrides",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("stands in"),
        on_delete=models.CASCADE,
        related_name="rotation_overrides",
    )
    starts_at = models.DateTimeField(_("from"))
    ends_at = models.DateTimeField(_("until"))
    reason = models.CharField(_("reason"), max_length=200, blank=True, validators=TEXT)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        ordering = ("rotation", "starts_at")
        verbose_name = _("rotation override")
        verbose_name_plural = _("rotation overrides")
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="override_ends_after_start"
            ),
        ]
        indexes = [
            # Serves "which override covers instant t" in playbooks/oncall.py.
            models.Index(
                fields=("rotation", "starts_at", "ends_at"), name="override_rotation_range_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.starts_at:%Y-%m-%d %H:%M} – {self.ends_at:%Y-%m-%d %H:%M})"

    def clean(self) -> None:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": _("The override must end after it starts.")})


class EscalationLevel(models.Model):
    """One level of a playbook's escalation policy.

    Level 1 pages ``delay_seconds`` after the incident opens (at once for the
    severities the playbook's ``page_at_once_max_severity`` names); each later
    level pages its delay after the previous one, as long as nobody has acknowledged.
    Whom to page is decided when the level fires, never when the incident opens.
    """

    class Target(models.TextChoices):
        ROLE_ON_CALL = "role", _("On-call holder of a role")
        USERS = "users", _("Named users")
        ROTATION = "rotation", _("On-call holder of a rotation")

    playbook = models.ForeignKey(
        Playbook,
        verbose_name=_("playbook"),
        on_delete=models.CASCADE,
        related_name="escalation_levels",
    )
    position = models.PositiveIntegerField(
        _("level"),
        validators=bounded(1, MAX_ESCALATION_LEVELS),
        help_text=_("Levels are numbered 1, 2, 3… with no gaps, at most 50."),
    )
    delay_seconds = models.PositiveIntegerField(
        _("delay (seconds)"),
        validators=bounded(0, MAX_ESCALATION_DELAY_SECONDS),
        help_text=_(
            "After the incident opens (level 1, unless its severity pages at once) or after "
            "the previous level: 0 to 86400 (a day)."
        ),
    )
    target = models.CharField(_("page"), max_length=16, choices=Target.choices)
    role = models.ForeignKey(
        CrisisRole,
        verbose_name=_("role"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="escalation_levels",
    )
    rotation = models.ForeignKey(
        OnCallRotation,
        verbose_name=_("rotation"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="escalation_levels",
    )
    users = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("users"),
        blank=True,
        related_name="escalation_levels",
    )

    class Meta:
        ordering = ("playbook", "position")
        verbose_name = _("escalation level")
        verbose_name_plural = _("escalation levels")
        constraints = [
            models.UniqueConstraint(
                fields=("playbook", "position"), name="escalationlevel_position_unique"
            ),
            models.CheckConstraint(
                condition=(
                    Q(target="role", role__isnull=False, rotation__isnull=True)
                    | Q(target="rotation", rotation__isnull=False, role__isnull=True)
                    | Q(target="users", role__isnull=True, rotation__isnull=True)
                ),
                name="escalationlevel_target_matches",
            ),
            range_constraint(
                "position", 1, MAX_ESCALATION_LEVELS, "escalationlevel_position_range"
            ),
            range_constraint(
                "delay_seconds",
                0,
                MAX_ESCALATION_DELAY_SECONDS,
                "escalationlevel_delay_seconds_range",
            ),
        ]

    def __str__(self) -> str:
        return _("Level %(n)s") % {"n": self.position}

    def clean(self) -> None:
        if self.target == self.Target.ROLE_ON_CALL and not self.role_id:
            raise ValidationError({"role": _("Choose the role whose on-call holder is paged.")})
        if self.target == self.Target.ROTATION and not self.rotation_id:
            raise ValidationError({"rotation": _("Choose the rotation to page.")})
        if self.target != self.Target.ROLE_ON_CALL and self.role_id:
            raise ValidationError({"role": _("Only a role target names a role.")})
        if self.target != self.Target.ROTATION and self.rotation_id:
            raise ValidationError({"rotation": _("Only a rotation target names a rotation.")})


class UpdateCadence(models.Model):
    """How often an audience hears from us while the incident is open."""

    playbook = models.ForeignKey(
        Playbook, verbose_name=_("playbook"), on_delete=models.CASCADE, related_name="cadences"
    )
    audience = models.ForeignKey(
        StakeholderGroup,
        verbose_name=_("audience"),
        on_delete=models.PROTECT,
        related_name="cadences",
    )
    every_minutes = models.PositiveIntegerField(
        _("update every (minutes)"),
        validators=bounded(1, MAX_CADENCE_MINUTES),
        help_text=_("1 to 10080 (a week)."),
    )

    class Meta:
        ordering = ("playbook", "audience")
        verbose_name = _("update cadence")
        verbose_name_plural = _("update cadences")
        constraints = [
            models.UniqueConstraint(
                fields=("playbook", "audience"), name="cadence_audience_unique"
            ),
            models.CheckConstraint(condition=Q(every_minutes__gte=1), name="cadence_positive"),
            range_constraint(
                "every_minutes", 1, MAX_CADENCE_MINUTES, "cadence_every_minutes_range"
            ),
        ]

    def __str__(self) -> str:
        return _("%(audience)s every %(n)s min") % {
            "audience": self.audience,
            "n": self.every_minutes,
        }


class Risk(models.Model):
    class Status(models.TextChoices):
        IDENTIFIED = "identified", pgettext_lazy("risk status", "Identified")
        MITIGATING = "mitigating", _("Being mitigated")
        ACCEPTED = "accepted", pgettext_lazy("risk status", "Accepted")
        CLOSED = "closed", pgettext_lazy("risk status", "Closed")

    Category = Scenario

    title = models.CharField(_("title"), max_length=200, validators=TEXT)
    category = models.CharField(_("category"), max_length=32, choices=Scenario.choices)
    description = models.TextField(_("description"), blank=True, validators=TEXT)
    likelihood = models.PositiveSmallIntegerField(_("likelihood"), validators=ONE_TO_FIVE)
    impact = models.PositiveSmallIntegerField(_("impact"), validators=ONE_TO_FIVE)
    velocity = models.PositiveSmallIntegerField(
        _("velocity"), validators=ONE_TO_FIVE, help_text=_("How fast it would spread: 5 = hours.")
    )
    channels = models.JSONField(_("channels where it would surface"), default=list, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_risks",
    )
    mitigations = models.TextField(_("mitigations"), blank=True, validators=TEXT)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.IDENTIFIED
    )
    playbook = models.ForeignKey(
        Playbook,
        verbose_name=_("playbook"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="risks",
    )
    next_review_on = models.DateField(_("next review"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ("-likelihood", "-impact", "title")
        verbose_name = _("risk")
        verbose_name_plural = _("risks")
        constraints = [
            models.CheckConstraint(
                condition=Q(likelihood__gte=1, likelihood__lte=5), name="risk_likelihood_1_5"
            ),
            models.CheckConstraint(
                condition=Q(impact__gte=1, impact__lte=5), name="risk_impact_1_5"
            ),
            models.CheckConstraint(
                condition=Q(velocity__gte=1, velocity__lte=5), name="risk_velocity_1_5"
            ),
        ]
        indexes = [
            # Serves the heat map: counts per (likelihood, impact) cell of open risks.
            models.Index(fields=("likelihood", "impact"), name="risk_heatmap_cell_idx"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def score(self) -> int:
        """Likelihood × impact, 1–25: the heat-map axis product."""
        return self.likelihood * self.impact

    @property
    def heat_cell(self) -> tuple[int, int]:
        return (self.likelihood, self.impact)

    @property
    def rating(self) -> str:
        """Low / medium / high / critical band of the score, as the heat map colours it."""
        return rating_for(self.score)

    @property
    def review_overdue(self) -> bool:
        return (
            self.status != self.Status.CLOSED
            and self.next_review_on is not None
            and self.next_review_on < timezone.localdate()
        )

    @property
    def current_playbook(self) -> Playbook | None:
        """The published version of the linked playbook, which may be newer than the link."""
        if self.playbook is None:
            return None
        return (
            Playbook.objects.filter(key=self.playbook.key, status=Playbook.Status.PUBLISHED).first()
            or self.playbook
        )

    def clean(self) -> None:
        validate_choices_list(self.channels, SurfaceChannel.choices, "channels")


def rating_for(score: int) -> str:
    if score >= 15:
        return "critical"
    if score >= 10:
        return "high"
    if score >= 5:
        return "medium"
    return "low"


class ReviewReminder(models.Model):
    """One row per person and day a review digest went out.

    The daily beat task sends a person at most one digest a week (a row this week
    means done) and claims today's row before sending, so a second run on the
    same day (two schedulers, a retried task) sends nothing twice.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="review_reminders",
    )
    sent_on = models.DateField(_("sent on"))
    items = models.PositiveIntegerField(_("items due"), default=0)

    class Meta:
        ordering = ("-sent_on",)
        verbose_name = _("review reminder")
        verbose_name_plural = _("review reminders")
        constraints = [
            models.UniqueConstraint(fields=("user", "sent_on"), name="reviewreminder_once_a_day"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.sent_on}"


PHONE_RE = re.compile(r"^\+?[0-9 \-()./]{3,40}$")


def validate_phone(value: str) -> None:
    if value and not PHONE_RE.match(value):
        raise ValidationError(
            _("“%(value)s” is not a phone number (digits, spaces, + - ( ) . / only)."),
            code="phone",
            params={"value": value},
        )


class UserProfile(models.Model):
    """What the desk remembers about a person: how to reach them by phone, the
    language they read and the time zone every time is shown in.

    Empty language: the browser's; empty time zone: the desk's (settings.TIME_ZONE).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="profile",
    )
    phone = models.CharField(_("phone"), max_length=40, blank=True, validators=[validate_phone])
    language = models.CharField(
        _("language"),
        max_length=8,
        blank=True,
        choices=language_choices,
        help_text=_("Empty: the language your browser asks for."),
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        validators=[validate_timezone],
        help_text=_("Empty: the desk's time zone. A name such as Europe/Budapest."),
    )

    class Meta:
        verbose_name = _("profile")
        verbose_name_plural = _("profiles")

    def __str__(self) -> str:
        return str(self.user)
