"""One lock order everywhere (incident, then message, then notification): a manual send
racing its own scheduled send at the same instant sends once and never deadlocks.

Meant for PostgreSQL, where row locks can deadlock; on SQLite, whose writers queue
on one database lock, it checks the same outcome."""

from __future__ import annotations

import datetime as dt
import os
import random
import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from incidents import comms, escalation
from incidents.models import Message, TimelineEntry, Timer
from tests.incidents.conftest import FACTS, FACTS_BY_LANGUAGE

ROUNDS = 8


@pytest.fixture
def desk(broker_calls, comms_desk, transactional_db):
    return comms_desk


def scheduled(desk) -> tuple[Message, Timer]:
    """An approved e-mail scheduled for later, its timer then made due now."""
    message = comms.message_draft(
        incident=desk["incident"], author=desk["eszter"], audience=desk["customers"],
        channel="email", template=desk["template"], facts=FACTS,
        facts_by_language=FACTS_BY_LANGUAGE,
    )  # fmt: skip
    comms.message_submit(message=message, actor=desk["eszter"])
    comms.message_approve(message=message, approver=desk["lawyer"], accept_boilerplate=True)
    timer = comms.message_schedule(
        message=message, actor=desk["eszter"], at=timezone.now() + dt.timedelta(minutes=5)
    )
    Timer.objects.filter(pk=timer.pk).update(due_at=timezone.now() - dt.timedelta(seconds=1))
    return message, timer


def test_a_manual_send_racing_its_scheduled_send_sends_once_without_deadlock(desk):
    seed = int(os.environ.get("CRISISDESK_RACE_SEED", random.randrange(2**32)))
    print(f"race seed: {seed} (rerun with CRISISDESK_RACE_SEED={seed})")
    rng = random.Random(seed)
    for round_no in range(ROUNDS):
        message, timer = scheduled(desk)
        # Jitter of a few milliseconds either way, so each side is sometimes first.
        delays = {"timer": rng.uniform(0, 0.004), "manual": rng.uniform(0, 0.004)}
        barrier = threading.Barrier(2)
        results: dict[str, object] = {}

        def run(name, call):
            try:
                barrier.wait(timeout=10)
                threading.Event().wait(delays[name])
                results[name] = call()
            except Exception as exc:  # noqa: BLE001 - every outcome is checked below
                results[name] = exc
            finally:
                connection.close()

        threads = [
            threading.Thread(
                target=run, args=("timer", lambda: escalation.timer_fire(timer_id=timer.pk))
            ),
            threading.Thread(
                target=run,
                args=("manual", lambda: comms.message_send(message=message, actor=desk["eszter"])),
            ),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        context = (seed, round_no, delays, results)
        manual, fired = results["manual"], results["timer"]
        assert not isinstance(fired, Exception), context
        if isinstance(manual, Exception):
            # The timer sent it first: the manual send is refused, cleanly.
            assert isinstance(manual, ValidationError), context
            assert "sent to 4" in str(fired), context
        else:
            assert manual == 4 and "no longer waiting" in str(fired), context
        sends = TimelineEntry.objects.filter(
            kind="message", data__message_id=message.pk, data__status="sent"
        ).count()
        assert sends == 1, context
        assert message.deliveries.count() == 4
        assert not TimelineEntry.objects.filter(
            kind="delivery", data__message_id=message.pk
        ).exists(), context
