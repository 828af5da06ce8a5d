"""Writes for the incident life cycle. Admin, API, views, tasks and commands call these.

Every service runs in one transaction, locks the incident row first (so two
people, or a person and the escalation engine, are ordered), stamps its
milestone and writes a timeline entry.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import pgettext_lazy

from incidents import acklinks, dispatch, notify, permissions, postmortem, rollcall, timers
from incidents.models import (
    IdempotencyKey,
    Incident,
    Notification,
    ReferenceCounter,
    RoleAssignment,
    Task,
    TimelineEntry,
    Timer,
)
from incidents.selectors import incidents_visible_to
from incidents.timeline import actor_name, timeline_add
from playbooks.models import (
    DEFAULT_ROLL_CALL_MINUTES,
    CrisisRole,
    EscalationLevel,
    Playbook,
    Scenario,
)
from playbooks.oncall import oncall_holder, rotation_next

User = get_user_model()

# An incident opened without a playbook still pages someone: the on-call crisis
# manager at once, then again every ten minutes twice, until acknowledged.
ADHOC_ROLE_SLUG = "crisis-manager"
ADHOC_DELAYS_SECONDS = (0, 600, 600)


def next_reference(*, year: int) -> str:
    """INC-<year>-<nnnn>, gap-free per year; the counter row lock orders concurrent openers."""
    counter, _created = ReferenceCounter.objects.select_for_update().get_or_create(year=year)
    ReferenceCounter.objects.filter(year=year).update(last=F("last") + 1)
    counter.refresh_from_db()
    return f"INC-{year}-{counter.last:04d}"


def escalation_policy_freeze(playbook: Playbook | None) -> dict:
    """The policy the engine will run, with ids, frozen at opening."""
    if playbook is None:
        role = CrisisRole.objects.filter(slug=ADHOC_ROLE_SLUG).first()
        if role is None:
            return {"repeat": 0, "page_at_once_max_severity": None, "levels": []}
        return {
            "repeat": 0,
            # Level 1 pages at once already (delay 0).
            "page_at_once_max_severity": None,
            "levels": [
                {"delay_seconds": d, "target": "role", "role_id": role.pk}
                for d in ADHOC_DELAYS_SECONDS
            ],
        }
    levels = []
    for level in playbook.escalation_levels.order_by("position").prefetch_related("users"):
        entry: dict = {"delay_seconds": level.delay_seconds, "target": level.target}
        if level.target == EscalationLevel.Target.ROLE_ON_CALL:
            entry["role_id"] = level.role_id
        elif level.target == EscalationLevel.Target.ROTATION:
            entry["rotation_id"] = level.rotation_id
        else:
            entry["user_ids"] = sorted(u.pk for u in level.users.all())
        levels.append(entry)
    return {
        "repeat": playbook.escalation_repeat_count,
        "page_at_once_max_severity": playbook.page_at_once_max_severity,
        "levels": levels,
    }


@transaction.atomic
def incident_open(
    *,
    title: str,
    severity: int = 2,
    playbook: Playbook | None = None,
    category: str | None = None,
    summary: str = "",
    confidential: bool = False,
    drill: bool = False,
    detected_at: datetime | None = None,
    actor: AbstractBaseUser | None = None,
    idempotency_key: str = "",
    now: datetime | None = None,
    assign_on_call: bool = True,
) -> Incident:
    """Open an incident and start its playbook, once per idempotency key.

    ``assign_on_call=False`` leaves the roles unheld (an exercise assigns its own
    participants instead of the real on-call people).

    1. With an ``idempotency_key`` (a client's retry token, kept per person): if this
       person used the key before, return that incident, marked ``replayed``, read
       through ``incidents_visible_to`` (someone relieved since, who may no longer
       see it, is refused without a word about it); nothing is opened twice.
    2. Otherwise open it (``_incident_open``) and record the key in one savepoint;
       when the same key races us, the other request's incident is the answer.
    """
    key = (idempotency_key or "").strip()
    if not key:
        return _incident_open(
            title=title, severity=severity, playbook=playbook, category=category,
            summary=summary, confidential=confidential, drill=drill,
            detected_at=detected_at, actor=actor, now=now, assign_on_call=assign_on_call,
        )  # fmt: skip
    if actor is None or len(key) > 200:
        raise ValidationError(
            {"idempotency_key": _("A key is at most 200 characters, and needs a person.")}
        )
    replay = _incident_replayed(actor=actor, key=key)
    if replay is not None:
        return replay
    try:
        with transaction.atomic():
            incident = _incident_open(
                title=title, severity=severity, playbook=playbook, category=category,
                summary=summary, confidential=confidential, drill=drill,
                detected_at=detected_at, actor=actor, now=now, assign_on_call=assign_on_call,
            )  # fmt: skip
            IdempotencyKey.objects.create(user=actor, key=key, incident=incident)
    except IntegrityError:
        replay = _incident_replayed(actor=actor, key=key)
        if replay is None:
            raise
        return replay
    return incident


def _incident_replayed(*, actor: AbstractBaseUser, key: str) -> Incident | None:
    used = IdempotencyKey.objects.filter(user=actor, key=key).first()
    if used is None:
        return None
    incident = incidents_visible_to(actor).filter(pk=used.incident_id).first()
    if incident is None:
        # Same answer whatever became of it: the key is spent, the incident unnamed.
        raise ValidationError(
            {"idempotency_key": _("This key was used before; send the request with a new key.")}
        )
    incident.replayed = True
    return incident


def _incident_open(
    *,
    title: str,
    severity: int,
    playbook: Playbook | None,
    category: str | None,
    summary: str,
    confidential: bool,
    drill: bool,
    detected_at: datetime | None,
    actor: AbstractBaseUser | None,
    now: datetime | None,
    assign_on_call: bool = True,
) -> Incident:
    """Open an incident and start its playbook.

    1. Refuse a draft playbook: only a published (frozen) version can run.
    2. Number it, freeze the escalation policy (the playbook version itself is frozen).
       Whoever opens a confidential incident is on it: they get its object permission.
    3. Assign each role the playbook names to its on-call holder now.
    4. Make the tasks from the steps, due at opening + offset, assigned to the role holder.
    5. Write the timers (escalation level 1, first-statement reminder and deadline,
       task due times) in this same transaction; they are enqueued after commit.
       Level 1 is due at once when the playbook pages this severity at once
       (``timers.first_level_timer``), else after its delay.
    """
    now = now or timezone.now()
    title = (title or "").strip()
    errors = {}
    if not title:
        errors["title"] = _("An incident needs a title.")
    if severity not in (1, 2, 3, 4):
        errors["severity"] = _("Severity must be 1 (critical) to 4 (minor).")
    if playbook is not None and playbook.status != Playbook.Status.PUBLISHED:
        errors["playbook"] = _("Only a published playbook version can be run.")
    if category is None:
        category = playbook.scenario if playbook else Scenario.OTHER
    if category not in Scenario.values:
        errors["category"] = _("Unknown category “%(c)s”.") % {"c": category}
    if detected_at is not None and detected_at > now:
        errors["detected_at"] = _("Detection cannot be in the future.")
    if errors:
        raise ValidationError(errors)

    incident = Incident.objects.create(
        reference=next_reference(year=now.year),
        title=title,
        summary=summary,
        severity=severity,
        category=category,
        confidential=confidential,
        drill=drill,
        playbook=playbook,
        escalation_policy=escalation_policy_freeze(playbook),
        first_statement_minutes=playbook.first_statement_minutes if playbook else 60,
        opened_by=actor,
        detected_at=detected_at or now,
        opened_at=now,
    )
    if confidential and actor is not None:
        permissions.grant_opener(incident=incident, user=actor)
    timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.OPENED,
        actor=actor,
        at=now,
        text=_("%(who)s opened %(ref)s (SEV%(sev)s)%(pb)s.")
        % {
            "who": actor_name(actor),
            "ref": incident.reference,
            "sev": severity,
            "pb": (
                _(" with playbook “%(t)s” v%(v)s") % {"t": playbook.title, "v": playbook.version}
            )
            if playbook
            else _(" without a playbook"),
        },
        data={"playbook_id": playbook.pk if playbook else None, "drill": drill},
    )

    holders = (
        _assign_roles(incident=incident, playbook=playbook, now=now, actor=actor)
        if assign_on_call
        else {}
    )
    new_timers: list[Timer] = []
    if playbook is not None:
        for step in playbook.steps.select_related("role").order_by("position"):
            task = Task.objects.create(
                incident=incident,
                step=step,
                position=step.position,
                phase=step.phase,
                title=step.title,
                instructions=step.instructions,
                role=step.role,
                assignee=holders.get(step.role_id),
                due_at=now + timedelta(minutes=step.due_offset_minutes),
            )
            if step.due_offset_minutes > 0:
                new_timers.append(
                    Timer(
                        incident=incident, kind=Timer.Kind.TASK_DUE, due_at=task.due_at, task=task
                    )
                )
    new_timers += _statement_timers(incident=incident, now=now)
    if playbook is not None:
        new_timers += [
            Timer(
                incident=incident,
                kind=Timer.Kind.UPDATE_CADENCE,
                audience=cadence.audience,
                due_at=now + timedelta(minutes=cadence.every_minutes),
            )
            for cadence in playbook.cadences.select_related("audience")
        ]
    first = timers.first_level_timer(incident=incident, start=now)
    if first is not None:
        new_timers.append(first)
    Timer.objects.bulk_create(new_timers)
    timers.enqueue_on_commit(Timer.objects.filter(incident=incident, state="pending"))
    return incident


def _assign_roles(
    *, incident: Incident, playbook: Playbook | None, now: datetime, actor
) -> dict[int, AbstractBaseUser]:
    if playbook is None:
        roles = list(CrisisRole.objects.filter(slug=ADHOC_ROLE_SLUG))
    else:
        role_ids = set(playbook.steps.exclude(role=None).values_list("role_id", flat=True))
        role_ids |= set(
            playbook.escalation_levels.exclude(role=None).values_list("role_id", flat=True)
        )
        roles = list(CrisisRole.objects.filter(pk__in=role_ids))
    holders: dict[int, AbstractBaseUser] = {}
    for role in roles:
        user = oncall_holder(role=role, at=now)
        if user is None:
            timeline_add(
                incident=incident,
                kind=TimelineEntry.Kind.ROLE,
                at=now,
                text=_("Nobody is on call for %(role)s: assign someone.") % {"role": role.name},
                data={"role_id": role.pk, "user_id": None},
            )
            continue
        holders[role.pk] = user
        role_assign(incident=incident, role=role, user=user, actor=actor, now=now)
    return holders


def _statement_timers(*, incident: Incident, now: datetime) -> list[Timer]:
    deadline = now + timedelta(minutes=incident.first_statement_minutes)
    # Remind the communications lead a quarter of the way before the deadline
    # (15 minutes for the usual hour), so the statement is drafted, not rushed.
    lead = timedelta(minutes=max(1, incident.first_statement_minutes // 4))
    return [
        Timer(incident=incident, kind=Timer.Kind.STATEMENT_REMINDER, due_at=deadline - lead),
        Timer(incident=incident, kind=Timer.Kind.FIRST_STATEMENT, due_at=deadline),
    ]


def _locked(incident: Incident) -> Incident:
    return Incident.objects.select_for_update().get(pk=incident.pk)


# The door an acknowledgement came through: ``via`` is kept as this identifier in
# the entry's data; the words are what the timeline text says.
ACKNOWLEDGED_VIA = {
    "web": pgettext_lazy("acknowledged via", "web"),
    "api": pgettext_lazy("acknowledged via", "API"),
    "admin": pgettext_lazy("acknowledged via", "admin"),
    "war room": pgettext_lazy("acknowledged via", "war room"),
    "e-mail link": pgettext_lazy("acknowledged via", "e-mail link"),
    "command": pgettext_lazy("acknowledged via", "command"),
    "demo": pgettext_lazy("acknowledged via", "demo"),
}


@transaction.atomic
def incident_acknowledge(
    *, incident: Incident, actor: AbstractBaseUser, via: str = "web", now: datetime | None = None
) -> bool:
    """Acknowledge: stop the escalation. Returns False if it was not waiting for one.

    The pending escalation timers are cancelled by a conditional update in this
    transaction. A fire that claimed its timer before this commit has already
    paged (and that is the right outcome); one that comes after finds the timer
    cancelled, or the incident acknowledged, and pages nobody. The incident's
    escalation e-mails still in the outbox (queued, or waiting for a retry) are
    cancelled in the same transaction, so none goes out after this commits
    (what remains possible is said in incidents/notify.py).

    ``acknowledged_at`` is stamped here and only here: containing or resolving
    stops the paging but is not an acknowledgement (the post-mortem report and
    the trends both read this field).
    """
    now = now or timezone.now()
    incident = _locked(incident)
    if incident.status != Incident.Status.OPEN:
        return False
    incident.status = Incident.Status.ACKNOWLEDGED
    incident.acknowledged_at = incident.acknowledged_at or now
    incident.acknowledged_by = incident.acknowledged_by or actor
    incident.save(update_fields=["status", "acknowledged_at", "acknowledged_by", "updated_at"])
    cancelled = timers.cancel_pending(incident=incident, kinds=[Timer.Kind.ESCALATION], now=now)
    pages = notify.escalations_cancel(
        incident=incident,
        reason=_("%(who)s acknowledged the incident first.") % {"who": actor_name(actor)},
    )
    timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.ACKNOWLEDGED,
        actor=actor,
        at=now,
        text=_("%(who)s acknowledged (%(via)s); escalation stopped.")
        % {"who": actor_name(actor), "via": ACKNOWLEDGED_VIA.get(via, via)},
        data={"via": via, "cancelled_timers": cancelled, "cancelled_notifications": pages},
    )
    return True


@transaction.atomic
def incident_acknowledge_by_link(*, token: str, now: datetime | None = None) -> acklinks.AckLink:
    """Acknowledge through the one-click link of an escalation e-mail, as its holder.

    1. Read the link (``acklinks.ack_link_read``): only a live one goes on, i.e. a
       genuine, unexpired, unused link whose holder may still see the incident.
    2. Lock the incident (the lock order of every path: incident, then notification)
       and check it still waits; if a colleague was first, answer what a spent link says.
    3. Burn the token by a conditional update; only the request that changed the row
       goes on, any other answers like a dead link.
    4. Acknowledge in the holder's name, in this same transaction.
    """
    now = now or timezone.now()
    link = acklinks.ack_link_read(token)
    if link.state != acklinks.LIVE:
        return link
    notification = link.notification
    incident = _locked(notification.incident)
    notification.incident = incident
    if incident.status != Incident.Status.OPEN:
        return acklinks.ack_link_spent(notification)
    burned = Notification.objects.filter(pk=notification.pk, ack_token_used_at__isnull=True).update(
        ack_token_used_at=now
    )
    if burned != 1:
        return acklinks.DEAD_LINK
    incident_acknowledge(
        incident=incident, actor=notification.recipient, via="e-mail link", now=now
    )
    notification.refresh_from_db()
    incident.refresh_from_db()
    notification.incident = incident
    return acklinks.AckLink(acklinks.DONE, notification)


@transaction.atomic
def incident_change_severity(
    *,
    incident: Incident,
    severity: int,
    actor: AbstractBaseUser | None,
    reason: str = "",
    now: datetime | None = None,
) -> Incident:
    """Change the severity. Raised to one the playbook pages at once while level 1 still
    waits for its delay, level 1 is paged now (``timers.first_level_bring_forward``)."""
    if severity not in (1, 2, 3, 4):
        raise ValidationError({"severity": _("Severity must be 1 (critical) to 4 (minor).")})
    now = now or timezone.now()
    incident = _locked(incident)
    old = incident.severity
    if old == severity:
        return incident
    incident.severity = severity
    incident.save(update_fields=["severity", "updated_at"])
    brought_forward = timers.first_level_bring_forward(incident=incident, now=now)
    timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.SEVERITY,
        actor=actor,
        at=now,
        # Translators: the arrow points from the old severity to the new one; turn it
        # (←) where the text reads right to left. %(reason)s is empty or " " and the reason.
        text=_("%(who)s changed severity SEV%(old)s → SEV%(new)s.%(reason)s")
        % {
            "who": actor_name(actor),
            "old": old,
            "new": severity,
            "reason": f" {reason}" if reason else "",
        }
        + (_(" Escalation level 1 is paged now, without its delay.") if brought_forward else ""),
        data={"from": old, "to": severity, "level_1_brought_forward": bool(brought_forward)},
    )
    return incident


@transaction.atomic
def incident_set_public_title(
    *, incident: Incident, public_title: str, actor: AbstractBaseUser | None
) -> Incident:
    """Set what the public status page calls the incident (empty: a neutral title from
    its category). The status page's cache follows (statuscache.on_incident_saved)."""
    public_title = (public_title or "").strip()
    limit = Incident._meta.get_field("public_title").max_length
    if len(public_title) > limit:
        raise ValidationError({"public_title": _("At most %(n)s characters.") % {"n": limit}})
    incident = _locked(incident)
    if incident.public_title == public_title:
        return incident
    incident.public_title = public_title
    incident.save(update_fields=["public_title", "updated_at"])
    return incident


@transaction.atomic
def incident_contain(*, incident: Incident, actor: AbstractBaseUser | None) -> Incident:
    incident = _locked(incident)
    if incident.status not in (Incident.Status.OPEN, Incident.Status.ACKNOWLEDGED):
        raise ValidationError(_("Only an open or acknowledged incident can be marked contained."))
    now = timezone.now()
    if incident.status == Incident.Status.OPEN:
        # Containing is taking charge: it stops the paging. It is not recorded as an
        # acknowledgement (nobody answered the page), so acknowledged_at stays empty.
        timers.cancel_pending(incident=incident, kinds=[Timer.Kind.ESCALATION], now=now)
        notify.escalations_cancel(
            incident=incident,
            reason=_("%(who)s marked the incident contained.") % {"who": actor_name(actor)},
        )
    incident.status = Incident.Status.CONTAINED
    incident.contained_at = incident.contained_at or now
    incident.save()
    timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.CONTAINED,
        actor=actor,
        at=now,
        text=_("%(who)s marked the incident contained.") % {"who": actor_name(actor)},
    )
    return incident


