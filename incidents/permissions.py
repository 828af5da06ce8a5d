"""Who may do what: the groups of a crisis team, and who may see a confidential incident.

Model permissions come from groups (``ensure_groups`` keeps them as defined
here, after every migrate).

A confidential incident is visible only to:

1. holders of *Can see every confidential incident* (crisis managers);
2. the people on it: whoever holds a role on it (assignment grants the object
   permission ``view_incident``, django-guardian; relieving withdraws it unless
   the person still holds another role on it) and whoever opened it (the same
   permission, granted on opening);
3. the people paged about it (an escalation e-mail), while it is not closed and
   until they are relieved of a role on it after the page: they may open what the
   e-mail told them about while it is being handled, not forever. This is read
   from the notification rows, so closing withdraws it with nothing to undo, and
   reopening a closed incident gives it back to those paged before.

``incidents.selectors.incidents_visible_to`` reads exactly this, and every
surface reads through it: the API, the admin (lists, forms, history), the HTML
pages and exports, and the acknowledge links in e-mails, which work only while
the person they were sent to may still see the incident.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.db.models import Q
from guardian.shortcuts import assign_perm, remove_perm

from incidents.models import RoleAssignment
from playbooks.models import CrisisRole

VIEW_CONFIDENTIAL = "incidents.view_confidential_incident"
ASSIGNED_PERM = "incidents.view_incident"
# The notification reason that makes its recipient one of "the people paged about it".
PAGE_REASON = "escalation"
# The group whose members run the desk: they see everything and are told when beat stops.
CRISIS_MANAGERS = "Crisis managers"

_APPS = ("incidents", "playbooks", "listening")


def _all(qs):
    return qs


# Not for every reader: every confidential incident, the public's e-mail addresses
# (status-page subscriptions: crisis managers only) and the rate-limit counts.
NOT_FOR_READERS = ("view_confidential_incident", "view_subscription", "view_ratecount")


def _view_all(qs):
    # Every "view_" permission except those above.
    return qs.filter(codename__startswith="view_").exclude(codename__in=NOT_FOR_READERS)


def _codenames(*names: str):
    def pick(qs):
        wanted = Q()
        for name in names:
            app, codename = name.split(".")
            wanted |= Q(content_type__app_label=app, codename=codename)
        return qs.filter(wanted)

    return pick


# Group name -> how to pick its permissions out of the two apps' permissions.
GROUPS = {
    CRISIS_MANAGERS: [_all],
    "Responders": [
        _view_all,
        _codenames(
            "incidents.add_incident",
            "incidents.change_incident",
            "incidents.acknowledge_incident",
            "incidents.change_task",
            "incidents.add_timelineentry",
            "listening.add_mention",
            "listening.change_mention",
            "incidents.add_roleassignment",
            "incidents.change_roleassignment",
            "incidents.add_postmortem",
            "incidents.change_postmortem",
            "incidents.add_actionitem",
            "incidents.change_actionitem",
        ),
    ],
    "Communications": [
        _view_all,
        _codenames(
            "incidents.add_message",
            "incidents.change_message",
            "incidents.add_timelineentry",
            "listening.add_mention",
            "listening.change_mention",
            "playbooks.add_stakeholder",
            "playbooks.change_stakeholder",
            "playbooks.add_messagetemplate",
            "playbooks.change_messagetemplate",
        ),
    ],
    "Legal": [_view_all, _codenames("incidents.approve_message", "incidents.add_timelineentry")],
    "Executives": [
        _codenames(
            "incidents.view_incident",
            "incidents.view_postmortem",
            "incidents.view_actionitem",
            "incidents.view_message",
            "incidents.view_timelineentry",
            "playbooks.view_risk",
            "playbooks.view_playbook",
        )
    ],
}

# Which group a crisis role's holders belong to in the demo desk.
ROLE_GROUPS = {
    "crisis-manager": CRISIS_MANAGERS,
    "communications-lead": "Communications",
    "spokesperson": "Communications",
    "legal-counsel": "Legal",
    "technical-lead": "Responders",
    "scribe": "Responders",
    "executive-sponsor": "Executives",
}


def ensure_groups() -> dict[str, Group]:
    """Create the groups and set their permissions exactly as defined above."""
    base = Permission.objects.filter(content_type__app_label__in=_APPS)
    groups = {}
    for name, pickers in GROUPS.items():
        group, _created = Group.objects.get_or_create(name=name)
        perms = set()
        for pick in pickers:
            perms |= set(pick(base).values_list("pk", flat=True))
        group.permissions.set(perms)
        groups[name] = group
    return groups


def on_post_migrate(sender, **kwargs) -> None:
    ensure_groups()


def grant_assignment(*, incident, user: AbstractBaseUser) -> None:
    assign_perm(ASSIGNED_PERM, user, incident)


def grant_opener(*, incident, user: AbstractBaseUser) -> None:
    """Whoever opens a confidential incident is on it, as if assigned."""
    grant_assignment(incident=incident, user=user)


def withdraw_assignment(*, incident, user: AbstractBaseUser) -> None:
    """Withdraw the object permission unless the person still holds a role on it."""
    still = RoleAssignment.objects.filter(
        incident=incident, user=user, relieved_at__isnull=True
    ).exists()
    if not still:
        remove_perm(ASSIGNED_PERM, user, incident)


def demo_groups() -> None:
    """Put the demo team in the groups of the roles they hold."""
    groups = ensure_groups()
    for role in CrisisRole.objects.prefetch_related("holders"):
        name = ROLE_GROUPS.get(role.slug)
        if name:
            for user in role.holders.all():
                if not user.is_superuser:
                    user.groups.add(groups[name])
