"""Fault tests on real parts. Every case counts the e-mails the SMTP server received:
each due escalation delivered exactly once, none after an acknowledgement that committed
before its timer was claimed, and overdue ones recovered by the sweep."""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from incidents import services
from incidents.models import DeliveryAttempt, Incident, Notification, Timer
from tests.realstack import SmtpSink, eventually

pytestmark = pytest.mark.services


def open_incidents(playbook, n, title="Fault"):
    return [services.incident_open(title=f"{title} {i}", playbook=playbook) for i in range(n)]


def per_incident_level(smtp):
    """(reference, subject's level text) -> how many e-mails."""
    return Counter(
        (r.message["X-CrisisDesk-Incident"], r.message["Subject"].rsplit(" - ", 1)[-1])
        for r in smtp.received
    )


def flush_broker():
    url = settings.CELERY_BROKER_URL
    if url.startswith("redis"):
        import redis

        redis.Redis.from_url(url).flushall()
    else:
        queue = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        shutil.rmtree(queue, ignore_errors=True)
        queue.mkdir(parents=True)


def test_it_recovers_pending_timers_after_the_worker_is_killed(
    make_playbook, worker_factory, beat_factory, smtp_server
):
    playbook = make_playbook(delays=(4, 3600, 3600))
    worker = worker_factory(smtp=smtp_server, name="victim")
    beat_factory()
    incidents = open_incidents(playbook, 5)
    # The worker has taken the ETA messages and holds them in memory: kill it.
    time.sleep(1.5)
    worker.kill()
    replacement = worker_factory(smtp=smtp_server, name="replacement")

    received = smtp_server.wait_for(5, timeout=60)
    assert len(received) == 5, replacement.log()
    time.sleep(4)  # any duplicate would arrive now
    counts = per_incident_level(smtp_server)
    assert sorted(ref for ref, _level in counts) == sorted(i.reference for i in incidents)
    assert set(counts.values()) == {1}


def test_it_recovers_pending_timers_after_the_broker_is_flushed(
    make_playbook, worker_factory, beat_factory, smtp_server
):
    playbook = make_playbook(delays=(5, 3600, 3600))
    worker = worker_factory(smtp=smtp_server, name="before")
    incidents = open_incidents(playbook, 4)
    time.sleep(1)
    # A graceful stop hands unacknowledged messages back to the broker; then the
    # broker loses everything (FLUSHALL on Redis, the queue folder on the filesystem).
    worker.stop()
    flush_broker()
    after = worker_factory(smtp=smtp_server, name="after")
    beat_factory()

    received = smtp_server.wait_for(4, timeout=60)
    assert len(received) == 4, after.log()
    time.sleep(4)
    counts = per_incident_level(smtp_server)
    assert sorted(ref for ref, _l in counts) == sorted(i.reference for i in incidents)
    assert set(counts.values()) == {1}


def test_it_delivers_each_level_once_with_two_workers_and_two_schedulers(
    make_playbook, worker_factory, beat_factory, smtp_server
):
    playbook = make_playbook(delays=(2, 2, 2))
    worker_factory(smtp=smtp_server, name="w1")
    worker_factory(smtp=smtp_server, name="w2")
    beat_factory(name="beat1")
    beat_factory(name="beat2")
    incidents = open_incidents(playbook, 6)

    received = smtp_server.wait_for(18, timeout=60)
    assert len(received) == 18
    time.sleep(5)
    counts = per_incident_level(smtp_server)
    assert len(counts) == 18 and set(counts.values()) == {1}
    assert len(smtp_server.received) == 18
    for incident in incidents:
        assert (
            Timer.objects.filter(incident=incident, kind="escalation", state="fired").count() == 3
        )


def test_it_delivers_everything_once_after_the_smtp_server_was_down_for_30_seconds(
    make_playbook, worker_factory, beat_factory
):
    down = SmtpSink()  # its port is known, nothing listens on it yet
    playbook = make_playbook(delays=(1, 3600, 3600))
    worker_factory(smtp=down, name="w1")
    beat_factory()
    incidents = open_incidents(playbook, 3)

    assert eventually(lambda: DeliveryAttempt.objects.filter(ok=False).count() >= 3, timeout=30), (
        "no failed attempt was recorded while the server was down"
    )
    time.sleep(max(0.0, 31 - (time.time() - incidents[0].opened_at.timestamp())))
    assert Notification.objects.filter(status="sent").count() == 0
    up = SmtpSink(port=down.port).start()
    try:
        # Retries back off up to 30 s and the sweep runs every 5 s; on a loaded
        # two-core CI machine allow three times that.
        received = up.wait_for(3, timeout=90)
        assert len(received) == 3
        time.sleep(5)
        assert len(up.received) == 3
        assert sorted(r.message["X-CrisisDesk-Incident"] for r in up.received) == sorted(
            i.reference for i in incidents
        )
    finally:
        up.stop()
    for n in Notification.objects.all():
        assert n.status == "sent" and n.attempts >= 2
        assert n.delivery_attempts.filter(ok=False).exclude(error="").exists()


def test_an_acknowledgement_racing_a_fire_pages_nobody_after_it_commits(
    team, make_playbook, worker_factory, beat_factory, smtp_server
):
    playbook = make_playbook(delays=(3, 2, 2))
    worker_factory(smtp=smtp_server, name="w1")
    beat_factory()
    incidents = open_incidents(playbook, 12)
    due = Timer.objects.get(incident=incidents[0], kind="escalation", level=1).due_at.timestamp()
    acked_at: dict[int, float] = {}

    def acknowledge(incident: Incident, at: float) -> None:
        try:
            time.sleep(max(0.0, at - time.time()))
            if services.incident_acknowledge(incident=incident, actor=team["people"]["noa"]):
                acked_at[incident.pk] = time.time()
        finally:
            connection.close()

    # Acknowledge each incident within 150 ms either side of its level-1 due time.
    threads = [
        threading.Thread(target=acknowledge, args=(inc, due + random.uniform(-0.15, 0.15)))
        for inc in incidents
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(8)  # levels 2 and 3 would have fired by now

    counts = per_incident_level(smtp_server)
    fired = 0
    for incident in incidents:
        level1 = Timer.objects.get(incident=incident, kind="escalation", level=1)
        mails = sum(v for (ref, _l), v in counts.items() if ref == incident.reference)
        assert incident.pk in acked_at
        if level1.state == "cancelled":
            assert mails == 0, f"{incident.reference} paged after its acknowledgement"
        else:
            assert level1.state == "fired" and mails == 1
            fired += 1
        assert not Timer.objects.filter(incident=incident, level__gte=2, state="fired").exists()
    assert len(smtp_server.received) == fired
