"""Response: incidents, their tasks, role assignments, timeline, timers and outbox.

The record matters here more than anywhere: timeline entries are append-only
(refused by the model layer, and by a trigger on PostgreSQL), and incidents are
never deleted (every relation to one is PROTECT).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
from simple_history.models import HistoricalRecords

from crisisdesk.errors import AppendOnlyError  # noqa: F401 - re-exported for callers
from playbooks.models import (
    Channel,
    CrisisRole,
    MessageTemplate,
    Playbook,
    PlaybookStep,
    Scenario,
    StakeholderGroup,
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

    def __str__(self) -> str:
        return f"{self.reference} {self.title}"

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


# Importable names for the OpenAPI schema's enum names (SPECTACULAR_SETTINGS).
ActionItemStatus = ActionItem.Status
