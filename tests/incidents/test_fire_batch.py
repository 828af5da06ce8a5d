"""A storm of escalations fired in batches (issue 14): every due escalation fired with
the task that finds it due, each timer still claimed on its own, the writes in bulk,
the pages over one SMTP connection; one bad timer, a failed write or a killed worker
loses none of the others."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import pytest
import time_machine
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from crisisdesk import ratelimit
from incidents import escalation, notify, services
from incidents.models import Incident, Notification, TimelineEntry, Timer
from tests.realstack import eventually


def open_incidents(playbook, n):
    return [services.incident_open(title=f"Storm {i}", playbook=playbook) for i in range(n)]


def level1(incident) -> Timer:
    return Timer.objects.get(incident=incident, kind="escalation", level=1)


def pages():
    return Notification.objects.filter(reason="escalation")


def all_due(incidents) -> dt.datetime:
    """A second after the last of these incidents' level 1 falls due."""
    return max(level1(i).due_at for i in incidents) + dt.timedelta(seconds=1)


def fire_first_when_all_due(incidents) -> tuple[str, dt.datetime]:
    """The first incident's task, run once every one of them is due: its outcome."""
    at = all_due(incidents)
    with time_machine.travel(at, tick=False):
        return escalation.timer_fire_due(timer_id=level1(incidents[0]).pk), at


@pytest.mark.django_db
def test_it_fires_every_due_escalation_with_the_first_and_pages_each_once(
    make_playbook, broker_calls
):
    incidents = open_incidents(make_playbook(delays=(60, 120, 180)), 6)
    later = Incident.objects.get(pk=incidents[-1].pk)
    # The last one falls due later than the rest: not in this batch.
    Timer.objects.filter(pk=level1(later).pk).update(due_at=later.opened_at + dt.timedelta(hours=1))
    mail.outbox.clear()
    at = max(level1(i).due_at for i in incidents[:-1]) + dt.timedelta(seconds=1)
    with time_machine.travel(at, tick=False):
        result = escalation.timer_fire_due(timer_id=level1(incidents[2]).pk)
        again = [escalation.timer_fire_due(timer_id=level1(i).pk) for i in incidents[:-1]]

    assert result.endswith("paged 1 (level 1); 5 fired in its batch"), result
    assert all(r.endswith("not pending") for r in again), again
    assert sorted(m.extra_headers["X-CrisisDesk-Incident"] for m in mail.outbox) == sorted(
        i.reference for i in incidents[:-1]
    )
    assert set(pages().values_list("status", flat=True)) == {"sent"}
    assert level1(later).state == "pending"
    for incident in incidents[:-1]:
        incident.refresh_from_db()
        assert incident.first_paged_at == at
        timer = level1(incident)
        assert (timer.state, timer.fired_at, timer.outcome) == ("fired", at, "paged 1 (level 1)")
        entry = TimelineEntry.objects.get(incident=incident, kind="escalation")
        assert entry.data["timer_id"] == timer.pk and entry.data["lateness_ms"] >= 1000
        # The next level is written, due from this level's due time.
        level2 = Timer.objects.get(incident=incident, kind="escalation", level=2)
        assert (level2.state, level2.due_at) == (
            "pending",
            timer.due_at + dt.timedelta(seconds=120),
        )


@pytest.mark.django_db
def test_a_batch_costs_the_same_queries_whatever_its_size(make_playbook, broker_calls, monkeypatch):
    """Deciding and writing a batch is a fixed number of statements (delivery is per
    row by design: each page is marked sent on its own as soon as the server took it)."""
    monkeypatch.setattr(notify, "deliver_now", lambda ids: None)
    playbook = make_playbook(delays=(60, 120, 180))
    counts = []
    for size in (2, 12):
        incidents = open_incidents(playbook, size)
        at = all_due(incidents)
        with time_machine.travel(at, tick=False), CaptureQueriesContext(connection) as queries:
            result = escalation.timer_fire_due(timer_id=level1(incidents[0]).pk)
        assert result.endswith(f"{size} fired in its batch"), result
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


