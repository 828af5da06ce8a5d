from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from incidents.listening import services
from incidents.listening.models import ListeningRule, Mention, Source
from incidents.listening.signing import sign
from incidents.permissions import ensure_groups
from tests.factories import PlaybookFactory, RiskFactory, UserFactory
from tests.incidents.conftest import broker_calls, make_playbook, team  # noqa: F401 - reused fixtures


@pytest.fixture
def groups(db):
    return ensure_groups()


@pytest.fixture
def manager(groups):
    user = UserFactory(username="manager")
    user.groups.add(Group.objects.get(name="Crisis managers"))
    return user


@pytest.fixture
def responder(groups):
    user = UserFactory(username="responder")
    user.groups.add(Group.objects.get(name="Responders"))
    return user


@pytest.fixture
def webhook(db):
    return services.source_create(name="Social listening", slug="social", kind="webhook")


@pytest.fixture
def risk(db):
    playbook = PlaybookFactory(
        key="storm", title="Social-media storm", status="published", published_at=timezone.now()
    )
    return RiskFactory(title="Checkout scandal", category="social_media_storm", playbook=playbook)


@pytest.fixture
def spike_rule(risk):
    return ListeningRule.objects.create(
        risk=risk,
        name="Checkout complaints",
        keywords=["checkout broken", "pénztár", "κλοπή", "הונאה"],
        window_minutes=10,
        threshold_count=5,
    )


def signed_post(client, source: Source, payload, *, timestamp=None, signature=None, raw=None):
    body = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    sig = signature or sign(secret=source.secret, timestamp=ts, body=body)
    return client.post(
        f"/api/v1/intake/{source.slug}/",
        data=body,
        content_type="application/json",
        HTTP_X_CRISISDESK_SIGNATURE=sig,
        HTTP_X_CRISISDESK_TIMESTAMP=ts,
    )


def mention(i: int, text: str = "The checkout broken again!", **extra) -> dict:
    return {"id": f"m-{i}", "channel": "twitter", "author": f"@user{i}", "text": text, **extra}


# ------------------------------------------------------------------ the triage inbox

REPLY_EN = "Thank you for telling us, and sorry. We are on it: {incident_reference}."
REPLY_HU = "Köszönjük, hogy jelezte, és elnézést kérünk. Dolgozunk rajta: {incident_reference}."


@pytest.fixture
def inbox_desk(team, make_playbook, groups):  # noqa: F811
    """An open SEV2 incident whose playbook answers comments within 60 minutes (30 on X for
    a SEV1), warns 15 minutes before, and has a reply template in English and Hungarian;
    a Hungarian comment on X about it; noa the crisis manager, eszter the communications
    lead on call (both in their groups), and an outsider who may view mentions only."""
    from incidents import services as incident_services
    from playbooks.models import MessageTemplate
    from tests.factories import StakeholderGroupFactory

    playbook = make_playbook(
        reply_deadlines=[{"channel": "twitter", "severity": 1, "minutes": 30}],
    )
    customers = StakeholderGroupFactory(slug="customers", name="Customers", public=True)
    template = MessageTemplate.objects.create(
        playbook=playbook, name="Reply", audience=customers, channel="reply", language="en",
        body=REPLY_EN,
    )  # fmt: skip
    MessageTemplate.objects.create(
        playbook=playbook, name="Reply", audience=customers, channel="reply", language="hu",
        body=REPLY_HU,
    )  # fmt: skip
    people = team["people"]
    people["noa"].groups.add(Group.objects.get(name="Crisis managers"))
    team["roles"]["crisis-manager"].holders.add(people["noa"])
    people["eszter"].groups.add(Group.objects.get(name="Communications"))
    people["eleni"].groups.add(Group.objects.get(name="Responders"))
    incident = incident_services.incident_open(
        title="Checkout storm", severity=2, playbook=playbook
    )
    mention, _created, _fired = services.mention_record(
        source=services.manual_source(),
        text="A pénztár megint nem működik, harmadszor!",
        channel="twitter",
        language="hu",
        author="@kati",
        url="https://x.example/kati/1",
    )
    # As a listening rule would have tied it.
    Mention.objects.filter(pk=mention.pk).update(incident=incident)
    mention.refresh_from_db()
    return {
        "incident": incident,
        "playbook": playbook,
        "template": template,
        "mention": mention,
        **people,
    }
