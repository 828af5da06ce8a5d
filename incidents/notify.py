"""The notification outbox: writing notifications, and delivering them at least once.

A notification is written in the transaction that decides it is needed (one
row per recipient and reason; the unique ``dedupe_key`` makes a second write
of the same one impossible) and delivered after commit:

1. Claim it: ``queued -> sending`` with a lease, by a conditional update.
2. Re-check that it is still wanted: an escalation page only while its incident
   is open in the same escalation round. If not, mark it ``cancelled`` (with the
   reason) and send nothing.
3. Hand it to the SMTP server with the row's stable Message-ID, if an exchange
   started now ends inside the lease (by the worker's own clock); a worker that
   stalled since its claim renews first, and sends nothing the sweep took back.
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
  Step 4 keeps it to the time between the server's reply and one UPDATE, and
  step 3's check to an exchange that outlasts its lease once started: its
  worker's host cut off mid-exchange and back within EMAIL_TIMEOUT, or an SMTP
  server slow at every step (EMAIL_TIMEOUT bounds each read and write, not the
  exchange), or a sweeping host whose clock runs ahead of the sender's (keep
  clocks synchronised, NTP). A worker that stalls before the exchange and comes
  back after its lease ran out sends nothing. The
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
import socket
import struct
import zoneinfo
from collections import Counter, defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import get_connection
from django.db import IntegrityError, transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from crisisdesk import ratelimit
from crisisdesk.mail import Email
from incidents import acklinks, dispatch, rollcall, sublinks
from incidents.models import (
    DeliveryAttempt,
    Exercise,
    ExerciseParticipant,
    Incident,
    Inject,
    Notification,
    RoleAssignment,
    SendRun,
    Task,
    TimelineEntry,
    Timer,
)
from playbooks.models import CrisisRole, Stakeholder, StakeholderGroup
from playbooks.oncall import oncall_holder
from playbooks.people import person_locale

log = logging.getLogger(__name__)


def exchange() -> timedelta:
    """How long one SMTP exchange is given: EMAIL_TIMEOUT. It bounds each of the
    exchange's reads and writes, not their sum: a server (or a network) slow at every
    step, each time just inside the timeout, can stretch one exchange past it."""
    return timedelta(seconds=getattr(settings, "EMAIL_TIMEOUT", None) or 20)


def lease() -> timedelta:
    """How long a delivery in progress keeps its claim before the sweep takes it back.

    Longer than one SMTP exchange normally takes (``exchange()``), so a live but slow
    send is not doubled; short, so a send whose worker was killed is retried
    soon after (bench/escalation_latency.py --kill-worker measures it). The 10 s
    between the two are for the work between a claim and its hand-off; a worker
    that took longer renews first (``_fenced``).
    """
    return exchange() + timedelta(seconds=10)


def _fenced(pks: list[int], until: datetime) -> tuple[datetime, set[int]]:
    """The claim (lease end) to hand ``pks[0]`` to the SMTP server under, and which of
    ``pks`` the caller still holds.

    Before each hand-off the worker checks by its own clock that an exchange started
    now ends inside its lease. A worker that stalled since it claimed or renewed (its
    network gone, a database or Redis call hanging, a pause) renews first; where the
    sweep took a row back meanwhile the renewal finds it gone, and the row is not
    sent: another worker has it. Where the renewal itself took so long that an
    exchange would still outlast it, nothing is held: the rows keep the caller's
    renewed lease and the sweep takes them back when it runs out (a lease's delay,
    on a worker whose network is failing). The row is not re-checked after a
    stall: a page the incident's acknowledgement cancelled meanwhile can still go
    (the "already being handed over" case below).
    """
    if timezone.now() + exchange() <= until:
        return until, set(pks)
    renewal, held = _renewed(pks, until)
    if timezone.now() + exchange() > renewal:
        return renewal, set()
    return renewal, held


def _renewed(pks: list[int], until: datetime) -> tuple[datetime, set[int]]:
    """Extend the caller's claim on ``pks`` (lease end ``until``) by a lease from now:
    the new lease end, and the rows still held (those the sweep took back are not)."""
    renewal = timezone.now() + lease()
    _held(pks, until).update(lease_until=renewal)
    return renewal, set(_held(pks, renewal).values_list("pk", flat=True))


BACKOFF_FIRST_SECONDS = 2
BACKOFF_CAP_SECONDS = 30
GIVE_UP_AFTER = timedelta(hours=24)


# ------------------------------------------------------------------ links


def absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def unsubscribe_url(contact: Stakeholder) -> str:
    """A status-page subscriber's unsubscribe link (incidents/subscribers.py)."""
    return absolute(sublinks.unsubscribe_path(contact_id=contact.pk, email=contact.email))


