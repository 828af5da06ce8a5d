"""Reads for the response side, in a fixed number of queries.

Visibility: ``incidents_visible_to(user)`` is the rule, and every model that
belongs to an incident has one selector built on it (``messages_visible_to``,
``postmortems_visible_to``...). Every surface reads through them: API querysets
and related fields, admin querysets, form choices and history, HTML pages and
exports. What a selector leaves out answers exactly like a row that does not exist.
"""

from __future__ import annotations

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from incidents.models import (
    ActionItem,
    Exercise,
    ExerciseParticipant,
    Incident,
    Message,
    MessageRevision,
    Notification,
    PostMortem,
    RoleAssignment,
    SendRun,
    Subscription,
    Task,
    TimelineEntry,
    Timer,
)
from incidents.permissions import ASSIGNED_PERM, PAGE_REASON, VIEW_CONFIDENTIAL
from playbooks.models import MessageTemplate, UpdateCadence


def incident_messages(
    *, incident: Incident, audience: str = "", channel: str = "", status: str = ""
) -> QuerySet[Message]:
    """An incident's communications timeline, oldest first, with trail and deliveries."""
    qs = (
        Message.objects.filter(incident=incident)
        .select_related("audience", "author", "approver", "sent_by", "corrects", "template")
        .prefetch_related(
            Prefetch("revisions", queryset=MessageRevision.objects.select_related("editor")),
            Prefetch("deliveries", queryset=Notification.objects.order_by("to_email")),
            "corrections",
        )
        .order_by("created_at", "pk")
    )
    if audience:
        qs = qs.filter(audience__slug=audience)
    if channel:
        qs = qs.filter(channel=channel)
    if status:
        qs = qs.filter(status=status)
    return qs


def public_statements() -> QuerySet[Message]:
    """What the public status page, its feeds and its cache may show: the one rule.

    A statement is public when its incident is neither confidential nor a drill, it
    went out (sent or published), it is a public statement (not an internal one) and
    its audience is public (``StakeholderGroup.public``). Nobody signs in to read it,
    so no person's permissions widen or narrow it.
    """
    return Message.objects.filter(
        incident__confidential=False,
        incident__drill=False,
        status__in=Message.FINAL,
        is_public=True,
        audience__public=True,
    )


def public_incidents() -> QuerySet[Incident]:
    """Incidents with at least one public statement (``public_statements``)."""
    return Incident.objects.filter(Exists(public_statements().filter(incident=OuterRef("pk"))))


def incidents_visible_to(user) -> QuerySet[Incident]:
    """Every incident this person may see (the rule is in incidents/permissions.py).

    A confidential one only with the see-every-confidential permission (crisis
    managers), the object permission that assignment and opening grant and relieving
    withdraws, or a page about it: an escalation e-mail to this person, while the
    incident is not closed and unless they were relieved of a role on it since.
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return Incident.objects.none()
    if user.is_superuser or user.has_perm(VIEW_CONFIDENTIAL):
        return Incident.objects.all()
    assigned = get_objects_for_user(
        user,
        ASSIGNED_PERM,
        klass=Incident,
        use_groups=False,
        with_superuser=False,
        accept_global_perms=False,
    )
    relieved_since = RoleAssignment.objects.filter(
        incident=OuterRef("incident"), user=user, relieved_at__gt=OuterRef("created_at")
    )
    # A page cancelled before it went out (someone acknowledged first) told nobody anything.
    paged = (
        Notification.objects.filter(incident=OuterRef("pk"), recipient=user, reason=PAGE_REASON)
        .exclude(status=Notification.Status.CANCELLED)
        .exclude(Exists(relieved_since))
    )
    return Incident.objects.filter(
        Q(confidential=False)
        | Q(pk__in=assigned.values("pk"))
        | (~Q(status=Incident.Status.CLOSED) & Exists(paged))
    )


def messages_visible_to(user) -> QuerySet[Message]:
    return Message.objects.filter(incident__in=incidents_visible_to(user))


def postmortems_visible_to(user) -> QuerySet[PostMortem]:
    return PostMortem.objects.filter(incident__in=incidents_visible_to(user))


def action_items_visible_to(user) -> QuerySet[ActionItem]:
    return ActionItem.objects.filter(postmortem__incident__in=incidents_visible_to(user))


def timers_visible_to(user) -> QuerySet[Timer]:
    return Timer.objects.filter(incident__in=incidents_visible_to(user))


def notifications_visible_to(user) -> QuerySet[Notification]:
    """The outbox rows of visible incidents, and those of no incident (playbook reviews)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Notification.objects.none()
    return Notification.objects.filter(
        Q(incident__isnull=True) | Q(incident__in=incidents_visible_to(user))
    )


def tasks_visible_to(user) -> QuerySet[Task]:
    return Task.objects.filter(incident__in=incidents_visible_to(user))


def assignments_visible_to(user) -> QuerySet[RoleAssignment]:
    return RoleAssignment.objects.filter(incident__in=incidents_visible_to(user))


def timeline_visible_to(user) -> QuerySet[TimelineEntry]:
    return TimelineEntry.objects.filter(incident__in=incidents_visible_to(user))


EXERCISE_MANAGE_PERM = "incidents.change_exercise"