@transaction.atomic
def incident_resolve(
    *, incident: Incident, actor: AbstractBaseUser | None, summary: str = ""
) -> Incident:
    incident = _locked(incident)
    if not incident.is_active:
        raise ValidationError(_("The incident is already resolved or closed."))
    now = timezone.now()
    incident.status = Incident.Status.RESOLVED
    incident.resolved_at = now
    # Not stamped acknowledged: an incident nobody acknowledged stays so in the
    # report and the trends.
    incident.contained_at = incident.contained_at or now
    incident.save()
    cancelled = timers.cancel_pending(incident=incident, kinds=None, now=now)
    notify.escalations_cancel(
        incident=incident,
        reason=_("%(who)s resolved the incident.") % {"who": actor_name(actor)},
    )
    timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.RESOLVED,
        actor=actor,
        at=now,
        text=_("%(who)s resolved the incident.%(s)s")
        % {"who": actor_name(actor), "s": f" {summary}" if summary else ""},
        data={"cancelled_timers": cancelled},
    )
    postmortem.postmortem_start(incident=incident, actor=actor)
    return incident


@transaction.atomic
def incident_close(*, incident: Incident, actor: AbstractBaseUser | None) -> Incident:
    incident = _locked(incident)
    if incident.status != Incident.Status.RESOLVED:
        raise ValidationError(_("Only a resolved incident can be closed."))
    incident.status = Incident.Status.CLOSED
    incident.closed_at = timezone.now()
    incident.save(update_fields=["status", "closed_at", "updated_at"])
    timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.CLOSED,
        actor=actor,
        text=_("%(who)s closed the incident.") % {"who": actor_name(actor)},
    )
    return incident


