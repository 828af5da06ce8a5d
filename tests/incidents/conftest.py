from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from incidents import escalation, notify
from incidents import services as incident_services
from playbooks import services as playbook_services
from playbooks.models import (
    EscalationLevel,
    MessageTemplate,
    Phase,
    RotationMember,
    Stakeholder,
    UpdateCadence,
)
from tests.factories import (
    CrisisRoleFactory,
    EscalationLevelFactory,
    MessageTemplateFactory,
    OnCallRotationFactory,
    PlaybookFactory,
    PlaybookStepFactory,
    StakeholderGroupFactory,
    UserFactory,
)


def on_call(role, *users):
    """A rotation for `role` whose first member holds it now (daily hand-off, started 1 h ago)."""
    rotation = OnCallRotationFactory(
        role=role, starts_at=timezone.now() - dt.timedelta(hours=1), handoff_hours=24
    )
    for position, user in enumerate(users, start=1):
        RotationMember.objects.create(rotation=rotation, user=user, position=position)
    return rotation


@pytest.fixture
def team(db):
    roles = {
        slug: CrisisRoleFactory(slug=slug, name=slug.replace("-", " ").capitalize())
        for slug in ("crisis-manager", "communications-lead", "technical-lead", "executive-sponsor")
    }
    people = {
        "noa": UserFactory(
            username="noa", first_name="נועה", last_name="לוי", email="noa@example.test"
        ),
        "eszter": UserFactory(
            username="eszter", first_name="Eszter", last_name="Kovács", email="eszter@example.test"
        ),
        "eleni": UserFactory(
            username="eleni",
            first_name="Ελένη",
            last_name="Παπαδοπούλου",
            email="eleni@example.test",
        ),
        "exec": UserFactory(
            username="exec", first_name="Dana", last_name="Exec", email="exec@example.test"
        ),
    }
    on_call(roles["crisis-manager"], people["noa"])
    on_call(roles["communications-lead"], people["eszter"])
    on_call(roles["technical-lead"], people["eleni"])
    on_call(roles["executive-sponsor"], people["exec"])
    return {"roles": roles, "people": people}


@pytest.fixture
def make_playbook(team):
    def make(
        delays=(60, 120, 180),
        targets=("crisis-manager", "technical-lead", "executive-sponsor"),
        repeat=0,
        **kwargs,
    ):
        playbook = PlaybookFactory(escalation_repeat_count=repeat, **kwargs)
        PlaybookStepFactory(
            playbook=playbook,
            position=1,
            phase=Phase.DETECT,
            role=team["roles"]["crisis-manager"],
            due_offset_minutes=0,
        )
        PlaybookStepFactory(
            playbook=playbook,
            position=2,
            phase=Phase.COMMUNICATE,
            role=team["roles"]["communications-lead"],
            due_offset_minutes=30,
        )
        MessageTemplateFactory(playbook=playbook)
        for position, (delay, slug) in enumerate(zip(delays, targets, strict=True), start=1):
            EscalationLevelFactory(
                playbook=playbook,
                position=position,
                delay_seconds=delay,
                target=EscalationLevel.Target.ROLE_ON_CALL,
                role=team["roles"][slug],
            )
        return playbook_services.playbook_publish(playbook=playbook)

    return make


@pytest.fixture
def broker_calls(monkeypatch):
    """Unit tests record what would go to the broker instead of sending it."""
    from incidents import dispatch

    calls = []
    kinds = {
        dispatch.FIRE_TIMER: "fire",
        dispatch.DELIVER_NOTIFICATION: "deliver",
        dispatch.DELIVER_CHUNK: "chunk",
        dispatch.MESSAGE_FANOUT: "fanout",
    }

    def send(task, pk, *, eta=None):
        calls.append((kinds[task], pk, eta))
        return True

    monkeypatch.setattr(dispatch, "send", send)
    return calls


FACTS = {
    "what_happened": "card data of 1,200 customers was exposed",
    "what_we_do": "blocking the cards",
    "what_you_can_do": "watch your statements",
    "affected": "some customers",
}


def written_in_every_language(message, editor=None):
    """Write each other-language variant of a draft, as the team would in that language,
    so it may be approved (a variant left "not translated" blocks approval)."""
    from incidents import comms

    if not message.translations:
        return message
    return comms.message_edit(
        message=message,
        editor=editor or message.author,
        subject=message.subject,
        body=message.body,
        translations={
            code: {
                "subject": variant["subject"] or f"[{code}] {message.subject}",
                "body": f"[{code}] {message.body}",
            }
            for code, variant in message.translations.items()
        },
    )


# The same facts as the team writes them for its readers in other languages.
FACTS_BY_LANGUAGE = {
    "he": {
        "what_happened": "נתוני הכרטיסים של 1,200 לקוחות נחשפו",
        "what_we_do": "חוסמים את הכרטיסים",
        "what_you_can_do": "כדאי לעקוב אחר פירוט החיובים",
        "affected": "חלק מהלקוחות",
    },
    "el": {
        "what_happened": "εκτέθηκαν τα στοιχεία καρτών 1.200 πελατών",
        "what_we_do": "μπλοκάρουμε τις κάρτες",
        "what_you_can_do": "ελέγξτε τις κινήσεις σας",
        "affected": "ορισμένοι πελάτες",
    },
    "hu": {
        "what_happened": "1200 ügyfél kártyaadatai váltak hozzáférhetővé",
        "what_we_do": "letiltjuk a kártyákat",
        "what_you_can_do": "kövesse figyelemmel a számlakivonatait",
        "affected": "egyes ügyfelek",
    },
}


