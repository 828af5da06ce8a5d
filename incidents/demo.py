"""A finished demo drill, so a new desk shows a post-mortem from its first start."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from incidents import comms, exercises, postmortem, services
from incidents.models import ActionItem, Exercise, Incident, Message
from playbooks.models import CrisisRole, Playbook, StakeholderGroup

DRILL_TITLE = "Drill: payment page down during the spring sale"
PUBLIC_TITLE = "Parcel tracking shows no updates"
EXERCISE_TITLE = "Exercise: a video of a rude employee goes viral"
# Who plays which role in the demo exercise (the demo team of playbooks/seed.py).
EXERCISE_CAST = [
    ("noa", "crisis-manager"),
    ("eszter", "communications-lead"),
    ("nikos", "spokesperson"),
    ("david", "legal-counsel"),
    ("maria", "executive-sponsor"),
]


@transaction.atomic
def demo_exercise() -> Exercise | None:
    """A planned exercise of the social-media-storm playbook with the starter injects, a
    week ahead, so a new desk shows one; idempotent, skipped without the demo."""
    if Exercise.objects.filter(title=EXERCISE_TITLE).exists():
        return None
    users = {u.username: u for u in get_user_model().objects.filter(username__in=["demo"] + [
        name for name, _slug in EXERCISE_CAST
    ])}  # fmt: skip
    roles = {r.slug: r for r in CrisisRole.objects.filter(slug__in=[s for _n, s in EXERCISE_CAST])}
    playbook = Playbook.objects.filter(key="social-media-storm", status="published").first()
    cast = [(users.get(n), roles.get(s)) for n, s in EXERCISE_CAST]
    if playbook is None or "demo" not in users or any(None in pair for pair in cast):
        return None
    start = (timezone.now() + dt.timedelta(days=7)).replace(minute=0, second=0, microsecond=0)
    return exercises.exercise_plan(
        playbook=playbook,
        title=EXERCISE_TITLE,
        brief=_(
            "A customer films a staff member being rude in a store; the video spreads on "
            "TikTok and X within the hour. Rehearse the first statement, the press and the "
            "protection of the employee, against the clock."
        ),
        facilitator=users["demo"],
        participants=cast,
        planned_start=start,
    )


@transaction.atomic
def demo_drill() -> Incident | None:
    """Run a short outage drill through its whole life: idempotent, skipped without the demo."""
    if Incident.objects.filter(title=DRILL_TITLE, drill=True).exists():
        return None
    users = get_user_model().objects
    manager = users.filter(username="noa").first()
    writer = users.filter(username="eszter").first()
    playbook = Playbook.objects.filter(key="service-outage", status="published").first()
    customers = StakeholderGroup.objects.filter(slug="customers").first()
    if None in (manager, writer, playbook, customers):
        return None
    incident = services.incident_open(
        title=DRILL_TITLE,
        summary=_("Checkout returns errors for every card payment; orders are lost."),
        severity=2,
        playbook=playbook,
        drill=True,
        actor=manager,
    )
    services.incident_acknowledge(incident=incident, actor=manager, via="demo")

    def statement() -> str:
        return _(
            "Card payments are failing on our shop since 10:05. Your card has not been "
            "charged for failed orders. We are restoring the payment page and will post "
            "the next update here within 30 minutes."
        )

    message = comms.message_draft(
        incident=incident,
        author=writer,
        audience=customers,
        channel="website",
        body=statement(),
    )
    # The same statement in each language the customers read, from the catalogues.
    words = {}
    for code in message.translations:
        with translation.override(code):
            words[code] = {"subject": "", "body": statement()}
    message = comms.message_edit(
        message=message,
        editor=writer,
        subject=message.subject,
        body=message.body,
        translations=words,
    )
    comms.message_submit(message=message, actor=writer)
    comms.message_approve(message=message, approver=manager, note=_("Drill: checked."))
    comms.message_publish(message=message, actor=writer, where="https://status.example.com")
    services.incident_contain(incident=incident, actor=manager)
    services.incident_resolve(incident=incident, actor=manager)
    report = postmortem.postmortem_edit(
        postmortem=incident.postmortem,
        actor=manager,
        summary=_("A drill of a payment outage during a sale, run end to end in minutes."),
        impact=_("None: a drill. In a real outage every checkout would fail."),
        went_well=_("The first statement went out before the deadline and was approved once."),
        went_poorly=_("Nobody updated the status page again before containment."),
        lessons=_("Rehearse the status-page update with the spokesperson."),
    )
    ActionItem.objects.create(
        postmortem=report,
        title=_("Add a status-page update step to the outage playbook"),
        kind=ActionItem.Kind.PREVENTIVE,
        owner=writer,
        due_on=timezone.localdate() + dt.timedelta(days=14),
        playbook=playbook,
    )
    return incident


@transaction.atomic
def demo_public_incident() -> Incident | None:
    """A contained outage with a public statement and its correction, so the public
    status page (/status/) of a new desk shows something; idempotent."""
    if Incident.objects.filter(title=PUBLIC_TITLE, drill=False).exists():
        return None
    users = get_user_model().objects
    manager = users.filter(username="noa").first()
    writer = users.filter(username="eszter").first()
    playbook = Playbook.objects.filter(key="service-outage", status="published").first()
    customers = StakeholderGroup.objects.filter(slug="customers", public=True).first()
    if None in (manager, writer, playbook, customers):
        return None
    incident = services.incident_open(
        title=PUBLIC_TITLE,
        summary=_("The tracking page shows no scan since this morning; parcels move as usual."),
        severity=3,
        playbook=playbook,
        actor=manager,
    )
    services.incident_acknowledge(incident=incident, actor=manager, via="demo")
    services.incident_set_public_title(
        incident=incident, public_title=_("Parcel tracking delayed"), actor=manager
    )

    def first() -> str:
        return _(
            "Parcel tracking shows no new scans since 06:00. Deliveries are running; only "
            "the tracking page is behind. Next update here within the hour."
        )

    def corrected() -> str:
        return _(
            "Parcel tracking shows no new scans since 08:00 (not 06:00 as we wrote). "
            "Deliveries are running; only the tracking page is behind. Next update here "
            "within the hour."
        )

    def publish(draft: Message, words) -> Message:
        variants = {}
        for code in draft.translations:
            with translation.override(code):
                variants[code] = {"subject": "", "body": words()}
        draft = comms.message_edit(
            message=draft, editor=writer, subject="", body=draft.body, translations=variants
        )
        comms.message_submit(message=draft, actor=writer)
        comms.message_approve(message=draft, approver=manager)
        return comms.message_publish(message=draft, actor=writer, where="/status/")

    statement = publish(
        comms.message_draft(
            incident=incident, author=writer, audience=customers, channel="website", body=first()
        ),
        first,
    )
    publish(comms.message_correct(original=statement, author=writer, body=corrected()), corrected)
    services.incident_contain(incident=incident, actor=manager)
    return incident