@transaction.atomic
def incident_reopen(
    *, incident: Incident, actor: AbstractBaseUser | None, reason: str = ""
) -> Incident:
    """Reopen a resolved or closed incident: a fresh escalation round starts at level 1,
    paged at once if the severity pages at once (``timers.first_level_timer``)."""
    incident = _locked(incident)
    if incident.is_active:
        raise ValidationError(_("The incident is still active."))
    now = timezone.now()
    incident.status = Incident.Status.OPEN
    incident.escalation_round += 1
    incident.resolved_at = None
    incident.closed_at = None
    if incident.acknowledged_at is None:
        # Nobody acknowledged the earlier round: the target is measured from this round's
        # first page. Once acknowledged, the pair (first page, acknowledgement) is kept.
        incident.first_paged_at = None
    incident.save()
    timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.REOPENED,
        actor=actor,
        at=now,
        text=_("%(who)s reopened the incident (round %(round)s).%(reason)s")
        % {
            "who": actor_name(actor),
            "round": incident.escalation_round,
            "reason": f" {reason}" if reason else "",
        },
        data={"round": incident.escalation_round},
    )
    timer = timers.first_level_timer(incident=incident, start=now)
    if timer is not None:
        timer.save()
        timers.enqueue_on_commit([timer])
    return incident


