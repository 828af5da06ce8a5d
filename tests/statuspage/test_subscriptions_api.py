"""The subscriptions API for crisis managers: list (by incident), detail, delete,
counts per scope; through the selector, so a hidden incident's subscriptions answer
like made-up ones."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from incidents import subscribers
from incidents.models import Subscription
from playbooks.models import Stakeholder
from tests.incidents.conftest import api

pytestmark = pytest.mark.django_db


@pytest.fixture
def subs(matrix):
    """Three subscribers: one to everything, one to the public incident, one to the
    secret one (it became confidential after they subscribed, say)."""
    public, secret = matrix["public"], matrix["secret"]
    made = {
        "all": subscribers._subscribe(email="all@example.test", language="en", incident=None),
        "public": subscribers._subscribe(email="pub@example.test", language="hu", incident=public),
        "secret": subscribers._subscribe(email="sec@example.test", language="en", incident=secret),
    }
    return {**matrix, "subs": made}


def _reader_without_confidential(subs):
    """Someone allowed to read subscriptions but not every confidential incident."""
    user = subs["people"]["unassigned"]
    user.user_permissions.add(Permission.objects.get(codename="view_subscription"))
    return user


def test_a_crisis_manager_lists_filters_and_counts(subs):
    manager = api(subs["people"]["manager"])
    rows = manager.get("/api/v1/subscriptions/").json()["results"]
    assert {r["email"] for r in rows} == {
        "all@example.test",
        "pub@example.test",
        "sec@example.test",
    }
    public = subs["public"]
    only = manager.get(f"/api/v1/subscriptions/?incident={public.pk}").json()["results"]
    assert [(r["email"], r["language"], r["incident_reference"]) for r in only] == [
        ("pub@example.test", "hu", public.reference)
    ]
    counts = manager.get("/api/v1/subscriptions/counts/").json()
    assert sorted((c["incident"] or 0, c["subscribers"]) for c in counts) == sorted(
        [(0, 1), (public.pk, 1), (subs["secret"].pk, 1)]
    )


@pytest.mark.parametrize("persona", ["anonymous", "outsider", "executive", "assigned"])
def test_nobody_else_reads_the_publics_addresses(subs, persona):
    client = api(subs["people"][persona])
    expected = 403  # anonymous too: session authentication answers 403
    assert client.get("/api/v1/subscriptions/").status_code == expected
    assert client.get("/api/v1/subscriptions/counts/").status_code == expected
    one = subs["subs"]["all"]
    assert client.delete(f"/api/v1/subscriptions/{one.pk}/").status_code == expected
    assert Subscription.objects.filter(pk=one.pk).exists()


def test_a_hidden_incidents_subscriptions_answer_like_made_up_ones(subs):
    client = api(_reader_without_confidential(subs))
    secret = subs["secret"]
    rows = client.get("/api/v1/subscriptions/").json()["results"]
    assert "sec@example.test" not in {r["email"] for r in rows}
    assert len(rows) == 2
    hidden = client.get(f"/api/v1/subscriptions/{subs['subs']['secret'].pk}/")
    made_up = client.get("/api/v1/subscriptions/999999/")
    assert hidden.status_code == made_up.status_code == 404
    assert hidden.json() == made_up.json()
    by_hidden = client.get(f"/api/v1/subscriptions/?incident={secret.pk}")
    by_made_up = client.get("/api/v1/subscriptions/?incident=999999")
    assert by_hidden.status_code == by_made_up.status_code == 400
    assert by_hidden.json() == by_made_up.json()
    counts = client.get("/api/v1/subscriptions/counts/").json()
    assert secret.pk not in {c["incident"] for c in counts}
    assert str(secret.reference) not in str(counts)


def test_deleting_unsubscribes_and_the_address_goes_with_the_last_scope(subs):
    manager = api(subs["people"]["manager"])
    contact = subs["subs"]["all"].contact
    extra = subscribers._subscribe(email="all@example.test", language="en", incident=subs["public"])
    assert manager.delete(f"/api/v1/subscriptions/{subs['subs']['all'].pk}/").status_code == 204
    assert Stakeholder.objects.filter(pk=contact.pk).exists()  # still subscribed to one
    assert manager.delete(f"/api/v1/subscriptions/{extra.pk}/").status_code == 204
    assert not Stakeholder.objects.filter(pk=contact.pk).exists()
    assert manager.delete(f"/api/v1/subscriptions/{extra.pk}/").status_code == 404
