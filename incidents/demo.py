"""A finished demo drill, so a new desk shows a post-mortem from its first start."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from incidents import comms, postmortem, services
from incidents.models import ActionItem, Incident
from playbooks.models import Playbook, StakeholderGroup

DRILL_TITLE = "Drill: payment page down during the spring sale"


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