@transaction.atomic
def role_assign(
    *,
    incident: Incident,
    role: CrisisRole,
    user: AbstractBaseUser,
    actor: AbstractBaseUser | None = None,
    now: datetime | None = None,
) -> RoleAssignment:
    """Hand a role to someone; the previous holder is relieved, never erased.

    On an active incident the new holder is called in at once: an activation
    e-mail with the two roll-call links, and a roll-call timer (``_roll_call_start``).
    """
    now = now or timezone.now()
    current = (
        RoleAssignment.objects.select_for_update()
        .filter(incident=incident, role=role, relieved_at__isnull=True)
        .first()
    )
    if current is not None:
        if current.user_id == user.pk:
            return current
        current.relieved_at = now
        current.save(update_fields=["relieved_at"])
        _roll_call_stop(current, now=now)
    assignment = RoleAssignment.objects.create(
        incident=incident, role=role, user=user, assumed_at=now, assigned_by=actor
    )
    permissions.grant_assignment(incident=incident, user=user)
    if current is not None:
        permissions.withdraw_assignment(incident=incident, user=current.user)
    Task.objects.filter(incident=incident, role=role, status=Task.Status.OPEN).update(assignee=user)
    timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.ROLE,
        actor=actor,
        at=now,
        text=_("%(user)s is %(role)s%(prev)s.")
        % {
            "user": actor_name(user),
            "role": role.name,
            "prev": (_(" (taking over from %(p)s)") % {"p": actor_name(current.user)})
            if current
            else "",
        },
        data={"role_id": role.pk, "user_id": user.pk},
    )
    if incident.is_active:
        _roll_call_start(incident=incident, assignment=assignment, now=now)
    return assignment


