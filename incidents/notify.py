"""The notification outbox: writing notifications, and delivering them at least once.

A notification is written in the transaction that decides it is needed (one
row per recipient and reason; the unique ``dedupe_key`` makes a second write
of the same one impossible) and delivered after commit:

1. Claim it: ``queued -> sending`` with a lease, by a conditional update.
2. Re-check that it is still wanted: an escalation page only while its incident
   is open in the same escalation round. If not, mark it ``cancelled`` (with the
   reason) and send nothing.
3. Hand it to the SMTP server with the row's stable Message-ID.
4. As soon as the server's reply arrives, mark it sent, in its own short
   transaction with nothing else in between (the attempt is recorded and the
   connection closed after that). A transient failure (connection refused, 4xx)
   puts it back in the queue with back-off; a permanent one (5xx) marks it
   failed, with the reason, on the incident's timeline. Every attempt is recorded.

What is guaranteed, and what is not:

- **At least once; a resend carries the same Message-ID.** A process that dies
  during 3 or 4 leaves the row ``sending``; when its lease runs out (``lease()``,
  a little longer than EMAIL_TIMEOUT) the sweep queues it again and it is sent
  again. If the death came after the server had accepted the message and
  before step 4 committed, the recipient gets it twice, with the same
  Message-ID, so mail programs show it as one message. SMTP cannot close that
  window (RFC 1047): the server's acceptance and our commit are two systems.
  Step 4 keeps it to the time between the server's reply and one UPDATE. The
  fault tests and bench/escalation_latency.py count such resends
  (``resends_same_message_id``) rather than hide them.
- **No page after an acknowledgement committed, except one already being handed
  to the SMTP server.** Acknowledging (and containing or resolving) cancels the
  incident's escalation e-mails still queued or waiting for a retry in the same
  transaction (``escalations_cancel``), and step 2 cancels any claimed later (a
  retry, a lease run out). What remains possible: a page whose step 2 ran before
  the acknowledgement committed, so was in steps 3-4 at that moment, arrives
  after it. That is at most one SMTP exchange per page already in flight; a
  transient failure of that exchange sends it back through step 2, which
  cancels it.

Locks: a service that cancels locks the incident row, then updates the
notification rows (the engine's one lock order, incidents/escalation.py).
Delivery locks only its own notification row, one statement at a time.
"""

from __future__ import annotations

import logging
import smtplib
import zoneinfo
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import get_connection
from django.db import IntegrityError, transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from crisisdesk.mail import Email
from incidents import acklinks, dispatch, rollcall
from incidents.models import (
    DeliveryAttempt,
    Incident,
    Notification,
    RoleAssignment,
    Task,
    TimelineEntry,
    Timer,
)
from playbooks.models import CrisisRole
from playbooks.oncall import oncall_holder
from playbooks.people import person_locale

log = logging.getLogger(__name__)


def lease() -> timedelta:
    """How long a delivery in progress keeps its claim before the sweep takes it back.

    Longer than one SMTP exchange may take (EMAIL_TIMEOUT), so a live but slow
    send is not doubled; short, so a send whose worker was killed is retried
    soon after (bench/escalation_latency.py --kill-worker measures it).
    """
    return timedelta(seconds=getattr(settings, "EMAIL_TIMEOUT", None) or 20) + timedelta(seconds=10)


BACKOFF_FIRST_SECONDS = 2
BACKOFF_CAP_SECONDS = 30
GIVE_UP_AFTER = timedelta(hours=24)


# ------------------------------------------------------------------ links


def absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def incident_url(incident: Incident) -> str:
    """The incident's war-room page: where an incident is run."""
    return absolute(reverse("warroom:incident", args=[incident.reference]))


# ----------------------------------------------------------------- rendering


def subject_prefix(incident: Incident) -> str:
    prefix = f"[SEV{incident.severity}] {incident.reference}"
    return f"[{_('DRILL')}] {prefix}" if incident.drill else prefix


def render_email(
    name: str, context: dict, *, language: str | None = None, zone: str | None = None
) -> tuple[str, str, str]:
    """Subject, text and HTML of one e-mail, written in ``language`` with every time
    in ``zone`` (the recipient's; the desk's by default), the zone named."""
    with (
        translation.override(language or settings.LANGUAGE_CODE),
        timezone.override(zoneinfo.ZoneInfo(zone or settings.TIME_ZONE)),
    ):
        subject = render_to_string(f"email/{name}_subject.txt", context)
        text = render_to_string(f"email/{name}.txt", context)
        html = render_to_string(f"email/{name}.html", context)
    return " ".join(subject.split()), text, html