@pytest.fixture
def comms_desk(team, make_playbook, settings):
    """An incident with customers in three languages, templates in three, and an approver."""
    settings.CRISISDESK_CONTACT_CHANNEL = "help@example.test"
    settings.CRISISDESK_STATUS_PAGE_URL = "https://status.example.test"
    playbook = make_playbook()
    customers = StakeholderGroupFactory(slug="customers", name="Customers", default_language="en")
    employees = StakeholderGroupFactory(slug="employees", name="Employees", kind="employees")
    UpdateCadence.objects.create(playbook=playbook, audience=customers, every_minutes=60)
    template = MessageTemplate.objects.create(
        playbook=playbook,
        name="Notice",
        audience=customers,
        channel="email",
        language="en",
        subject="{incident_reference}: {incident_title}",
        body="Dear {recipient_name}, {what_happened}. We are {what_we_do}. Ask us at {contact_channel}.",
    )
    MessageTemplate.objects.create(
        playbook=playbook,
        name="Notice",
        audience=customers,
        channel="email",
        language="he",
        subject="{incident_reference}: עדכון",
        body="{recipient_name} שלום, {what_happened}. אנחנו {what_we_do}.",
    )
    MessageTemplate.objects.create(
        playbook=playbook,
        name="Notice",
        audience=customers,
        channel="email",
        language="el",
        subject="{incident_reference}: ενημέρωση",
        body="Αγαπητέ/ή {recipient_name}, {what_happened}. Εμείς: {what_we_do}.",
    )
    for name, email, language in [
        ("Anna", "anna@example.test", ""),
        ("יוסי", "yossi@example.test", "he"),
        ("Ελένη", "eleni.c@example.test", "el"),
        ("Péter", "peter@example.test", "hu"),
    ]:
        Stakeholder.objects.create(group=customers, name=name, email=email, language=language)
    Stakeholder.objects.create(group=employees, name="All staff", email="staff@example.test")
    legal = CrisisRoleFactory(slug="legal-counsel", name="Legal counsel", can_approve_messages=True)
    lawyer = UserFactory(username="lawyer", email="lawyer@example.test")
    legal.holders.add(lawyer)
    team["roles"]["crisis-manager"].holders.add(team["people"]["noa"])
    incident = incident_services.incident_open(
        title="Kártyaadatok kiszivárogtak", severity=1, playbook=playbook
    )
    return {
        "incident": incident,
        "template": template,
        "customers": customers,
        "employees": employees,
        "lawyer": lawyer,
        **team["people"],
    }


# ------------------------------------------------------------------ permission matrix


def member(username, *groups, **extra):
    """A user in the named groups (ensure_groups() must have run)."""
    from django.contrib.auth.models import Group

    user = UserFactory(username=username, email=f"{username}@example.test", **extra)
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
    return user


def api(user=None):
    from rest_framework.test import APIClient

    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


PERSONAS = ("anonymous", "outsider", "executive", "assigned", "unassigned", "manager")

# What each persona may read: (lists/details of incident records, may see confidential)
CAN_READ = {
    "anonymous": (False, False),
    "outsider": (False, False),
    "executive": (True, False),
    "assigned": (True, True),
    "unassigned": (True, False),
    "manager": (True, True),
}


@pytest.fixture
def matrix(broker_calls, comms_desk):
    """A public and a confidential incident, both resolved, with a note, a draft message
    and a notification each; one person of every persona (the assigned one holds a role
    on the confidential incident)."""
    from incidents import comms
    from incidents.models import Notification
    from incidents.permissions import ensure_groups

    ensure_groups()
    desk = comms_desk
    public = desk["incident"]
    secret = incident_services.incident_open(
        title="Vezérigazgatói botrány", confidential=True, playbook=public.playbook
    )
    people = {
        "anonymous": None,
        "outsider": member("outsider"),
        "executive": member("executive", "Executives"),
        "assigned": member("assigned", "Responders"),
        "unassigned": member("unassigned", "Responders"),
        "manager": member("manager", "Crisis managers"),
    }
    role = secret.assignments.first().role
    incident_services.role_assign(incident=secret, role=role, user=people["assigned"])
    for incident in (public, secret):
        incident_services.note_add(incident=incident, actor=None, text=f"note on {incident.title}")
        comms.message_draft(
            incident=incident,
            author=people["manager"],
            audience=desk["customers"],
            channel="website",
            body=f"Draft about {incident.title}",
        )
        Notification.objects.create(
            incident=incident,
            to_email="someone@example.test",
            reason="escalation",
            dedupe_key=f"matrix:{incident.pk}",
            message_id=f"<matrix-{incident.pk}@example.test>",
            subject=incident.title,
            body_text="b",
        )
        incident_services.incident_resolve(incident=incident, actor=None)
    return {"public": public, "secret": secret, "people": people, "desk": desk}


__all__ = ["escalation", "notify", "on_call"]