@transaction.atomic
def role_relieve(
    *,
    incident: Incident,
    role: CrisisRole,
    actor: AbstractBaseUser | None = None,
    assignment: RoleAssignment | None = None,
    now: datetime | None = None,
) -> RoleAssignment | None:
    """Relieve the role's current holder; None if nobody holds it.

    With ``assignment``, only that holder: None if the role has changed hands
    since (the war room's button names the holder it showed).
    """
    now = now or timezone.now()
    current = (
        RoleAssignment.objects.select_for_update()
        .filter(incident=incident, role=role, relieved_at__isnull=True)
        .first()
    )
    if current is None or (assignment is not None and current.pk != assignment.pk):
        return None
    current.relieved_at = now
    current.save(update_fields=["relieved_at"])
    _roll_call_stop(current, now=now)
    permissions.withdraw_assignment(incident=incident, user=current.user)
    timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.ROLE,
        actor=actor,
        at=now,
        text=_("%(user)s was relieved as %(role)s.")
        % {"user": actor_name(current.user), "role": role.name},
        data={"role_id": role.pk, "user_id": None, "relieved_user_id": current.user_id},
    )
    return current


# ------------------------------------------------------------------ roll call


def roll_call_window(incident: Incident) -> timedelta:
    """How long a role holder has to answer: the playbook version's window, else the default."""
    minutes = incident.playbook.roll_call_minutes if incident.playbook_id else None
    return timedelta(minutes=minutes or DEFAULT_ROLL_CALL_MINUTES)