def _create(
    *,
    incident: Incident,
    timer: Timer | None,
    person,
    reason: str,
    dedupe_key: str,
    template: str,
    context: dict,
    role_assignment: RoleAssignment | None = None,
) -> Notification | None:
    message_id = Notification.new_message_id()
    language, zone = person_locale(person)
    context = {
        **context,
        "tz": context.get("tz") or zone,
        "incident": incident,
        "recipient": person,
        "subject_prefix": subject_prefix(incident),
        "incident_url": incident_url(incident),
        "ack_url": absolute(reverse("incidents:ack", args=[acklinks.ack_token(message_id)])),
    }
    if role_assignment is not None:
        context.update(
            {
                f"{answer}_url": absolute(
                    reverse(
                        "incidents:rollcall", args=[rollcall.rollcall_token(message_id, answer)]
                    )
                )
                for answer in rollcall.ANSWERS
            }
        )
    subject, text, html = render_email(template, context, language=language, zone=zone)
    try:
        with transaction.atomic():
            return Notification.objects.create(
                incident=incident,
                timer=timer,
                role_assignment=role_assignment,
                recipient=person,
                to_email=person.email,
                reason=reason,
                dedupe_key=dedupe_key,
                message_id=message_id,
                subject=subject[:400],
                body_text=text,
                body_html=html,
            )
    except IntegrityError:
        return None  # this person was already told this, for this reason


def escalation_notifications(
    *,
    incident: Incident,
    timer: Timer,
    level: int,
    cycle: int,
    people: list,
    now: datetime,
    next_level_at: datetime | None,
) -> list[int]:
    """One page per person, rendered now, inside the firing transaction.

    The body is written once and every resend (at least once, same Message-ID)
    carries it unchanged, so it states what stands at this instant: the incident
    row is locked by the fire and read in this transaction, so a first statement
    already made is reported as made (and when), one not made yet as due (and when);
    ``next_level_at`` is the time of the next level's timer the fire writes.
    """
    earlier = list(
        Notification.objects.filter(
            incident=incident, reason="escalation", created_at__gte=incident.opened_at
        )
        .exclude(recipient__in=people)
        .select_related("recipient")
        .values_list("recipient__first_name", "recipient__last_name", "recipient__username")
    )
    already = sorted({(f"{f} {lname}".strip() or u) for f, lname, u in earlier})
    statement_due = (
        None
        if incident.first_statement_at
        else incident.opened_at + timedelta(minutes=incident.first_statement_minutes)
    )
    context = {
        "level": level,
        "cycle": cycle,
        "paged_now": [p.get_full_name() or p.get_username() for p in people],
        "paged_before": already,
        "next_level_at": next_level_at,
        "first_statement_at": incident.first_statement_at,
        "first_statement_due": statement_due,
        "first_statement_overdue": statement_due is not None and statement_due <= now,
        "since": incident.opened_at,
        "now": now,
        # The zone times are shown in (None: the desk's, settings.TIME_ZONE).
        "tz": None,
    }
    created = []
    for person in people:
        n = _create(
            incident=incident,
            timer=timer,
            person=person,
            reason="escalation",
            dedupe_key=f"esc:{incident.pk}:{timer.round}:{cycle}:{level}:{person.pk}",
            template="escalation",
            context=context,
        )
        if n is not None:
            created.append(n.pk)
    return created


def _role_people(incident: Incident, role_slugs: tuple[str, ...], at: datetime) -> list:
    """The incident's current holders of these roles, or the roles' on-call holders."""
    people = []
    for slug in role_slugs:
        assignment = (
            RoleAssignment.objects.filter(
                incident=incident, role__slug=slug, relieved_at__isnull=True
            )
            .select_related("user")
            .first()
        )
        person = assignment.user if assignment else None
        if person is None:
            role = CrisisRole.objects.filter(slug=slug).first()
            person = oncall_holder(role=role, at=at) if role else None
        if person is not None and person.is_active and person.email and person not in people:
            people.append(person)
    return people