def is_subscriber_message(n: Notification) -> bool:
    """A communications message written to a status-page subscriber (not a drill copy)."""
    message = n.comms_message
    return (
        message is not None
        and message.audience.kind == StakeholderGroup.Kind.SUBSCRIBERS
        and not (n.incident is not None and n.incident.drill)
    )


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


def drill_people_ids(incident: Incident) -> set[int] | None:
    """Whom a drill may e-mail (None: anyone, it is no drill).

    A drill reaches only its own people: an exercise's participants; a drill
    opened without an exercise, the people who hold a role on it now and
    whoever opened it. Every e-mail to a person goes through ``_create``, which
    asks this, so escalation pages, roll calls, reminders and injects of a drill
    never reach the real on-call people outside it.
    """
    if not incident.drill:
        return None
    if Exercise.objects.filter(incident=incident).exists():
        return set(
            ExerciseParticipant.objects.filter(exercise__incident=incident).values_list(
                "user_id", flat=True
            )
        )
    allowed = set(
        RoleAssignment.objects.filter(incident=incident, relieved_at__isnull=True).values_list(
            "user_id", flat=True
        )
    )
    if incident.opened_by_id is not None:
        allowed.add(incident.opened_by_id)
    return allowed


def drill_reachable(incident: Incident, people: list) -> list:
    """``people`` less those a drill may not reach (all of them for a real incident)."""
    allowed = drill_people_ids(incident)
    if allowed is None:
        return list(people)
    return [p for p in people if p.pk in allowed]


def _create(**fields) -> Notification | None:
    """``_build``'s row (its arguments), written now; None if a drill may not reach
    the person or they were told this already."""
    n = _build(**fields)
    if n is None:
        return None
    try:
        with transaction.atomic():
            n.save(force_insert=True)
            return n
    except IntegrityError:
        return None  # this person was already told this, for this reason


