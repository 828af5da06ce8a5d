"""The subscription limits hold exactly under concurrent requests: counted in the
database (``RateCount``), atomic on SQLite and PostgreSQL alike, whatever the cache."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from incidents import subscribers
from incidents.models import Notification, RateCount

THREADS = 12


@pytest.fixture
def site(settings, broker_calls, comms_desk, transactional_db):  # noqa: ARG001
    settings.SITE_URL = "https://status.example.test"
    settings.ALLOWED_HOSTS = ["testserver", "status.example.test"]
    return comms_desk


def _race(posts: list[dict]) -> list[int]:
    """Every post at once, each from its own thread (its own database connection)."""
    start = threading.Barrier(len(posts))
    codes: list[int] = [0] * len(posts)

    def post(i: int) -> None:
        try:
            start.wait()
            codes[i] = (
                Client()
                .post("/status/subscribe/", posts[i]["data"], **posts[i]["meta"])
                .status_code
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(posts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


def test_the_per_client_limit_holds_exactly_under_concurrent_requests(site, settings):
    settings.CRISISDESK_SUBSCRIBE_PER_CLIENT = 5
    posts = [
        {
            "data": {"email": f"r{i}@example.test", "language": "en", "incident": ""},
            "meta": {"REMOTE_ADDR": "198.51.100.9"},
        }
        for i in range(THREADS)
    ]
    codes = _race(posts)
    assert sorted(codes) == [200] * 5 + [429] * (THREADS - 5)
    assert Notification.objects.filter(reason=subscribers.SUBSCRIBE_REASON).count() == 5


def test_the_per_address_limit_holds_exactly_under_concurrent_requests(site, settings):
    settings.CRISISDESK_SUBSCRIBE_PER_ADDRESS = 2
    posts = [
        {
            "data": {"email": "same@example.test", "language": "en", "incident": ""},
            "meta": {"REMOTE_ADDR": f"192.0.2.{i + 1}"},
        }
        for i in range(THREADS)
    ]
    codes = _race(posts)
    assert sorted(codes) == [200, 200] + [429] * (THREADS - 2)
    assert Notification.objects.filter(to_email="same@example.test").count() == 2
    # Nothing in clear: the counts are kept under hashes.
    assert not RateCount.objects.filter(key__contains="same@").exists()


def test_the_count_itself_never_passes_the_limit_under_a_storm(site):
    """The counting alone, from many threads at once: exactly ``limit`` pass."""
    calls, limit = 40, 10
    start = threading.Barrier(calls)
    results: list[bool] = [False] * calls

    def count(i: int) -> None:
        try:
            start.wait()
            results[i] = subscribers._within("status:rl:client:203.0.113.5", limit)
        finally:
            connection.close()

    threads = [threading.Thread(target=count, args=(i,)) for i in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == limit
