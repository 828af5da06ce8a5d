"""Response: incidents, their tasks, role assignments, timeline, timers and outbox.

The record matters here more than anywhere: timeline entries are append-only
(refused by the model layer, and by a trigger on PostgreSQL), and incidents are
never deleted (every relation to one is PROTECT).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator, MaxValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
from simple_history.models import HistoricalRecords

from crisisdesk.errors import AppendOnlyError  # noqa: F401 - re-exported for callers
from playbooks.models import (
    MAX_INJECT_MENTIONS,  # noqa: F401 - bounds of an exercise, with the others here
    TEXT,
    Channel,
    CrisisRole,
    MessageTemplate,
    Playbook,
    PlaybookStep,
    Scenario,
    Stakeholder,
    StakeholderGroup,
    bounded,
    inject_mentions_errors,
    range_constraint,
)


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are never updated.")

    def delete(self):
        raise AppendOnlyError(f"{self.model.__name__} rows are never deleted.")


class Severity(models.IntegerChoices):
    SEV1 = 1, _("SEV1 – critical")
    SEV2 = 2, _("SEV2 – major")
    SEV3 = 3, _("SEV3 – moderate")
    SEV4 = 4, _("SEV4 – minor")


# The public status page's title of an incident without a public title: says what
# kind of trouble, and nothing of what the desk calls it inside.
NEUTRAL_TITLES = {
    Scenario.DATA_BREACH: _("Data security incident"),
    Scenario.SOCIAL_MEDIA_STORM: _("Public statement"),
    Scenario.NEGATIVE_REVIEWS: _("Customer feedback"),
    Scenario.SERVICE_OUTAGE: _("Service disruption"),
    Scenario.PRODUCT_RECALL: _("Product safety notice"),
    Scenario.LEGAL_REGULATORY: _("Regulatory matter"),
    Scenario.OTHER: _("Service notice"),
}


class Incident(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", _("Open – not acknowledged")
        ACKNOWLEDGED = "acknowledged", pgettext_lazy("incident status", "Acknowledged")
        CONTAINED = "contained", pgettext_lazy("incident status", "Contained")
        RESOLVED = "resolved", pgettext_lazy("incident status", "Resolved")
        CLOSED = "closed", pgettext_lazy("incident status", "Closed")

    ACTIVE_STATUSES = (Status.OPEN, Status.ACKNOWLEDGED, Status.CONTAINED)

    reference = models.CharField(_("reference"), max_length=32, unique=True, editable=False)
    title = models.CharField(_("title"), max_length=300)
    # What the public status page, its feeds and subscribers' e-mails call the
    # incident: the internal title never leaves the desk (empty: a neutral title
    # from the category, ``public_heading``).
    public_title = models.CharField(
        _("public title"),
        max_length=300,
        blank=True,
        default="",
        help_text=_(
            "Shown on the public status page instead of the title. Empty: a neutral "
            "title from the category."
        ),
    )
    summary = models.TextField(_("what happened"), blank=True)
    severity = models.PositiveSmallIntegerField(
        _("severity"), choices=Severity.choices, default=Severity.SEV2
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.OPEN
    )
    category = models.CharField(_("category"), max_length=32, choices=Scenario.choices)
    confidential = models.BooleanField(
        _("confidential"),
        default=False,
        help_text=_("Visible only to crisis managers and the people assigned to it."),
    )
    drill = models.BooleanField(
        _("drill"), default=False, help_text=_("An exercise: e-mails say [DRILL].")
    )
    playbook = models.ForeignKey(
        Playbook,
        verbose_name=_("playbook version"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="incidents",
        help_text=_("The frozen version this incident runs. Empty: opened ad hoc."),
    )
    # The escalation policy frozen at opening, with ids: the engine reads only this,
    # so editing or retiring the playbook never changes a running escalation.
    escalation_policy = models.JSONField(
        _("escalation policy as opened"), default=dict, blank=True, editable=False
    )
    first_statement_minutes = models.PositiveIntegerField(
        _("first public statement due (minutes)"), default=60
    )
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("opened by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("acknowledged by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    # Milestones. Each is stamped by the service that reaches it; reopening keeps
    # the first ones (the post-mortem measures from them) and clears the later ones.
    detected_at = models.DateTimeField(_("detected"), null=True, blank=True)
    opened_at = models.DateTimeField(_("opened"), default=timezone.now)
    acknowledged_at = models.DateTimeField(_("acknowledged"), null=True, blank=True)
    first_statement_at = models.DateTimeField(_("first public statement"), null=True, blank=True)
    contained_at = models.DateTimeField(_("contained"), null=True, blank=True)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    # When the first escalation page went out: the acknowledge target is measured
    # from it (incidents/postmortem/facts.py), falling back to opened_at when nobody
    # was paged. Stamped by the escalation handler in the transaction that writes the
    # page, only while nobody has acknowledged, so it pairs with acknowledged_at:
    # both are kept when an acknowledged incident is reopened, and reopening one
    # nobody acknowledged clears it with the rest of the round.
    first_paged_at = models.DateTimeField(_("first page"), null=True, blank=True, editable=False)
    # Bumped by every reopen: a new escalation round, whose timers are distinct
    # from the previous round's (see Timer's unique constraint).
    escalation_round = models.PositiveIntegerField(_("escalation round"), default=1)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    history = HistoricalRecords()

    # Not stored: set by incident_open on the incident it returns for a retried
    # Idempotency-Key (the API answers 200 instead of 201).
    replayed = False

    class Meta:
        ordering = ("-opened_at",)
        verbose_name = _("incident")
        verbose_name_plural = _("incidents")
        permissions = [
            ("acknowledge_incident", _("Can acknowledge incidents")),
            ("view_confidential_incident", _("Can see every confidential incident")),
        ]
        indexes = [
            # Serves the war-room list: active incidents, newest first.
            models.Index(fields=("status", "-opened_at"), name="incident_status_opened_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                # max_length is the bound on PostgreSQL; this one holds on SQLite too.
                condition=LessThanOrEqual(Length("public_title"), 300),
                name="incident_public_title_bounded",
            ),
        ]

    # What the public status page shows of an incident: a change to any of these
    # writes a new status-page version (statuscache.on_incident_saved).
    PUBLIC_FIELDS = (
        "public_title", "category", "status", "resolved_at", "closed_at", "confidential",
        "drill",
    )  # fmt: skip

    def __str__(self) -> str:
        return f"{self.reference} {self.title}"

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance.public_snapshot_take()
        return instance

    def public_snapshot_take(self) -> None:
        """Remember what the public sees now (loaded, or just saved)."""
        self._public_snapshot = tuple(self.__dict__.get(name) for name in self.PUBLIC_FIELDS)

    def public_changed(self) -> bool:
        """Whether what the public sees differs from when it was loaded or last saved
        (True for an incident never loaded: nothing to compare with)."""
        before = getattr(self, "_public_snapshot", None)
        return before != tuple(self.__dict__.get(name) for name in self.PUBLIC_FIELDS)

    @property
    def public_heading(self) -> str:
        """The title the public reads: the public title, else a neutral one from the
        category; never the internal title."""
        return self.public_title or str(
            NEUTRAL_TITLES.get(self.category, NEUTRAL_TITLES[Scenario.OTHER])
        )

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def severity_label(self) -> str:
        return f"SEV{self.severity}"


class ReferenceCounter(models.Model):
    """Last incident number handed out per year: INC-2026-0042."""

    year = models.PositiveIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("reference counter")
        verbose_name_plural = _("reference counters")

    def __str__(self) -> str:
        return f"{self.year}: {self.last}"


class RoleAssignment(models.Model):
    """Who held a crisis role on an incident, and when. Relieving closes a row, never removes it."""

    class Answer(models.TextChoices):
        PENDING = "pending", _("No answer yet")
        JOINING = "joining", _("Joining")
        CANT = "cant", _("Can't")

    incident = models.ForeignKey(
        Incident, verbose_name=_("incident"), on_delete=models.PROTECT, related_name="assignments"
    )
    role = models.ForeignKey(
        CrisisRole, verbose_name=_("role"), on_delete=models.PROTECT, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("held by"),
        on_delete=models.PROTECT,
        related_name="incident_assignments",
    )
    assumed_at = models.DateTimeField(_("assumed"), default=timezone.now)
    relieved_at = models.DateTimeField(_("relieved"), null=True, blank=True)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("assigned by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    # The roll call (services.role_assign e-mails the holder; incidents/rollcall.py
    # reads their answer; escalation._fire_roll_call chases and passes the role on).
    answer = models.CharField(
        _("roll-call answer"), max_length=16, choices=Answer.choices, default=Answer.PENDING
    )
    answered_at = models.DateTimeField(_("answered"), null=True, blank=True)
    chased_at = models.DateTimeField(_("chased"), null=True, blank=True)
    offered_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("role offered to"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Who the role passed to when this holder could not take it or did not answer."),
    )

    class Meta:
        ordering = ("incident", "role__sort_order", "assumed_at")
        verbose_name = _("role assignment")
        verbose_name_plural = _("role assignments")
        constraints = [
            models.UniqueConstraint(
                fields=("incident", "role"),
                condition=Q(relieved_at__isnull=True),
                name="assignment_one_current_holder",
            ),
            models.CheckConstraint(
                condition=Q(answer="pending", answered_at__isnull=True)
                | (~Q(answer="pending") & Q(answered_at__isnull=False)),
                name="assignment_answer_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.user}"


class Task(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", pgettext_lazy("task status", "Open")
        DONE = "done", pgettext_lazy("task status", "Done")
        SKIPPED = "skipped", pgettext_lazy("task status", "Skipped")

    incident = models.ForeignKey(
        Incident, verbose_name=_("incident"), on_delete=models.PROTECT, related_name="tasks"
    )
    step = models.ForeignKey(
        PlaybookStep,
        verbose_name=_("playbook step"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    position = models.PositiveIntegerField(_("position"), default=0)
    phase = models.CharField(_("phase"), max_length=16, blank=True)
    title = models.CharField(_("title"), max_length=200)
    instructions = models.TextField(_("instructions"), blank=True)
    role = models.ForeignKey(
        CrisisRole,
        verbose_name=_("role"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("assignee"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="incident_tasks",
    )
    due_at = models.DateTimeField(_("due"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.OPEN
    )
    done_at = models.DateTimeField(_("done"), null=True, blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("done by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ("incident", "position")
        verbose_name = _("task")
        verbose_name_plural = _("tasks")

    def __str__(self) -> str:
        return self.title

    @property
    def is_late(self) -> bool:
        end = self.done_at or timezone.now()
        return self.due_at is not None and end > self.due_at


class TimelineEntry(models.Model):
    """One line of an incident's record. Never updated, never deleted."""

    class Kind(models.TextChoices):
        OPENED = "opened", pgettext_lazy("timeline event", "Opened")
        ACKNOWLEDGED = "acknowledged", pgettext_lazy("timeline event", "Acknowledged")
        SEVERITY = "severity", _("Severity changed")
        CONTAINED = "contained", pgettext_lazy("timeline event", "Contained")
        RESOLVED = "resolved", pgettext_lazy("timeline event", "Resolved")
        CLOSED = "closed", pgettext_lazy("timeline event", "Closed")
        REOPENED = "reopened", pgettext_lazy("timeline event", "Reopened")
        ROLE = "role", _("Role assignment")
        TASK = "task", _("Task")
        ESCALATION = "escalation", _("Escalation")
        UNSTAFFED = "unstaffed", _("Escalation level unstaffed")
        EXHAUSTED = "exhausted", _("Escalation exhausted")
        DELIVERY = "delivery", _("Delivery problem")
        DEADLINE = "deadline", _("Deadline")
        MESSAGE = "message", _("Message")
        ROLL_CALL = "roll_call", _("Roll call")
        INJECT = "inject", _("Exercise inject")
        NOTE = "note", _("Note")
        CORRECTION = "correction", _("Correction")

    incident = models.ForeignKey(
        Incident, verbose_name=_("incident"), on_delete=models.PROTECT, related_name="timeline"
    )
    at = models.DateTimeField(_("at"), default=timezone.now)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    text = models.TextField(_("text"))
    data = models.JSONField(_("details"), default=dict, blank=True)
    corrects = models.ForeignKey(
        "self",
        verbose_name=_("corrects"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="corrections",
    )

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("incident", "at", "id")
        verbose_name = _("timeline entry")
        verbose_name_plural = _("timeline entries")
        indexes = [
            # Serves an incident's timeline in order (war room, post-mortem).
            models.Index(fields=("incident", "at"), name="timeline_incident_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.text}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise AppendOnlyError(_("Timeline entries are never edited; add a correction."))
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(_("Timeline entries are never deleted; add a correction."))


class Timer(models.Model):
    """Something that must happen at a time: the database is its source of truth.

    See incidents/escalation.py for how timers are enqueued, swept and fired.
    """

    class Kind(models.TextChoices):
        ESCALATION = "escalation", _("Escalation level")
        FIRST_STATEMENT = "first_statement", _("First-statement deadline")
        STATEMENT_REMINDER = "statement_reminder", _("First-statement reminder")
        UPDATE_CADENCE = "update_cadence", _("Stakeholder update due")
        TASK_DUE = "task_due", _("Task due")
        MESSAGE_SEND = "message_send", _("Scheduled message")
        ROLL_CALL = "roll_call", _("Roll-call window")
        INJECT = "inject", _("Exercise inject")
        REPLY_WARNING = "reply_warning", _("Reply to a comment due soon")
        REPLY_DEADLINE = "reply_deadline", _("Reply to a comment due")

    REPLY_KINDS = (Kind.REPLY_WARNING, Kind.REPLY_DEADLINE)

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        FIRED = "fired", _("Fired")
        CANCELLED = "cancelled", _("Cancelled")

    incident = models.ForeignKey(
        Incident, verbose_name=_("incident"), on_delete=models.PROTECT, related_name="timers"
    )
    kind = models.CharField(_("kind"), max_length=24, choices=Kind.choices)
    due_at = models.DateTimeField(_("due"))
    state = models.CharField(
        _("state"), max_length=16, choices=State.choices, default=State.PENDING
    )
    # Escalation timers: which round (reopen), which repeat of the policy, which level.
    round = models.PositiveIntegerField(_("round"), default=1)
    cycle = models.PositiveIntegerField(_("repeat"), default=0)
    level = models.PositiveIntegerField(_("level"), default=0)
    task = models.ForeignKey(
        Task,
        verbose_name=_("task"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="timers",
    )
    audience = models.ForeignKey(
        StakeholderGroup,
        verbose_name=_("audience"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    message = models.ForeignKey(
        "Message",
        verbose_name=_("message"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="timers",
    )
    # Roll-call timers: whose answer is awaited (level 1: the first window, 2: after the chase).
    assignment = models.ForeignKey(
        RoleAssignment,
        verbose_name=_("role assignment"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="timers",
    )
    # Exercise inject timers: the inject they fire (incidents/exercises.py).
    inject = models.ForeignKey(
        "Inject",
        verbose_name=_("exercise inject"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="timers",
    )
    # Reply timers: the public comment awaiting its reply (incidents/listening/inbox.py).
    mention = models.ForeignKey(
        "listening.Mention",
        verbose_name=_("mention"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="timers",
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    enqueued_at = models.DateTimeField(_("last enqueued"), null=True, blank=True)
    fired_at = models.DateTimeField(_("fired"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=200, blank=True)

    class Meta:
        ordering = ("due_at",)
        verbose_name = _("timer")
        verbose_name_plural = _("timers")
        constraints = [
            # One timer per escalation step: a retried fire cannot write a level twice.
            models.UniqueConstraint(
                fields=("incident", "round", "cycle", "level"),
                condition=Q(kind="escalation"),
                name="timer_escalation_step_unique",
            ),
            # One timer per roll-call window: a retried fire cannot chase twice.
            models.UniqueConstraint(
                fields=("assignment", "level"),
                condition=Q(kind="roll_call"),
                name="timer_roll_call_window_unique",
            ),
            # One pending timer per inject: pausing cancels it, resuming writes the next,
            # firing early moves it; an inject can never wait on two timers at once.
            models.UniqueConstraint(
                fields=("inject",),
                condition=Q(kind="inject", state="pending"),
                name="timer_inject_one_pending",
            ),
            # One pending warning and one pending deadline per comment: marking it again
            # cancels the old ones first.
            models.UniqueConstraint(
                fields=("mention", "kind"),
                condition=Q(kind__in=("reply_warning", "reply_deadline"), state="pending"),
                name="timer_reply_one_pending",
            ),
            models.CheckConstraint(
                condition=Q(state="pending", fired_at__isnull=True) | ~Q(state="pending"),
                name="timer_pending_not_fired",
            ),
        ]
        indexes = [
            # Serves the sweep: pending timers due before now + horizon. Partial, so
            # it stays as small as the number of pending timers, whatever the history.
            models.Index(
                fields=("due_at",), condition=Q(state="pending"), name="timer_pending_due_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} @ {self.due_at:%Y-%m-%d %H:%M:%S}"


class Notification(models.Model):
    """The outbox: one row per recipient and reason, delivered by incidents/notify.py."""

    class Status(models.TextChoices):
        QUEUED = "queued", pgettext_lazy("e-mail status", "Queued")
        SENDING = "sending", pgettext_lazy("e-mail status", "Sending")
        SENT = "sent", pgettext_lazy("e-mail status", "Sent")
        FAILED = "failed", pgettext_lazy("e-mail status", "Failed")
        # No longer wanted before it was handed to the SMTP server (an
        # escalation page after the acknowledgement); cancel_reason says why.
        CANCELLED = "cancelled", pgettext_lazy("e-mail status", "Cancelled")

    incident = models.ForeignKey(
        Incident,
        verbose_name=_("incident"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="notifications",
    )
    # The stakeholder message this e-mail delivers (the Message-ID header is message_id).
    comms_message = models.ForeignKey(
        "Message",
        verbose_name=_("stakeholder message"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="deliveries",
    )
    contact = models.ForeignKey(
        "playbooks.Stakeholder",
        verbose_name=_("contact"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    timer = models.ForeignKey(
        Timer,
        verbose_name=_("timer"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="notifications",
    )
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("recipient"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="notifications",
    )
    to_email = models.EmailField(_("to"))
    # The language the e-mail was written in (a stakeholder message: the variant sent).
    language = models.CharField(_("language"), max_length=8, blank=True)
    reason = models.CharField(_("reason"), max_length=32)
    dedupe_key = models.CharField(_("dedupe key"), max_length=200, unique=True)
    message_id = models.CharField(_("Message-ID"), max_length=200, unique=True, editable=False)
    subject = models.CharField(_("subject"), max_length=400)
    body_text = models.TextField(_("text"))
    body_html = models.TextField(_("HTML"), blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.QUEUED
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    lease_until = models.DateTimeField(_("sending lease until"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    cancel_reason = models.CharField(_("why cancelled"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    enqueued_at = models.DateTimeField(_("last enqueued"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    ack_token_used_at = models.DateTimeField(_("acknowledge link used"), null=True, blank=True)
    # Activation and roll-call chase e-mails: the assignment their links answer for.
    role_assignment = models.ForeignKey(
        RoleAssignment,
        verbose_name=_("role assignment"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="notifications",
    )

    class Meta:
        ordering = ("-created_at",)
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        indexes = [
            # Serves the sweep: undelivered notifications (queued, or sending with a lease).
            models.Index(
                fields=("next_attempt_at",),
                condition=Q(status__in=("queued", "sending")),
                name="notification_undelivered_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.to_email}: {self.subject}"

    @staticmethod
    def new_message_id() -> str:
        domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].strip("> ") or "crisisdesk"
        return f"<{uuid.uuid4().hex}@{domain}>"


class SendRun(models.Model):
    """The fan-out of one sent message: how far writing its outbox rows has got.

    ``comms.message_send`` creates it with the audience's size and highest contact
    id at that instant; ``comms.message_fanout`` writes the rows in batches of
    contacts ordered by id and records the last id written after each batch, so a
    fan-out that died resumes where it stopped (the rows' unique dedupe key makes a
    batch written twice write nobody twice). ``progress_at`` moves with every
    batch written and every chunk delivered: the sweep re-queues a fan-out or a
    delivery whose progress stopped (incidents/escalation.py).
    """

    message = models.OneToOneField(
        "Message", verbose_name=_("message"), on_delete=models.PROTECT, related_name="send_run"
    )
    total = models.PositiveIntegerField(_("contacts"))
    written = models.PositiveIntegerField(_("outbox rows written"), default=0)
    # Contacts with an id above until_contact joined the audience after the send.
    until_contact = models.PositiveBigIntegerField(_("last contact id at sending"))
    after_contact = models.PositiveBigIntegerField(_("contacts written up to id"), default=0)
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    progress_at = models.DateTimeField(_("last progress"), default=timezone.now)
    finished_at = models.DateTimeField(_("outbox written"), null=True, blank=True)

    class Meta:
        verbose_name = _("send run")
        verbose_name_plural = _("send runs")
        constraints = [
            models.CheckConstraint(
                condition=Q(written__lte=F("total")), name="sendrun_written_le_total"
            ),
            models.CheckConstraint(
                condition=Q(after_contact__lte=F("until_contact")),
                name="sendrun_after_le_until",
            ),
        ]
        indexes = [
            # Serves the sweep: fan-outs still writing.
            models.Index(
                fields=("progress_at",),
                condition=Q(finished_at__isnull=True),
                name="sendrun_unfinished_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.message_id}: {self.written}/{self.total}"


class DeliveryAttempt(models.Model):
    notification = models.ForeignKey(
        Notification,
        verbose_name=_("notification"),
        on_delete=models.CASCADE,
        related_name="delivery_attempts",
    )
    at = models.DateTimeField(_("at"), default=timezone.now)
    ok = models.BooleanField(_("delivered"))
    error = models.TextField(_("error"), blank=True)
    permanent = models.BooleanField(_("permanent failure"), default=False)

    class Meta:
        ordering = ("notification", "at")
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {'ok' if self.ok else self.error[:60]}"


class Message(models.Model):
    """One message to one audience: the communications timeline.

    draft → in review → approved → sent (e-mail) or published (other channels).
    A sent or published message is never changed or deleted (model layer, and
    a trigger on PostgreSQL); a mistake is corrected by a new message that
    points at it.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", pgettext_lazy("message status", "Draft")
        IN_REVIEW = "in_review", pgettext_lazy("message status", "In review")
        APPROVED = "approved", pgettext_lazy("message status", "Approved")
        SENT = "sent", pgettext_lazy("message status", "Sent")
        PUBLISHED = "published", pgettext_lazy("message status", "Published")

    FINAL = (Status.SENT, Status.PUBLISHED)
    EDITABLE = (Status.DRAFT, Status.IN_REVIEW)
    # The longest text one language of a message may hold (every door: forms, API, services).
    BODY_MAX = 20_000

    incident = models.ForeignKey(
        Incident, verbose_name=_("incident"), on_delete=models.PROTECT, related_name="messages"
    )
    audience = models.ForeignKey(
        StakeholderGroup, verbose_name=_("audience"), on_delete=models.PROTECT, related_name="+"
    )
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    language = models.CharField(_("language"), max_length=8, default="en")
    template = models.ForeignKey(
        MessageTemplate,
        verbose_name=_("template"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    subject = models.CharField(_("subject"), max_length=400, blank=True)
    body = models.TextField(_("body"))
    # The template as filled at drafting: a body still equal to it reads as boilerplate.
    filled_template = models.TextField(_("template as filled"), blank=True, editable=False)
    # The other languages of the same statement: {"he": {"subject": ..., "body": ...}}.
    # One per language the audience needs (incidents/comms.py: audience_languages);
    # a contact whose language has none gets the group's default language.
    translations = models.JSONField(_("translations"), default=dict, blank=True)
    # Languages the team took out of this message on purpose: their contacts get the
    # group's default language (each drop is on the timeline).
    dropped_languages = models.JSONField(_("languages dropped"), default=list, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.DRAFT
    )
    is_public = models.BooleanField(
        _("public statement"),
        default=True,
        help_text=_("Counts towards the first public statement (not internal messages)."),
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("author"),
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("approved by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    approved_at = models.DateTimeField(_("approved"), null=True, blank=True)
    approval_note = models.CharField(_("approval note"), max_length=300, blank=True)
    boilerplate_approved = models.BooleanField(
        _("approved although unchanged from template"), default=False
    )
    scheduled_for = models.DateTimeField(_("send at"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("sent by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    published_where = models.CharField(
        _("published where (URL or note)"), max_length=500, blank=True
    )
    corrects = models.ForeignKey(
        "self",
        verbose_name=_("corrects"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="corrections",
    )

    history = HistoricalRecords()

    class Meta:
        ordering = ("incident", "created_at", "id")
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        permissions = [("approve_message", _("Can approve outbound messages"))]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status__in=("sent", "published")) | Q(sent_at__isnull=False),
                name="message_final_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=("approved", "sent", "published"))
                | Q(approver__isnull=False),
                name="message_approved_has_approver",
            ),
        ]
        indexes = [
            # Serves the communications timeline of an incident, oldest first.
            models.Index(fields=("incident", "created_at"), name="message_incident_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.incident.reference} → {self.audience}: {self.subject or self.body[:60]}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            stored = Message.objects.filter(pk=self.pk).values_list("status", flat=True).first()
            if stored in self.FINAL:
                raise AppendOnlyError(
                    _(
                        "A sent or published message is never changed; "
                        "correct it with a new message."
                    )
                )
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if self.status != self.Status.DRAFT or self.sent_at:
            raise AppendOnlyError(_("Only a draft that never went out can be deleted."))
        return super().delete(*args, **kwargs)

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @property
    def reads_as_boilerplate(self) -> bool:
        return bool(self.filled_template) and self.body.strip() == self.filled_template.strip()


class MessageRevision(models.Model):
    """Every edit of a draft, kept: who changed the words, and what they were."""

    message = models.ForeignKey(
        Message, verbose_name=_("message"), on_delete=models.CASCADE, related_name="revisions"
    )
    at = models.DateTimeField(_("at"), default=timezone.now)
    editor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("editor"),
        on_delete=models.PROTECT,
        related_name="+",
    )
    subject = models.CharField(_("subject"), max_length=400, blank=True)
    body = models.TextField(_("body"))
    # The other-language variants as they were before this edit.
    translations = models.JSONField(_("translations"), default=dict, blank=True)

    class Meta:
        ordering = ("message", "at", "id")
        verbose_name = _("message revision")
        verbose_name_plural = _("message revisions")

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.editor}"


class PostMortem(models.Model):
    """The blameless report of an incident: facts computed from the record, narrative by people.

    The facts (milestones, deadlines, escalations, messages, roles, tasks, the
    timeline) are never stored here: incidents/postmortem.py computes them from
    the record each time. People write the narrative. Publishing freezes the
    revision as a PostMortemRevision; a later edit starts the next revision.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", pgettext_lazy("post-mortem status", "Draft")
        IN_REVIEW = "in_review", pgettext_lazy("post-mortem status", "In review")
        PUBLISHED = "published", pgettext_lazy("post-mortem status", "Published")

    NARRATIVE = (
        "summary",
        "impact",
        "went_well",
        "went_poorly",
        "got_lucky",
        "root_cause",
        "lessons",
    )

    incident = models.OneToOneField(
        Incident, verbose_name=_("incident"), on_delete=models.PROTECT, related_name="postmortem"
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.DRAFT
    )
    revision = models.PositiveIntegerField(_("revision"), default=1)
    summary = models.TextField(_("summary"), blank=True)
    impact = models.TextField(
        _("impact"), blank=True, help_text=_("Who and what was affected, and for how long.")
    )
    went_well = models.TextField(_("what went well"), blank=True)
    went_poorly = models.TextField(_("what went poorly"), blank=True)
    got_lucky = models.TextField(_("where we got lucky"), blank=True)
    root_cause = models.TextField(_("root cause and contributing factors"), blank=True)
    lessons = models.TextField(_("lessons"), blank=True)
    created_at = models.DateTimeField(_("started"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("last edited by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    submitted_at = models.DateTimeField(_("submitted for review"), null=True, blank=True)
    published_at = models.DateTimeField(_("published"), null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("published by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    history = HistoricalRecords()

    class Meta:
        ordering = ("-created_at",)
        verbose_name = _("post-mortem")
        verbose_name_plural = _("post-mortems")
        permissions = [("publish_postmortem", _("Can publish post-mortems"))]

    def __str__(self) -> str:
        return _("Post-mortem of %(ref)s") % {"ref": self.incident.reference}

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            stored = (
                PostMortem.objects.filter(pk=self.pk)
                .values("status", "revision", *self.NARRATIVE)
                .first()
            )
            if (
                stored
                and stored["status"] == self.Status.PUBLISHED
                and stored["revision"] == self.revision
                and any(stored[f] != getattr(self, f) for f in self.NARRATIVE)
            ):
                raise AppendOnlyError(
                    _("A published post-mortem is frozen; edit it to start a new revision.")
                )
        super().save(*args, **kwargs)


class PostMortemRevision(models.Model):
    """A published revision, frozen whole: its narrative and the report as it read then."""

    postmortem = models.ForeignKey(
        PostMortem,
        verbose_name=_("post-mortem"),
        on_delete=models.PROTECT,
        related_name="revisions",
    )
    number = models.PositiveIntegerField(_("revision"))
    published_at = models.DateTimeField(_("published"), default=timezone.now)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("published by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    narrative = models.JSONField(_("narrative"), default=dict)
    markdown = models.TextField(_("report as published (Markdown)"))

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("postmortem", "number")
        verbose_name = _("published revision")
        verbose_name_plural = _("published revisions")
        constraints = [
            models.UniqueConstraint(
                fields=("postmortem", "number"), name="postmortem_revision_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.postmortem} r{self.number}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise AppendOnlyError(_("A published revision is never changed."))
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(_("A published revision is never deleted."))


class ActionItem(models.Model):
    """Something to change after the incident; may revise a playbook."""

    class Kind(models.TextChoices):
        DETECTIVE = "detective", _("Detective (notice sooner)")
        PREVENTIVE = "preventive", _("Preventive (stop it happening)")
        CORRECTIVE = "corrective", _("Corrective (fix what broke)")

    class Status(models.TextChoices):
        OPEN = "open", pgettext_lazy("action item status", "Open")
        IN_PROGRESS = "in_progress", pgettext_lazy("action item status", "In progress")
        DONE = "done", pgettext_lazy("action item status", "Done")
        WONT_DO = "wont_do", pgettext_lazy("action item status", "Won't do")

    OPEN_STATUSES = (Status.OPEN, Status.IN_PROGRESS)

    postmortem = models.ForeignKey(
        PostMortem,
        verbose_name=_("post-mortem"),
        on_delete=models.PROTECT,
        related_name="action_items",
    )
    title = models.CharField(_("title"), max_length=300)
    description = models.TextField(_("description"), blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="action_items",
    )
    due_on = models.DateField(_("due"), null=True, blank=True)
    kind = models.CharField(_("type"), max_length=16, choices=Kind.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.OPEN
    )
    playbook = models.ForeignKey(
        Playbook,
        verbose_name=_("playbook to revise"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="action_items",
    )
    produced_version = models.ForeignKey(
        Playbook,
        verbose_name=_("playbook version produced"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="produced_by_action_items",
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    done_at = models.DateTimeField(_("done"), null=True, blank=True)
    last_reminded_on = models.DateField(_("owner last reminded"), null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ("due_on", "pk")
        verbose_name = _("action item")
        verbose_name_plural = _("action items")
        indexes = [
            # Serves the daily overdue reminder: open items by due date.
            models.Index(
                fields=("due_on",),
                condition=Q(status__in=("open", "in_progress")),
                name="actionitem_open_due_idx",
            )
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_overdue(self) -> bool:
        return (
            self.status in self.OPEN_STATUSES
            and self.due_on is not None
            and self.due_on < timezone.localdate()
        )


class IdempotencyKey(models.Model):
    """An API client's Idempotency-Key for opening an incident: a retry gets the same one."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="+"
    )
    key = models.CharField(_("key"), max_length=200)
    incident = models.ForeignKey(
        Incident, verbose_name=_("incident"), on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        constraints = [
            models.UniqueConstraint(fields=("user", "key"), name="idempotency_key_unique")
        ]

    def __str__(self) -> str:
        return self.key


class SweepRun(models.Model):
    """The last run of each periodic sweep: one row per kind, updated in place.

    In the database, not in a process's memory, so every web process and worker on
    every machine reads the same answer to "when did beat last sweep?" (/readyz,
    /metrics and the dead man's switch, incidents/watchdog.py).
    """

    class Kind(models.TextChoices):
        ESCALATION = "escalation", _("Escalation sweep")

    kind = models.CharField(_("kind"), max_length=24, choices=Kind.choices, unique=True)
    started_at = models.DateTimeField(_("last started"))
    finished_at = models.DateTimeField(_("last finished"), null=True, blank=True)
    # Of the last finished run; a sweep longer than a day is a sweep that hung.
    duration_ms = models.PositiveIntegerField(
        _("duration (ms)"), default=0, validators=[MaxValueValidator(86_400_000)]
    )
    runs = models.PositiveBigIntegerField(_("runs"), default=0)

    class Meta:
        verbose_name = _("sweep run")
        verbose_name_plural = _("sweep runs")
        constraints = [
            models.CheckConstraint(
                condition=Q(duration_ms__lte=86_400_000), name="sweeprun_duration_bounded"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} @ {self.started_at:%Y-%m-%d %H:%M:%S}"


class Subscription(models.Model):
    """What a status-page subscriber asked for: every update, or one incident's.

    The subscriber is a contact of the *subscribers* stakeholder group (one per
    address), so the communications timeline sends to them like to any audience;
    ``comms.message_send`` reaches only those whose scope covers the message's
    incident. Written only when the e-mailed confirmation link is used (double
    opt-in): an address nobody confirmed is stored nowhere.
    """

    contact = models.ForeignKey(
        Stakeholder,
        verbose_name=_("subscriber"),
        on_delete=models.CASCADE,
        related_name="subscriptions",
    )
    incident = models.ForeignKey(
        Incident,
        verbose_name=_("incident"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="subscriptions",
        help_text=_("Empty: every update on the status page."),
    )
    confirmed_at = models.DateTimeField(_("confirmed"), default=timezone.now)

    class Meta:
        ordering = ("contact", "confirmed_at")
        verbose_name = _("status-page subscription")
        verbose_name_plural = _("status-page subscriptions")
        constraints = [
            models.UniqueConstraint(
                fields=("contact", "incident"), name="subscription_contact_incident_unique"
            ),
            # NULLs are distinct in a unique constraint: "everything" once per contact.
            models.UniqueConstraint(
                fields=("contact",),
                condition=Q(incident__isnull=True),
                name="subscription_contact_all_unique",
            ),
        ]

    def __str__(self) -> str:
        scope = self.incident.reference if self.incident_id else _("all updates")
        return f"{self.contact.email}: {scope}"


# ------------------------------------------------------------------ exercises

# Bounds of an exercise (every door: forms, API, services; and the database).
EXERCISE_BRIEF_MAX = 10_000
EXERCISE_MAX_PARTICIPANTS = 50
INJECT_TEXT_MAX = 4_000
MAX_INJECTS = 100
MAX_INJECT_OFFSET_SECONDS = 24 * 60 * 60  # the script of one exercise spans a day at most


def validate_inject_mentions(value) -> None:
    errors = inject_mentions_errors(value)
    if errors:
        raise ValidationError(errors)


class Exercise(models.Model):
    """A rehearsal of a playbook: a scenario, its participants, and a script of injects.

    Planned, then started (which opens a drill incident from the playbook version),
    paused and resumed any number of times, and ended. Its clock runs from
    ``started_at`` and stands still while paused (``paused_seconds``). Written by
    incidents/exercises.py; the injects fire through the timer engine.
    """

    class Status(models.TextChoices):
        PLANNED = "planned", pgettext_lazy("exercise status", "Planned")
        RUNNING = "running", pgettext_lazy("exercise status", "Running")
        PAUSED = "paused", pgettext_lazy("exercise status", "Paused")
        ENDED = "ended", pgettext_lazy("exercise status", "Ended")

    playbook = models.ForeignKey(
        Playbook,
        verbose_name=_("playbook version"),
        on_delete=models.PROTECT,
        related_name="exercises",
    )
    title = models.CharField(_("title"), max_length=300, validators=TEXT)
    brief = models.TextField(
        _("scenario brief"),
        blank=True,
        validators=[*TEXT, MaxLengthValidator(EXERCISE_BRIEF_MAX)],
    )
    planned_start = models.DateTimeField(_("planned start"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PLANNED
    )
    facilitator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("facilitator"),
        on_delete=models.PROTECT,
        related_name="facilitated_exercises",
    )
    incident = models.OneToOneField(
        Incident,
        verbose_name=_("drill incident"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="exercise",
    )
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    paused_at = models.DateTimeField(_("paused"), null=True, blank=True)
    paused_seconds = models.PositiveIntegerField(_("time paused (seconds)"), default=0)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    observations = models.TextField(
        _("facilitator's observations"),
        blank=True,
        validators=[*TEXT, MaxLengthValidator(EXERCISE_BRIEF_MAX)],
    )
    counts_as_review = models.BooleanField(_("counts as a review of the playbook"), default=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ("-created_at", "-pk")
        verbose_name = _("exercise")
        verbose_name_plural = _("exercises")
        constraints = [
            models.CheckConstraint(
                condition=Q(status="planned") | Q(started_at__isnull=False, incident__isnull=False),
                name="exercise_started_has_incident",
            ),
            models.CheckConstraint(
                condition=Q(status="paused", paused_at__isnull=False)
                | (~Q(status="paused") & Q(paused_at__isnull=True)),
                name="exercise_paused_has_time",
            ),
            models.CheckConstraint(
                condition=Q(status="ended", ended_at__isnull=False) | ~Q(status="ended"),
                name="exercise_ended_has_time",
            ),
            models.CheckConstraint(
                condition=Q(LessThanOrEqual(Length("brief"), EXERCISE_BRIEF_MAX))
                & Q(LessThanOrEqual(Length("observations"), EXERCISE_BRIEF_MAX)),
                name="exercise_text_bounded",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def elapsed(self, now: datetime | None = None) -> timedelta:
        """Exercise time: since the start, the pauses left out (zero before the start)."""
        if self.started_at is None:
            return timedelta(0)
        until = self.ended_at or self.paused_at or now or timezone.now()
        return max(timedelta(0), until - self.started_at - timedelta(seconds=self.paused_seconds))

    def due_at(self, inject: Inject) -> datetime | None:
        """When an inject is due on the wall clock, as things stand (None before the start)."""
        if self.started_at is None:
            return None
        return self.started_at + timedelta(seconds=self.paused_seconds + inject.offset_seconds)


class ExerciseParticipant(models.Model):
    """A person taking part in an exercise, in the crisis role they play."""

    exercise = models.ForeignKey(
        Exercise,
        verbose_name=_("exercise"),
        on_delete=models.CASCADE,
        related_name="participants",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("person"),
        on_delete=models.PROTECT,
        related_name="exercise_parts",
    )
    role = models.ForeignKey(
        CrisisRole, verbose_name=_("role played"), on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ("exercise", "role__sort_order", "pk")
        verbose_name = _("participant")
        verbose_name_plural = _("participants")
        constraints = [
            models.UniqueConstraint(fields=("exercise", "user"), name="participant_once"),
            # A role has one holder on the drill incident (RoleAssignment's rule).
            models.UniqueConstraint(fields=("exercise", "role"), name="participant_role_once"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.user}"


class Inject(models.Model):
    """One timed event of an exercise's script: what happens, when, and whom it reaches."""

    exercise = models.ForeignKey(
        Exercise, verbose_name=_("exercise"), on_delete=models.CASCADE, related_name="injects"
    )
    position = models.PositiveIntegerField(_("position"), validators=bounded(1, MAX_INJECTS))
    # Seconds, so a test (or a very short rehearsal) can run a script in seconds; the
    # pages and the library speak minutes.
    offset_seconds = models.PositiveIntegerField(
        _("offset from the start (seconds)"),
        validators=bounded(0, MAX_INJECT_OFFSET_SECONDS),
    )
    title = models.CharField(_("title"), max_length=200, validators=TEXT)
    text = models.TextField(
        _("what happens"), validators=[*TEXT, MaxLengthValidator(INJECT_TEXT_MAX)]
    )
    # Empty: every participant. Otherwise the participants playing these roles.
    roles = models.ManyToManyField(
        CrisisRole,
        verbose_name=_("reaches the roles"),
        blank=True,
        related_name="+",
        help_text=_("Empty: every participant."),
    )
    # Sample public comments the inject brings into the listening inbox when it fires
    # (tied to the drill's incident, never evaluated against the listening rules).
    mentions = models.JSONField(
        _("public comments it brings"),
        default=list,
        blank=True,
        validators=[validate_inject_mentions],
    )
    fired_at = models.DateTimeField(_("fired"), null=True, blank=True)

    class Meta:
        ordering = ("exercise", "offset_seconds", "position")
        verbose_name = _("inject")
        verbose_name_plural = _("injects")
        constraints = [
            models.UniqueConstraint(fields=("exercise", "position"), name="inject_position_unique"),
            range_constraint("position", 1, MAX_INJECTS, "inject_position_range"),
            range_constraint("offset_seconds", 0, MAX_INJECT_OFFSET_SECONDS, "inject_offset_range"),
            models.CheckConstraint(
                condition=LessThanOrEqual(Length("text"), INJECT_TEXT_MAX),
                name="inject_text_bounded",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def offset_minutes(self) -> float:
        return self.offset_seconds / 60


# Importable names for the OpenAPI schema's enum names (SPECTACULAR_SETTINGS).
ActionItemStatus = ActionItem.Status


class RateCount(models.Model):
    """How many requests one key (a hashed address or client) made in one window.

    Counted in the database, not the cache: ``UPDATE ... SET n = n + 1 WHERE n < limit``
    on this row is atomic on every database, where the file cache (the default) has no
    atomic increment. Rows of past windows are deleted as new ones come.
    """

    key = models.CharField(_("key"), max_length=64)  # sha256 hex of the limit's name
    window = models.PositiveBigIntegerField(_("window"))  # Unix time // window length
    n = models.PositiveIntegerField(_("requests"), default=0)

    class Meta:
        verbose_name = _("rate count")
        verbose_name_plural = _("rate counts")
        constraints = [
            # Serves the claim: one row per key and window.
            models.UniqueConstraint(fields=("key", "window"), name="ratecount_key_window_unique"),
            models.CheckConstraint(
                condition=LessThanOrEqual(Length("key"), 64), name="ratecount_key_bounded"
            ),
        ]
        indexes = [
            # Serves the clean-up of past windows.
            models.Index(fields=("window",), name="ratecount_window_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.key[:12]}… {self.window}: {self.n}"