def _build(
    *,
    incident: Incident,
    timer: Timer | None,
    person,
    reason: str,
    dedupe_key: str,
    template: str,
    context: dict,
    role_assignment: RoleAssignment | None = None,
    locale: tuple[str, str] | None = None,
) -> Notification | None:
    """One outbox row, rendered and not yet written (None: a drill may not reach them).

    ``locale``: the person's (language, zone) when the caller looked it up already.
    """
    if not drill_reachable(incident, [person]):
        return None  # a drill never e-mails anyone outside it (drill_people_ids)
    message_id = Notification.new_message_id()
    language, zone = locale or person_locale(person)
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
    return Notification(
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


def notifications_write(rows: list[Notification]) -> list[int]:
    """Write rendered outbox rows in one statement; the ids of those written.

    A row whose dedupe key is taken already (this person was told this, for this
    reason) is left out, as ``_create`` leaves it out one row at a time. Called
    inside the transaction that decided them, with their incidents locked, so no
    other writer can take a key between the look-up and the insert (one that did
    would fail the whole transaction, which is then retried: nothing is half-written).
    """
    taken = set(
        Notification.objects.filter(dedupe_key__in=[n.dedupe_key for n in rows]).values_list(
            "dedupe_key", flat=True
        )
    )
    fresh: list[Notification] = []
    for n in rows:
        if n.dedupe_key not in taken:
            taken.add(n.dedupe_key)
            fresh.append(n)
    return [n.pk for n in Notification.objects.bulk_create(fresh)]


def paged_before(incidents: list[Incident]) -> dict[int, list[tuple[int, str]]]:
    """Everyone each incident has paged this time it was open, as (person id, name),
    in one query whatever the number of incidents (a batch of fires asks for many)."""
    opened = {i.pk: i.opened_at for i in incidents}
    rows = Notification.objects.filter(incident__in=list(opened), reason="escalation").values_list(
        "incident_id",
        "created_at",
        "recipient_id",
        "recipient__first_name",
        "recipient__last_name",
        "recipient__username",
    )
    earlier: dict[int, list[tuple[int, str]]] = {pk: [] for pk in opened}
    for incident_id, created_at, person_id, first, last, username in rows:
        if created_at >= opened[incident_id]:
            earlier[incident_id].append((person_id, f"{first} {last}".strip() or username))
    return earlier


def escalation_notifications(
    *,
    incident: Incident,
    timer: Timer,
    level: int,
    cycle: int,
    people: list,
    now: datetime,
    next_level_at: datetime | None,
    earlier: list[tuple[int, str]] | None = None,
    locales: dict[int, tuple[str, str]] | None = None,
) -> list[Notification]:
    """One page per person, rendered now, inside the firing transaction; the rows are
    returned unwritten (``notifications_write`` writes them, with the batch's others).

    The body is written once and every resend (at least once, same Message-ID)
    carries it unchanged, so it states what stands at this instant: the incident
    row is locked by the fire and read in this transaction, so a first statement
    already made is reported as made (and when), one not made yet as due (and when);
    ``next_level_at`` is the time of the next level's timer the fire writes.
    ``earlier``: ``paged_before`` of this incident, when the caller read it already;
    ``locales``: a person id -> (language, zone) memo shared by the batch.
    """
    if earlier is None:
        earlier = paged_before([incident])[incident.pk]
    paging = {p.pk for p in people}
    already = sorted({name for person_id, name in earlier if person_id not in paging})
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
    locales = {} if locales is None else locales
    rows = []
    for person in people:
        if person.pk not in locales:
            locales[person.pk] = person_locale(person)
        n = _build(
            incident=incident,
            timer=timer,
            person=person,
            reason="escalation",
            dedupe_key=f"esc:{incident.pk}:{timer.round}:{cycle}:{level}:{person.pk}",
            template="escalation",
            context=context,
            locale=locales[person.pk],
        )
        if n is not None:
            rows.append(n)
    return rows


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
    return _each(
        _role_people(incident, role_slugs, now),
        incident=incident, timer=timer, reason=timer.kind, template="statement_deadline",
        context=context,
    )  # fmt: skip


def cadence_notifications(
    *, incident: Incident, timer: Timer, every: int, now: datetime
) -> list[int]:
    context = {"audience": timer.audience, "every": every, "now": now}
    return _each(
        _role_people(incident, ("communications-lead",), now),
        incident=incident, timer=timer, reason="update_cadence", template="update_due",
        context=context,
    )  # fmt: skip


def reply_due_notifications(
    *,
    incident: Incident,
    timer: Timer,
    role_slugs: tuple[str, ...],
    extra_people: tuple = (),
    context: dict,
) -> list[int]:
    """A public comment's reply is due soon, or overdue (the listening inbox's timers): the
    incident's holders of ``role_slugs`` (or their on-call holders) and ``extra_people``
    (whoever the comment is assigned to), each once."""
    people = _role_people(incident, role_slugs, timer.fired_at or timezone.now())
    people += [p for p in extra_people if p.is_active and p.email and p not in people]
    return _each(
        people,
        incident=incident, timer=timer, reason=timer.kind, template="reply_due",
        context={**context, "missed": timer.kind == Timer.Kind.REPLY_DEADLINE},
    )  # fmt: skip


def _each(
    people, *, incident: Incident, timer: Timer, reason: str, template: str, context: dict
) -> list[int]:
    """One e-mail of ``template`` per person for this timer (deduplicated per timer and
    person); the ids of those written."""
    created = []
    for person in people:
        n = _create(
            incident=incident,
            timer=timer,
            person=person,
            reason=reason,
            dedupe_key=f"{reason}:{timer.pk}:{person.pk}",
            template=template,
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


INJECT = "inject"


def inject_notifications(
    *, incident: Incident, timer: Timer, inject: Inject, people: list, now: datetime
) -> list[int]:
    """An exercise inject, to each participant it reaches: one per (inject, person)."""
    created = []
    for person in people:
        if not person.is_active or not person.email:
            continue
        n = _create(
            incident=incident,
            timer=timer,
            person=person,
            reason=INJECT,
            dedupe_key=f"{INJECT}:{inject.pk}:{person.pk}",
            template=INJECT,
            context={"inject": inject, "exercise": inject.exercise, "now": now},
        )
        if n is not None:
            created.append(n.pk)
    return created


# ------------------------------------------------------------------ delivery


def deliver_now(ids: list[int]) -> None:
    """Deliver what a fire just wrote, in this process, over one SMTP connection per
    ``dispatch.CHUNK`` rows (``chunk_deliver``: each row still claimed, re-checked and
    marked sent on its own)."""
    for chunk in dispatch.chunks(list(ids)):
        chunk_deliver(ids=chunk)


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
    if is_subscriber_message(n) and n.contact is None:
        return _("The subscriber unsubscribed before this was sent.")
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
    if n.reason == INJECT and incident is not None and not incident.is_active:
        return _("The exercise ended before this was sent.")
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
    until = now + lease()
    claimed = Notification.objects.filter(
        pk=notification_id, status=Notification.Status.QUEUED, next_attempt_at__lte=now
    ).update(status=Notification.Status.SENDING, lease_until=until, attempts=F("attempts") + 1)
    if claimed != 1:
        return f"notification {notification_id}: not queued or not due"
    n = Notification.objects.select_related(*_RELATED).get(pk=notification_id)
    why = _unwanted(n)
    if why:
        _held(n.pk, until).update(
            status=Notification.Status.CANCELLED,
            cancel_reason=why[:200],
            lease_until=None,
            attempts=F("attempts") - 1,  # claimed, never attempted
        )
        return f"notification {n.pk}: cancelled ({why})"
    message = _email(n)
    # The connection is opened here and closed only after the row is marked sent:
    # closing it (QUIT) waits for the server, and must not sit between its
    # acceptance and our commit.
    connection = get_connection()
    try:
        connection.open()
        until, held = _fenced([n.pk], until)
        if not held:
            _close_quietly(connection)
            return f"notification {n.pk}: not sent, its lease ran out before the hand-off"
        message.connection = connection
        message.send()
    except Exception as exc:  # noqa: BLE001 - every failure is recorded and classified
        _abort(connection)
        return _failed(n, exc, now=timezone.now(), until=until)
    # The server accepted it: record that first, in its own transaction, nothing else.
    done = timezone.now()
    _held(n.pk, until).update(
        status=Notification.Status.SENT, sent_at=done, lease_until=None, last_error=""
    )
    _close_quietly(connection)
    DeliveryAttempt.objects.create(notification=n, at=done, ok=True)
    log.info("e-mail sent to %s: %s", n.to_email, n.subject)
    return f"notification {n.pk}: sent"


def _held(pk: int | list[int], until: datetime):
    """The row(s) still claimed by the caller: sending, under the lease it set.

    A claim is the lease's end, to the microsecond. A worker cut off the network
    mid-send may come back after its lease ran out and the sweep handed the row to
    another worker; every later write of the first one (renew, sent, retry, cancel)
    then finds nothing, so it neither steals the row back nor sends it a second
    time nor puts it back in the queue.
    """
    rows = Notification.objects.filter(status=Notification.Status.SENDING, lease_until=until)
    return rows.filter(pk__in=pk) if isinstance(pk, list) else rows.filter(pk=pk)


def _email(n: Notification) -> Email:
    """The e-mail of one outbox row, with its stable Message-ID."""
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
            **_unsubscribe_headers(n),
        },
    )
    if n.body_html:
        message.attach_alternative(n.body_html, "text/html")
    return message