def deadline_notifications(
    *, incident: Incident, timer: Timer, role_slugs: tuple[str, ...], now: datetime
) -> list[int]:
    deadline = incident.opened_at + timedelta(minutes=incident.first_statement_minutes)
    context = {
        "deadline": deadline,
        "missed": timer.kind == Timer.Kind.FIRST_STATEMENT,
        "minutes": incident.first_statement_minutes,
        "now": now,
    }
    created = []
    for person in _role_people(incident, role_slugs, now):
        n = _create(
            incident=incident,
            timer=timer,
            person=person,
            reason=timer.kind,
            dedupe_key=f"{timer.kind}:{timer.pk}:{person.pk}",
            template="statement_deadline",
            context=context,
        )
        if n is not None:
            created.append(n.pk)
    return created


def cadence_notifications(
    *, incident: Incident, timer: Timer, every: int, now: datetime
) -> list[int]:
    context = {"audience": timer.audience, "every": every, "now": now}
    created = []
    for person in _role_people(incident, ("communications-lead",), now):
        n = _create(
            incident=incident,
            timer=timer,
            person=person,
            reason="update_cadence",
            dedupe_key=f"update_cadence:{timer.pk}:{person.pk}",
            template="update_due",
            context=context,
        )
        if n is not None:
            created.append(n.pk)
    return created


def task_due_notifications(
    *, incident: Incident, timer: Timer, task: Task, now: datetime
) -> list[int]:
    person = task.assignee
    if person is None or not person.is_active or not person.email:
        return []
    n = _create(
        incident=incident,
        timer=timer,
        person=person,
        reason="task_due",
        dedupe_key=f"task_due:{timer.pk}:{person.pk}",
        template="task_due",
        context={"task": task, "now": now},
    )
    return [n.pk] if n else []


ACTIVATION = "activation"
ROLL_CALL_CHASE = "roll_call_chase"


def activation_notification(
    *,
    incident: Incident,
    assignment: RoleAssignment,
    answer_by: datetime,
    now: datetime,
    chase: bool = False,
    timer: Timer | None = None,
) -> int | None:
    """The e-mail that calls a role holder in (or, ``chase``, asks again), with the
    two roll-call links; one per assignment and reason (the dedupe key)."""
    person = assignment.user
    if not person.is_active or not person.email:
        return None
    reason = ROLL_CALL_CHASE if chase else ACTIVATION
    n = _create(
        incident=incident,
        timer=timer,
        person=person,
        reason=reason,
        dedupe_key=f"{reason}:{assignment.pk}",
        template=reason,
        context={
            "role": assignment.role,
            "assignment": assignment,
            "answer_by": answer_by,
            "warroom_url": absolute(reverse("warroom:incident", args=[incident.reference])),
            "now": now,
        },
        role_assignment=assignment,
    )
    return n.pk if n else None


# ------------------------------------------------------------------ delivery


def deliver_now(ids: list[int]) -> None:
    for pk in ids:
        notification_deliver(notification_id=pk)


def _backoff(attempts: int) -> timedelta:
    return timedelta(
        seconds=min(BACKOFF_CAP_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** max(0, attempts - 1))
    )


def _is_permanent(exc: Exception) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in exc.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(exc, smtplib.SMTPResponseException):
        return 500 <= exc.smtp_code < 600 and not isinstance(exc, smtplib.SMTPAuthenticationError)
    return False


def escalations_cancel(*, incident: Incident, reason: str) -> int:
    """Cancel the incident's escalation e-mails not handed to the SMTP server yet.

    Queued ones and those waiting for a retry (also ``queued``). Called inside the
    service that stops the paging, after it locked the incident row, so it is
    part of the same transaction. One being sent right now (``sending``) is
    left alone: if its send fails it comes back through the re-check in
    ``notification_deliver``, which cancels it.
    """
    return Notification.objects.filter(
        incident=incident, reason="escalation", status=Notification.Status.QUEUED
    ).update(status=Notification.Status.CANCELLED, cancel_reason=reason[:200], lease_until=None)


def _unwanted(n: Notification) -> str:
    """Why this notification must not go out any more ("" if it is still wanted)."""
    incident = n.incident
    if n.reason in (ACTIVATION, ROLL_CALL_CHASE) and n.role_assignment is not None:
        assignment = n.role_assignment
        if incident is not None and not incident.is_active:
            return _("The incident was %(status)s before this was sent.") % {
                "status": incident.get_status_display().lower()
            }
        if assignment.relieved_at is not None:
            return _("The role was handed on before this was sent.")
        if n.reason == ROLL_CALL_CHASE and assignment.answer != RoleAssignment.Answer.PENDING:
            return _("The roll call was answered before this reminder was sent.")
        return ""
    if n.reason != "escalation" or incident is None:
        return ""
    if incident.status != Incident.Status.OPEN:
        who = incident.acknowledged_by
        if incident.status == Incident.Status.ACKNOWLEDGED and who is not None:
            return _("%(who)s acknowledged the incident first.") % {
                "who": who.get_full_name() or who.get_username()
            }
        return _("The incident was %(status)s before this was sent.") % {
            "status": incident.get_status_display().lower()
        }
    if n.timer is not None and n.timer.round != incident.escalation_round:
        return _("The incident was reopened: this page is from an earlier round.")
    return ""


