"""Two mentions of one risk in transactions that overlap (PostgreSQL, READ COMMITTED).

The second mention's window count must see the first once the first commits: it
waits for the risk's row lock, so the threshold crossing is never lost between
two transactions that each saw only their own hit, and no mention is left out of
the incident the other one opened (CI caught 38 of 40 linked in a burst).
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction

from incidents.listening import services
from incidents.listening.models import ListeningRule, Mention
from incidents.models import Incident

pytestmark = pytest.mark.django_db(transaction=True)


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def test_a_mention_whose_transaction_overlaps_the_crossing_one_is_counted_and_linked(webhook, risk):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writing transaction at a time")
    ListeningRule.objects.create(
        risk=risk, name="Pair", keywords=["checkout"], window_minutes=10, threshold_count=2
    )
    first_written, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                services.mention_record(source=webhook, text="checkout down", external_id="a")
                first_written.set()
                assert release.wait(30)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            first_written.set()
        finally:
            connections.close_all()

    def second() -> None:
        try:
            services.mention_record(source=webhook, text="checkout down again", external_id="b")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    one = threading.Thread(target=first)
    one.start()
    assert first_written.wait(30)
    two = threading.Thread(target=second)
    two.start()
    # The second either waits for the first's lock (as it must) or runs through
    # without it; the first commits only after one of the two is seen.
    deadline = time.monotonic() + 30
    while two.is_alive() and not _waiting_on_a_lock():
        assert time.monotonic() < deadline, "the second mention neither finished nor waited"
        time.sleep(0.02)
    release.set()
    one.join(30)
    two.join(30)
    assert not errors, errors
    incident = Incident.objects.get()
    assert set(Mention.objects.values_list("external_id", "incident")) == {
        ("a", incident.pk),
        ("b", incident.pk),
    }


def test_a_delivery_caught_in_a_deadlock_between_two_risks_still_lands(webhook, risk):
    """The delivery locks risk Y then waits for X, held by a transaction that then
    wants Y: PostgreSQL ends one of the two; the delivery lands either way (run
    again when it was the one ended)."""
    from incidents.listening.services import mentions_receive
    from tests.factories import RiskFactory

    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writing transaction at a time")
    other = RiskFactory(title="Refund scandal", category="social_media_storm")
    x, y = sorted([risk, other], key=lambda r: r.pk, reverse=True)  # Y locked first
    ListeningRule.objects.create(risk=x, name="X", keywords=["alpha"], threshold_count=50)
    ListeningRule.objects.create(risk=y, name="Y", keywords=["beta"], threshold_count=50)
    holding_x, delivery_waits = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def holder() -> None:
        try:
            with transaction.atomic():
                services.mention_record(source=webhook, text="alpha", external_id="h1")
                holding_x.set()
                assert delivery_waits.wait(30)
                services.mention_record(source=webhook, text="beta", external_id="h2")
            outcome["holder"] = "committed"
        except BaseException as exc:
            outcome["holder"] = exc
            holding_x.set()
        finally:
            connections.close_all()

    def deliver() -> None:
        try:
            items = [{"external_id": "d1", "text": "beta"}, {"external_id": "d2", "text": "alpha"}]
            outcome["delivery"] = len(mentions_receive(source=webhook, items=items).accepted)
        except BaseException as exc:
            outcome["delivery"] = exc
        finally:
            connections.close_all()

    one = threading.Thread(target=holder)
    one.start()
    assert holding_x.wait(30)
    two = threading.Thread(target=deliver)
    two.start()
    deadline = time.monotonic() + 30
    while two.is_alive() and not _waiting_on_a_lock():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    delivery_waits.set()
    one.join(60)
    two.join(60)
    assert outcome["delivery"] == 2, outcome
    assert set(Mention.objects.values_list("external_id", flat=True)) >= {"d1", "d2"}