@pytest.mark.django_db
def test_one_timer_that_cannot_be_fired_is_left_pending_and_the_rest_of_its_batch_pages(
    make_playbook, broker_calls, monkeypatch
):
    incidents = open_incidents(make_playbook(delays=(60, 120, 180)), 4)
    bad = incidents[1]
    real = notify.escalation_notifications

    def broken_for_one(*, incident, **kwargs):
        if incident.pk == bad.pk:
            raise KeyError("a policy level without its target")
        return real(incident=incident, **kwargs)

    monkeypatch.setattr(notify, "escalation_notifications", broken_for_one)
    mail.outbox.clear()
    result, at = fire_first_when_all_due(incidents)

    assert result.endswith("3 fired in its batch"), result
    assert sorted(m.extra_headers["X-CrisisDesk-Incident"] for m in mail.outbox) == sorted(
        i.reference for i in incidents if i.pk != bad.pk
    )
    timer = level1(bad)
    assert (timer.state, timer.fired_at) == ("pending", None)
    assert not TimelineEntry.objects.filter(incident=bad, kind="escalation").exists()
    assert not Timer.objects.filter(incident=bad, kind="escalation", level=2).exists()

    # Once the fault is gone, its next fire (its own message, or the sweep's) pages it.
    monkeypatch.setattr(notify, "escalation_notifications", real)
    with time_machine.travel(at + dt.timedelta(seconds=5), tick=False):
        assert "paged 1 (level 1)" in escalation.timer_fire_due(timer_id=timer.pk)
    assert Counter(m.extra_headers["X-CrisisDesk-Incident"] for m in mail.outbox) == {
        i.reference: 1 for i in incidents
    }


@pytest.mark.django_db
def test_a_batch_whose_writes_fail_fires_its_timers_one_by_one(
    make_playbook, broker_calls, monkeypatch
):
    incidents = open_incidents(make_playbook(delays=(60, 120, 180)), 3)
    real = notify.notifications_write
    calls = []

    def fails_once(rows):
        calls.append(len(rows))
        if len(calls) == 1:
            raise RuntimeError("the database went away mid-batch")
        return real(rows)

    monkeypatch.setattr(notify, "notifications_write", fails_once)
    mail.outbox.clear()
    result, _at = fire_first_when_all_due(incidents)

    assert result.endswith("batch of 3 failed, fired one by one"), result
    assert calls == [3, 1, 1, 1]  # the batch, then each timer in its own transaction
    assert Counter(m.extra_headers["X-CrisisDesk-Incident"] for m in mail.outbox) == {
        i.reference: 1 for i in incidents
    }
    assert set(
        Timer.objects.filter(kind="escalation", level=1).values_list("state", flat=True)
    ) == {"fired"}
    assert TimelineEntry.objects.filter(kind="escalation").count() == 3


@pytest.mark.django_db
def test_pages_delivered_with_the_batch_never_wait_for_the_mass_send_rate_limit(
    make_playbook, broker_calls, monkeypatch
):
    turns = []
    monkeypatch.setattr(ratelimit, "wait_turn", lambda: turns.append(1))
    incidents = open_incidents(make_playbook(delays=(60, 120, 180)), 3)
    fire_first_when_all_due(incidents)
    assert set(pages().values_list("status", flat=True)) == {"sent"} and pages().count() == 3
    assert turns == []