def _roll_call_start(*, incident: Incident, assignment: RoleAssignment, now: datetime) -> None:
    """Call a new holder in: the activation e-mail, the first window's timer, a timeline entry."""
    answer_by = now + roll_call_window(incident)
    notification_id = notify.activation_notification(
        incident=incident, assignment=assignment, answer_by=answer_by, now=now
    )
    timer = Timer.objects.create(
        incident=incident,
        kind=Timer.Kind.ROLL_CALL,
        assignment=assignment,
        level=1,
        due_at=answer_by,
    )
    timers.enqueue_on_commit([timer])
    if notification_id is not None:
        dispatch.deliver_on_commit([notification_id])
        text = _("Called %(user)s in as %(role)s by e-mail; answer due by %(t)s UTC.")
    else:
        text = _("%(user)s has no e-mail address to be called in as %(role)s: tell them yourself.")
    timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.ROLL_CALL,
        at=now,
        text=text
        % {
            "user": actor_name(assignment.user),
            "role": assignment.role.name,
            "t": f"{answer_by:%H:%M}",
        },
        data={
            "assignment_id": assignment.pk,
            "role_id": assignment.role_id,
            "user_id": assignment.user_id,
            "step": "called",
            "notification_id": notification_id,
            "answer_by": answer_by.isoformat(),
        },
    )


def _roll_call_stop(assignment: RoleAssignment, *, now: datetime) -> int:
    """Cancel the assignment's roll-call timers still pending (answered or relieved)."""
    return Timer.objects.filter(
        assignment=assignment, kind=Timer.Kind.ROLL_CALL, state=Timer.State.PENDING
    ).update(state=Timer.State.CANCELLED, outcome=f"roll call over {now:%H:%M:%S}")