def notification_deliver(*, notification_id: int, now: datetime | None = None) -> str:
    now = now or timezone.now()
    claimed = Notification.objects.filter(
        pk=notification_id, status=Notification.Status.QUEUED, next_attempt_at__lte=now
    ).update(
        status=Notification.Status.SENDING, lease_until=now + lease(), attempts=F("attempts") + 1
    )
    if claimed != 1:
        return f"notification {notification_id}: not queued or not due"
    n = Notification.objects.select_related(
        "incident", "incident__acknowledged_by", "timer", "role_assignment"
    ).get(pk=notification_id)
    why = _unwanted(n)
    if why:
        Notification.objects.filter(pk=n.pk, status=Notification.Status.SENDING).update(
            status=Notification.Status.CANCELLED,
            cancel_reason=why[:200],
            lease_until=None,
            attempts=F("attempts") - 1,  # claimed, never attempted
        )
        return f"notification {n.pk}: cancelled ({why})"
    message = Email(
        subject=n.subject,
        body=n.body_text,
        to=[n.to_email],
        headers={
            "Message-ID": n.message_id,
            **({"X-CrisisDesk-Incident": n.incident.reference} if n.incident else {}),
            # Why it was sent (escalation, activation, message...): for mail filters.
            "X-CrisisDesk-Reason": n.reason,
            "Auto-Submitted": "auto-generated",
        },
    )
    if n.body_html:
        message.attach_alternative(n.body_html, "text/html")
    # The connection is opened here and closed only after the row is marked sent:
    # closing it (QUIT) waits for the server, and must not sit between its
    # acceptance and our commit.
    connection = get_connection()
    try:
        connection.open()
        message.connection = connection
        message.send()
    except Exception as exc:  # noqa: BLE001 - every failure is recorded and classified
        _close_quietly(connection)
        return _failed(n, exc, now=timezone.now())
    # The server accepted it: record that first, in its own transaction, nothing else.
    done = timezone.now()
    Notification.objects.filter(pk=n.pk, status=Notification.Status.SENDING).update(
        status=Notification.Status.SENT, sent_at=done, lease_until=None, last_error=""
    )
    _close_quietly(connection)
    DeliveryAttempt.objects.create(notification=n, at=done, ok=True)
    log.info("e-mail sent to %s: %s", n.to_email, n.subject)
    return f"notification {n.pk}: sent"


def _close_quietly(connection) -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - the message is already sent or already failed
        log.warning("closing the SMTP connection failed", exc_info=True)


def _failed(n: Notification, exc: Exception, *, now: datetime) -> str:
    error = f"{type(exc).__name__}: {exc}"[:1000]
    permanent = _is_permanent(exc) or (now - n.created_at > GIVE_UP_AFTER)
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            notification=n, at=now, ok=False, error=error, permanent=permanent
        )
        if permanent:
            Notification.objects.filter(pk=n.pk, status=Notification.Status.SENDING).update(
                status=Notification.Status.FAILED, lease_until=None, last_error=error
            )
            if n.incident_id:
                TimelineEntry.objects.create(
                    incident_id=n.incident_id,
                    kind=TimelineEntry.Kind.DELIVERY,
                    at=now,
                    text=_("E-mail to %(to)s could not be delivered: %(error)s")
                    % {"to": n.to_email, "error": error},
                    data={"notification_id": n.pk, "permanent": True},
                )
            return f"notification {n.pk}: failed permanently ({error})"
        log.warning("e-mail to %s failed, will retry: %s", n.to_email, error)
        retry_at = now + _backoff(n.attempts)
        Notification.objects.filter(pk=n.pk, status=Notification.Status.SENDING).update(
            status=Notification.Status.QUEUED,
            lease_until=None,
            last_error=error,
            next_attempt_at=retry_at,
            enqueued_at=now,
        )
    dispatch.send(dispatch.DELIVER_NOTIFICATION, n.pk, eta=retry_at)
    return f"notification {n.pk}: will retry at {retry_at:%H:%M:%S} ({error})"