@pytest.mark.django_db(transaction=True)
def test_an_incident_locked_elsewhere_is_left_out_of_the_batch_and_fired_once_it_is_free(
    make_playbook, broker_calls
):
    """SKIP LOCKED: the batch pages the free incidents at once, never waiting behind a
    lock; the task's own timer, whose incident was held, fires when the holder commits."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite's writers queue on one database lock")
    incidents = open_incidents(make_playbook(delays=(60, 120, 180)), 3)
    held, free = incidents[0], incidents[1:]
    mail.outbox.clear()
    locked, release = threading.Event(), threading.Event()

    def holder():
        try:
            with transaction.atomic():
                Incident.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert locked.wait(timeout=10)
    at = all_due(incidents)
    results = []

    def fire():
        try:
            with time_machine.travel(at, tick=False):
                results.append(escalation.timer_fire_due(timer_id=level1(held).pk))
        finally:
            connection.close()

    firing = threading.Thread(target=fire)
    firing.start()
    try:
        # The free incidents are paged while the held one is still locked.
        assert eventually(lambda: pages().filter(status="sent").count() == 2, timeout=30)
        assert set(pages().values_list("incident_id", flat=True)) == {i.pk for i in free}
        assert level1(held).state == "pending"
    finally:
        release.set()
        thread.join(timeout=30)
    firing.join(timeout=30)
    assert results and results[0].endswith("paged 1 (level 1); 2 fired in its batch"), results
    assert Counter(pages().values_list("incident_id", flat=True)) == {i.pk: 1 for i in incidents}


# ------------------------------------------------------------------ real parts


def due_together(incidents, *, seconds: float) -> None:
    """Make the incidents' level 1 due at one instant, not yet sent to the broker: the
    sweep sends them, and the first task to run finds them all due (one batch)."""
    from django.utils import timezone

    Timer.objects.filter(incident__in=incidents, kind="escalation", level=1).update(
        due_at=timezone.now() + dt.timedelta(seconds=seconds), enqueued_at=None
    )


def one_page_each(smtp, incidents) -> None:
    """Every incident's page arrived, and never two different e-mails for one page
    (a resend after a kill carries the same Message-ID)."""
    by_key = dict(pages().values_list("message_id", "dedupe_key"))
    ids = set(smtp.message_ids())
    assert ids == set(by_key)
    assert Counter(by_key[i] for i in ids) == dict.fromkeys(by_key.values(), 1)
    assert {r.message["X-CrisisDesk-Incident"] for r in smtp.received} == {
        i.reference for i in incidents
    }


@pytest.mark.services
def test_a_worker_killed_while_delivering_its_batch_loses_no_page(
    make_playbook, worker_factory, beat_factory
):
    from tests.realstack import SmtpSink

    smtp = SmtpSink(hold_replies=True).start()
    try:
        incidents = open_incidents(make_playbook(delays=(3600, 3600, 3600)), 8)
        due_together(incidents, seconds=3)
        victim = worker_factory(smtp=smtp, name="victim")
        beat_factory()
        # The server holds its reply to the batch's first page: the batch is mid-delivery.
        assert smtp.data_arrived.wait(timeout=60), victim.log()
        assert eventually(lambda: pages().filter(status="sending").count() >= 2, timeout=10)
        victim.kill()
        smtp.release.set()
        fired = Timer.objects.filter(kind="escalation", level=1, state="fired")
        assert fired.count() == 8
        # Fired in at most two transactions (the worker's two processes), not eight.
        assert len(set(fired.values_list("fired_at", flat=True))) <= 2
        worker_factory(smtp=smtp, name="replacement")
        # The lease (EMAIL_TIMEOUT 5 s + 10 s) runs out, then a sweep queues them again.
        assert eventually(lambda: pages().filter(status="sent").count() == 8, timeout=90), list(
            pages().values_list("status", "attempts")
        )
        smtp.assert_nothing_more(len(smtp.received))
    finally:
        smtp.stop()
    one_page_each(smtp, incidents)


@pytest.mark.services
def test_a_worker_killed_inside_its_batch_transaction_loses_no_page(
    make_playbook, worker_factory, beat_factory, smtp_server
):
    """Killed before the batch commits: every claim rolls back with it, and the
    sweep sends the timers again; a replacement pages each incident once."""
    if connection.vendor != "postgresql":
        pytest.skip("holding a batch mid-transaction takes a PostgreSQL table lock")
    incidents = open_incidents(make_playbook(delays=(3600, 3600, 3600)), 6)
    due_together(incidents, seconds=3)
    locked, release = threading.Event(), threading.Event()

    def block_timeline_inserts():
        # The batch claims its timers, then waits here to write its timeline entries.
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("LOCK TABLE incidents_timelineentry IN EXCLUSIVE MODE")
                locked.set()
                release.wait(timeout=120)
        finally:
            connection.close()

    blocker = threading.Thread(target=block_timeline_inserts)
    blocker.start()
    try:
        assert locked.wait(timeout=10)
        victim = worker_factory(smtp=smtp_server, name="victim")
        beat_factory()
        claims = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )

        def waiting() -> bool:
            with connection.cursor() as cursor:
                cursor.execute(claims + " AND query ILIKE '%%incidents_timelineentry%%'")
                return cursor.fetchone()[0] >= 1

        assert eventually(waiting, timeout=60), victim.log()
        victim.kill()
    finally:
        release.set()
        blocker.join(timeout=30)
    assert not Timer.objects.filter(kind="escalation", level=1, state="fired").exists()
    worker_factory(smtp=smtp_server, name="replacement")
    received = smtp_server.wait_for(6, timeout=60)
    assert len(received) == 6
    smtp_server.assert_nothing_more(6)
    one_page_each(smtp_server, incidents)
    assert TimelineEntry.objects.filter(kind="escalation").count() == 6


def test_timers_falling_due_together_go_to_the_broker_as_one_message_each_group():
    from incidents import timers

    now = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    ms = dt.timedelta(milliseconds=1)
    due = [
        (1, now - 5000 * ms),  # overdue: run now, with the other overdue one
        (2, now - 1 * ms),
        (3, now + 100 * ms),
        (4, now + 140 * ms),  # 40 ms after 3: together
        (5, now + 151 * ms),  # 51 ms after 3: a group of its own
        (6, now + 1000 * ms),
    ]
    groups = timers.timer_groups(due, now=now)
    assert [[pk for pk, _at in g] for g in groups] == [[1, 2], [3, 4], [5], [6]]
    # Each group runs when its last timer is due, never before any of its timers.
    assert [g[-1][1] for g in groups] == [now, now + 140 * ms, now + 151 * ms, now + 1000 * ms]
    # A storm: all due at the same instant, split at GROUP_MAX.
    storm = [(pk, now + 10 * ms) for pk in range(1, 2 * timers.GROUP_MAX + 2)]
    sizes = [len(g) for g in timers.timer_groups(storm, now=now)]
    assert sizes == [timers.GROUP_MAX, timers.GROUP_MAX, 1]


@pytest.mark.django_db
def test_a_message_of_several_timers_fires_each_once_whatever_their_kind(
    make_playbook, broker_calls
):
    from incidents import timers
    from incidents.tasks import fire_timer

    incidents = open_incidents(make_playbook(delays=(60, 120, 180)), 3)
    ids = [level1(i).pk for i in incidents]
    task_due = Timer.objects.filter(incident=incidents[0], kind="task_due").order_by("due_at")[0]
    at = max(all_due(incidents), task_due.due_at + dt.timedelta(seconds=1))
    mail.outbox.clear()
    with time_machine.travel(at, tick=False):
        broker_calls.clear()
        timers.send_timers(
            [(pk, level1(i).due_at) for pk, i in zip(ids, incidents, strict=True)]
            + [(task_due.pk, task_due.due_at)],
            now=at,
        )
        fires = [c for c in broker_calls if c[0] == "fire"]
        assert len(fires) == 1 and sorted(fires[0][1]) == sorted([*ids, task_due.pk])
        result = fire_timer(fires[0][1])
        again = fire_timer(fires[0][1])  # the broker delivered it twice: nothing more
    assert "4 timers together" in result and "not pending" in again
    assert set(
        Timer.objects.filter(pk__in=[*ids, task_due.pk]).values_list("state", flat=True)
    ) == {"fired"}
    paged = Counter(n.incident_id for n in pages())
    assert paged == {i.pk: 1 for i in incidents}
    assert Notification.objects.filter(reason="task_due").count() >= 1