@transaction.atomic
def role_answer_by_link(*, token: str, now: datetime | None = None) -> rollcall.RollCallLink:
    """Answer the roll call through a link of an activation (or chase) e-mail, as its holder.

    1. Read the link (``rollcall.rollcall_link_read``): only a live one goes on, i.e. a
       genuine, unexpired link for an unanswered, current assignment whose holder may
       still see the active incident.
    2. Lock the incident (the lock order of every path), then answer through
       ``role_answer``, whose conditional update burns the roll call: only the request
       that changed the row goes on, any other answers like a dead link.
    """
    now = now or timezone.now()
    link = rollcall.rollcall_link_read(token)
    if link.state != rollcall.LIVE:
        return link
    notification = link.notification
    incident = _locked(notification.incident)
    answered, passed_to = role_answer(
        incident=incident, assignment=link.assignment, answer=link.answer, now=now
    )
    if not answered:
        return rollcall.DEAD_LINK
    notification.incident = incident
    notification.role_assignment.refresh_from_db()
    return rollcall.RollCallLink(rollcall.DONE, notification, link.answer, passed_to)


@transaction.atomic
def role_answer(
    *,
    incident: Incident,
    assignment: RoleAssignment,
    answer: str,
    now: datetime | None = None,
) -> tuple[bool, AbstractBaseUser | None]:
    """Record a holder's roll-call answer, once. Returns (answered, who the role passed to).

    Joining: the roll call is over for this holder (its timers are cancelled).
    Can't: the holder is relieved at once and the role is offered to the next
    person of the role's rotation (``_role_pass_on``), who gets their own
    activation e-mail; with nobody left to ask, the role is left unheld and the
    timeline says so. The answer is claimed by a conditional update on the
    still-current, unanswered assignment: a second answer (a retry, the other
    link) changes nothing and returns (False, None).
    """
    now = now or timezone.now()
    if answer not in rollcall.ANSWERS:
        raise ValidationError({"answer": _("Answer joining or can't.")})
    claimed = RoleAssignment.objects.filter(
        pk=assignment.pk, answer=RoleAssignment.Answer.PENDING, relieved_at__isnull=True
    ).update(answer=answer, answered_at=now)
    if claimed != 1:
        return False, None
    assignment.refresh_from_db()
    _roll_call_stop(assignment, now=now)
    who, role = actor_name(assignment.user), assignment.role.name
    joining = answer == RoleAssignment.Answer.JOINING
    timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.ROLL_CALL,
        actor=assignment.user,
        at=now,
        text=(
            _("%(user)s is joining as %(role)s.") if joining else _("%(user)s can't take %(role)s.")
        )
        % {"user": who, "role": role},
        data={
            "assignment_id": assignment.pk,
            "role_id": assignment.role_id,
            "user_id": assignment.user_id,
            "step": "answered",
            "answer": answer,
        },
    )
    if joining:
        return True, None
    return True, _role_pass_on(incident=incident, assignment=assignment, now=now, answered=True)


def role_roll_call_lapsed(
    *, incident: Incident, timer: Timer, now: datetime
) -> tuple[str, list[int]]:
    """A roll-call window ended (the ``roll_call`` timer's handler, incidents/escalation.py).

    1. Nothing to do if the holder answered, was relieved, or the incident is over.
    2. End of the first window (level 1), not answered: chase once. Claim the chase
       by a conditional update (``chased_at``), e-mail "still needed" with the same
       two links, write a timeline entry and the second window's timer (level 2;
       one per assignment and level, so a retried fire writes none twice).
    3. End of the second window (level 2), still not answered: relieve the holder
       and offer the role to the next person of the rotation (``_role_pass_on``),
       who gets their own activation e-mail. With nobody left to ask, the holder
       keeps the role, unanswered, and the timeline says so.
    """
    assignment = timer.assignment
    if (
        assignment is None
        or assignment.relieved_at is not None
        or assignment.answer != RoleAssignment.Answer.PENDING
        or not incident.is_active
    ):
        return "roll call answered or over", []
    who, role = actor_name(assignment.user), assignment.role.name
    window = roll_call_window(incident)
    if timer.level <= 1:
        chased = RoleAssignment.objects.filter(
            pk=assignment.pk, chased_at__isnull=True, answer=RoleAssignment.Answer.PENDING
        ).update(chased_at=now)
        if chased != 1:
            return "already chased", []
        answer_by = timer.due_at + window
        notification_id = notify.activation_notification(
            incident=incident,
            assignment=assignment,
            answer_by=answer_by,
            now=now,
            chase=True,
            timer=timer,
        )
        Timer.objects.get_or_create(
            incident=incident,
            kind=Timer.Kind.ROLL_CALL,
            assignment=assignment,
            level=2,
            defaults={"due_at": answer_by},
        )
        timeline_add(
            incident=incident,
            kind=TimelineEntry.Kind.ROLL_CALL,
            at=now,
            text=_("No answer from %(user)s as %(role)s: asked again, answer due by %(t)s UTC.")
            % {"user": who, "role": role, "t": f"{answer_by:%H:%M}"},
            data={
                "assignment_id": assignment.pk,
                "role_id": assignment.role_id,
                "user_id": assignment.user_id,
                "step": "chased",
                "timer_id": timer.pk,
                "notification_id": notification_id,
            },
        )
        return f"chased {who}", [notification_id] if notification_id else []
    passed_to = _role_pass_on(incident=incident, assignment=assignment, now=now, answered=False)
    if passed_to is None:
        return "no answer; nobody else to ask", []
    return f"no answer; offered to {actor_name(passed_to)}", []