_RELATED = (
    "incident",
    "incident__acknowledged_by",
    "timer",
    "role_assignment",
    "comms_message__audience",
    "contact",
)


def chunk_deliver(*, ids: list[int], now: datetime | None = None) -> str:
    """Deliver many notifications over one SMTP connection (a mass send's chunk, or
    the pages a batch of fires wrote).

    The same steps as ``notification_deliver`` for each row: the rows still queued
    and due are claimed together (a lease, renewed while the chunk runs); each is
    re-checked, handed to the server, and marked sent in its own short transaction
    as soon as the server accepts it. A refused recipient or a 5xx reply fails
    that row permanently (recorded, not retried) and the connection goes on; a
    dropped connection or a 4xx puts that row back in the queue with back-off and
    the next row opens a new connection.
    """
    now = now or timezone.now()
    with transaction.atomic():
        mine = list(
            Notification.objects.select_for_update(skip_locked=True)
            .filter(pk__in=ids, status=Notification.Status.QUEUED, next_attempt_at__lte=now)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # The lease's end, to the microsecond, marks this claim as ours: where rows are
        # not locked (SQLite), a second claimant's update finds them no longer queued.
        until = now + lease()
        Notification.objects.filter(pk__in=mine, status=Notification.Status.QUEUED).update(
            status=Notification.Status.SENDING,
            lease_until=until,
            attempts=F("attempts") + 1,
        )
    rows = list(
        Notification.objects.select_related(*_RELATED)
        .filter(pk__in=mine, status=Notification.Status.SENDING, lease_until=until)
        .order_by("pk")
    )
    if not rows:
        return f"chunk of {len(ids)}: nothing queued and due"
    renewed = timezone.now()
    connection = None
    sent: list[DeliveryAttempt] = []
    outcome = Counter(sent=0, failed=0, retry=0, cancelled=0)
    held = {n.pk for n in rows}
    given_up: list[Notification] = []
    try:
        for i, n in enumerate(rows):
            time_now = timezone.now()
            if time_now - renewed > lease() / 3:
                # A slow chunk keeps its claim on the rows it has not sent yet, and
                # learns which it lost (its lease ran out and the sweep took them).
                until, held = _renewed([r.pk for r in rows[i:]], until)
                renewed = time_now
            if n.pk not in held:
                outcome["left to the sweep"] += 1
                continue
            why = _unwanted(n)
            if why:
                _held(n.pk, until).update(
                    status=Notification.Status.CANCELLED,
                    cancel_reason=why[:200],
                    lease_until=None,
                    attempts=F("attempts") - 1,
                )
                outcome["cancelled"] += 1
                continue
            try:
                if connection is None:
                    connection = get_connection()
                    connection.open()
                if n.comms_message_id is not None:
                    # Only a message's mass send is paced; a page never waits behind it.
                    ratelimit.wait_turn()
                message = _email(n)
                if timezone.now() + exchange() > until:
                    until, held = _fenced([r.pk for r in rows[i:]], until)
                    renewed = timezone.now()
                if n.pk not in held:  # the sweep took it back, or will: this worker stalled
                    outcome["left to the sweep"] += 1
                    continue
                connection.send_messages([message])
            except Exception as exc:  # noqa: BLE001 - every failure is recorded and classified
                if not _is_permanent(exc) and connection is not None:
                    # Dropped, refused or 4xx: the next row starts on a new connection.
                    _abort(connection)
                    connection = None
                result = _failed(
                    n,
                    exc,
                    now=timezone.now(),
                    until=until,
                    given_up=given_up if n.comms_message_id else None,
                )
                outcome["failed" if "permanently" in result else "retry"] += 1
                continue
            # The server accepted it: record that first, in its own transaction.
            done = timezone.now()
            _held(n.pk, until).update(
                status=Notification.Status.SENT, sent_at=done, lease_until=None, last_error=""
            )
            sent.append(DeliveryAttempt(notification=n, at=done, ok=True))
            outcome["sent"] += 1
    finally:
        if connection is not None:
            _close_quietly(connection)
        DeliveryAttempt.objects.bulk_create(sent)
        _failures_record(given_up, now=timezone.now())
        message_ids = {n.comms_message_id for n in rows if n.comms_message_id}
        if message_ids:
            # The sweep tells a stalled mass send from a long queue by this.
            SendRun.objects.filter(message_id__in=message_ids).update(progress_at=timezone.now())
    return f"chunk of {len(ids)}: " + ", ".join(f"{k} {v}" for k, v in outcome.items())


# How many of a chunk's undeliverable addresses its timeline entry names.
FAILURES_NAMED = 3


def _failures_record(rows: list[Notification], *, now: datetime) -> None:
    """One timeline entry per message for the e-mails of a chunk that failed for good:
    how many, the first few addresses and errors; every one is on its outbox row and
    in the message's delivery figures."""
    by_message: dict[int, list[Notification]] = defaultdict(list)
    for n in rows:
        if n.incident_id:
            by_message[n.comms_message_id].append(n)
    for message_id, failed in by_message.items():
        named = "; ".join(f"{n.to_email}: {n.last_error}" for n in failed[:FAILURES_NAMED])
        if len(failed) > FAILURES_NAMED:
            named += " …"
        TimelineEntry.objects.create(
            incident_id=failed[0].incident_id,
            kind=TimelineEntry.Kind.DELIVERY,
            at=now,
            text=ngettext(
                "%(count)s e-mail of message #%(id)s could not be delivered: %(named)s",
                "%(count)s e-mails of message #%(id)s could not be delivered: %(named)s",
                len(failed),
            )
            % {"count": len(failed), "id": message_id, "named": named},
            data={
                "message_id": message_id,
                "permanent": True,
                "failed": len(failed),
                "notification_ids": [n.pk for n in failed],
            },
        )


def _unsubscribe_headers(n: Notification) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe on every e-mail to a status-page subscriber: mail
    programs POST ``List-Unsubscribe=One-Click`` to the link, which unsubscribes."""
    if not is_subscriber_message(n) or n.contact is None:
        return {}
    return {
        "List-Unsubscribe": f"<{unsubscribe_url(n.contact)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def _abort(connection) -> None:
    """Drop an SMTP connection whose exchange failed, throwing away what is still unsent.

    A send that timed out because the network went (a worker host cut off) may leave
    the e-mail's data in the kernel's send buffer. Closed normally, the kernel would
    still deliver it, with the final dot, whenever the network came back: after the
    lease ran out and another worker sent the e-mail, so a second copy. Closed with
    SO_LINGER 0 it is a reset and the buffer is discarded. (An e-mail the server had
    already received before the network went, its reply lost, still comes twice with
    the same Message-ID: RFC 1047.)
    """
    smtp = getattr(connection, "connection", None)
    sock = getattr(smtp, "sock", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        except OSError:
            pass  # already closed
        smtp.sock = smtp.file = None  # so the backend's close() sends nothing more
    _close_quietly(connection)


def _close_quietly(connection) -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - the message is already sent or already failed
        log.warning("closing the SMTP connection failed", exc_info=True)


def _failed(
    n: Notification,
    exc: Exception,
    *,
    now: datetime,
    until: datetime,
    given_up: list[Notification] | None = None,
) -> str:
    """Record a failed attempt; fail the row (permanent) or queue its retry, if this
    caller still holds its claim (``until``: the lease it set).

    A row failed for good is told on its incident's timeline, one entry per e-mail;
    with ``given_up`` (a chunk of a message's send) it is added there instead, and
    the chunk writes one entry for all of them (``_failures_record``): a statement to
    100,000 contacts with a thousand dead addresses is not a thousand entries.
    """
    error = f"{type(exc).__name__}: {exc}"[:1000]
    permanent = _is_permanent(exc) or (now - n.created_at > GIVE_UP_AFTER)
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            notification=n, at=now, ok=False, error=error, permanent=permanent
        )
        if permanent:
            failed = _held(n.pk, until).update(
                status=Notification.Status.FAILED, lease_until=None, last_error=error
            )
            if failed and given_up is not None:
                n.last_error = error
                given_up.append(n)
            elif failed and n.incident_id:
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
        queued = _held(n.pk, until).update(
            status=Notification.Status.QUEUED,
            lease_until=None,
            last_error=error,
            next_attempt_at=retry_at,
            enqueued_at=now,
        )
    if not queued:
        return f"notification {n.pk}: its lease ran out; another worker has it ({error})"
    dispatch.send(dispatch.DELIVER_NOTIFICATION, n.pk, eta=retry_at)
    return f"notification {n.pk}: will retry at {retry_at:%H:%M:%S} ({error})"