def exercises_visible_to(user) -> QuerySet[Exercise]:
    """The exercises this person may see: every one for those who may run any (crisis
    managers); otherwise those they facilitate or take part in."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Exercise.objects.none()
    qs = Exercise.objects.select_related("playbook", "facilitator", "incident")
    if user.is_superuser or user.has_perm(EXERCISE_MANAGE_PERM):
        return qs
    taking_part = ExerciseParticipant.objects.filter(exercise=OuterRef("pk"), user=user)
    return qs.filter(Q(facilitator=user) | Exists(taking_part))


def exercise_may_run(user, exercise: Exercise) -> bool:
    """Start, pause, resume, fire early, end, edit: its facilitator or a crisis manager."""
    return bool(
        user.is_authenticated
        and user.is_active
        and (exercise.facilitator_id == user.pk or user.has_perm(EXERCISE_MANAGE_PERM))
    )


def subscriptions_visible_to(user) -> QuerySet[Subscription]:
    """Status-page subscriptions: to every update, or to an incident this person may
    see. A subscription is made only to a public incident, but one that became
    confidential since stays as hidden as the incident."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Subscription.objects.none()
    return Subscription.objects.filter(
        Q(incident__isnull=True) | Q(incident__in=incidents_visible_to(user))
    ).select_related("contact", "incident")


def incident_comms(*, user, incident: Incident) -> QuerySet[Message]:
    """An incident's messages as this person may see them, for the war room's
    communications panel: oldest first, with the people and the corrections each
    row shows, in a fixed number of queries."""
    return (
        messages_visible_to(user)
        .filter(incident=incident)
        .select_related("incident", "audience", "author", "approver", "sent_by", "corrects")
        .prefetch_related(
            Prefetch(
                "corrections",
                queryset=Message.objects.select_related("author").order_by("created_at", "pk"),
            )
        )
        .order_by("created_at", "pk")
    )


def message_returns(*, user, incident: Incident) -> dict[int, TimelineEntry]:
    """The latest return of each message of an incident (who, when and the comment),
    read from the timeline, where ``comms.message_return`` keeps it."""
    entries = (
        timeline_visible_to(user)
        .filter(incident=incident, kind=TimelineEntry.Kind.MESSAGE, data__returned=True)
        .select_related("actor")
        .order_by("at", "pk")
    )
    return {entry.data.get("message_id"): entry for entry in entries}


def message_latest_entry(*, user, message: Message) -> TimelineEntry | None:
    """The last thing that happened to a message (who did what, when), from the timeline."""
    return (
        timeline_visible_to(user)
        .filter(
            incident_id=message.incident_id,
            kind=TimelineEntry.Kind.MESSAGE,
            data__message_id=message.pk,
        )
        .select_related("actor")
        .order_by("-at", "-pk")
        .first()
    )


def message_delivery(*, user, message: Message) -> dict | None:
    """How far a sent message's e-mails have got, for the war room and the API: its
    contacts and the outbox rows written so far, and the rows by state in one grouped
    query (``retrying``: queued again after a transient failure; ``failed``: failed
    permanently). ``running`` while anything is still to be written or sent. None
    for a message never e-mailed, or one this person may not see."""
    run = SendRun.objects.filter(message__in=messages_visible_to(user), message=message).first()
    if run is None:
        return None
    counts = {"queued": 0, "sending": 0, "sent": 0, "failed": 0, "retrying": 0, "cancelled": 0}
    rows = (
        Notification.objects.filter(comms_message=message)
        .values_list("status")
        .annotate(n=Count("pk"), retrying=Count("pk", filter=Q(attempts__gt=0)))
        .order_by()
    )
    for status, n, retrying in rows:
        if status == Notification.Status.QUEUED:
            counts["retrying"] += retrying
            n -= retrying
        counts[status] = counts.get(status, 0) + n
    return {
        "contacts": run.total,
        "written": run.written,
        **counts,
        "running": run.finished_at is None
        or bool(counts["queued"] + counts["sending"] + counts["retrying"]),
        "started_at": run.started_at,
        "written_at": run.finished_at,
    }


def incident_templates(incident: Incident) -> QuerySet[MessageTemplate]:
    """The message templates of the playbook version an incident runs, and only those."""
    if incident.playbook_id is None:
        return MessageTemplate.objects.none()
    return (
        MessageTemplate.objects.filter(playbook_id=incident.playbook_id)
        .select_related("audience")
        .order_by("audience__priority", "audience__name", "channel", "name", "language", "pk")
    )


def incident_cadences(incident: Incident) -> QuerySet[UpdateCadence]:
    """How often each audience hears from us, from the playbook version the incident runs."""
    if incident.playbook_id is None:
        return UpdateCadence.objects.none()
    return (
        UpdateCadence.objects.filter(playbook_id=incident.playbook_id)
        .select_related("audience")
        .order_by("audience__priority", "audience__name")
    )


# The selector of each model that belongs to an incident, for code that picks by model
# (admin form fields, the admin's view-on-site shortcut).
VISIBLE_BY_MODEL = {
    Incident: incidents_visible_to,
    Exercise: exercises_visible_to,
    Message: messages_visible_to,
    PostMortem: postmortems_visible_to,
    ActionItem: action_items_visible_to,
    Timer: timers_visible_to,
    Notification: notifications_visible_to,
    Task: tasks_visible_to,
    RoleAssignment: assignments_visible_to,
    TimelineEntry: timeline_visible_to,
    Subscription: subscriptions_visible_to,
}