def _role_pass_on(
    *, incident: Incident, assignment: RoleAssignment, now: datetime, answered: bool
) -> AbstractBaseUser | None:
    """Offer the role to the next person of its rotation (``playbooks.oncall.rotation_next``),
    skipping everyone who held it on this incident before; returns them, or None.

    The next person is assigned through ``role_assign`` (which relieves the holder and
    e-mails the new one). With nobody to ask: a holder who said can't is relieved; one
    who did not answer keeps the role, shown unanswered on the role board.
    """
    asked = set(
        RoleAssignment.objects.filter(incident=incident, role=assignment.role).values_list(
            "user_id", flat=True
        )
    )
    nxt = rotation_next(role=assignment.role, after=assignment.user, exclude=asked)
    if nxt is not None and not notify.drill_reachable(incident, [nxt]):
        nxt = None  # a drill never calls in anyone outside it (notify.drill_people_ids)
    who, role = actor_name(assignment.user), assignment.role.name
    data = {
        "assignment_id": assignment.pk,
        "role_id": assignment.role_id,
        "user_id": assignment.user_id,
        "step": "offered",
    }
    names = {"user": who, "role": role}
    if nxt is None:
        if answered:
            role_relieve(incident=incident, role=assignment.role, assignment=assignment, now=now)
            text = _("%(user)s can't take %(role)s and nobody else is left to ask: assign someone.")
        else:
            text = _(
                "%(user)s did not answer for %(role)s and nobody else is left to ask: "
                "assign someone."
            )
        timeline_add(
            incident=incident,
            kind=TimelineEntry.Kind.ROLL_CALL,
            at=now,
            text=text % names,
            data={**data, "offered_to": None},
        )
        return None
    RoleAssignment.objects.filter(pk=assignment.pk).update(offered_to=nxt)
    if answered:
        text = _("%(user)s can't take %(role)s: it is offered to %(next)s.")
    else:
        text = _("%(user)s did not answer for %(role)s: it is offered to %(next)s.")
    timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.ROLL_CALL,
        at=now,
        text=text % {**names, "next": actor_name(nxt)},
        data={**data, "offered_to": nxt.pk},
    )
    role_assign(incident=incident, role=assignment.role, user=nxt, actor=None, now=now)
    return nxt


@transaction.atomic
def task_complete(
    *, task: Task, actor: AbstractBaseUser | None, skipped: bool = False, note: str = ""
) -> Task:
    claimed = Task.objects.filter(pk=task.pk, status=Task.Status.OPEN).update(
        status=Task.Status.SKIPPED if skipped else Task.Status.DONE,
        done_at=timezone.now(),
        done_by=actor,
    )
    task.refresh_from_db()
    if not claimed:
        return task
    Timer.objects.filter(task=task, state=Timer.State.PENDING).update(
        state=Timer.State.CANCELLED, outcome="task finished"
    )
    verb = _("skipped") if skipped else _("completed")
    timeline_add(
        incident=task.incident,
        kind=TimelineEntry.Kind.TASK,
        actor=actor,
        text=_("%(who)s %(verb)s “%(task)s”%(late)s.%(note)s")
        % {
            "who": actor_name(actor),
            "verb": verb,
            "task": task.title,
            "late": _(" (late)") if task.is_late else "",
            "note": f" {note}" if note else "",
        },
        data={"task_id": task.pk, "status": task.status, "late": task.is_late},
    )
    return task


def note_add(
    *,
    incident: Incident,
    actor: AbstractBaseUser | None,
    text: str,
    corrects: TimelineEntry | None = None,
) -> TimelineEntry:
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": _("A note needs some text.")})
    if corrects is not None and corrects.incident_id != incident.pk:
        raise ValidationError(
            {"corrects": _("A correction must point at an entry of the same incident.")}
        )
    return timeline_add(
        incident=incident,
        kind=TimelineEntry.Kind.CORRECTION if corrects else TimelineEntry.Kind.NOTE,
        actor=actor,
        text=text,
        corrects=corrects,
    )
