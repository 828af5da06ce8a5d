"""The SMTP send-rate limit: slots one interval apart, shared through Redis across
processes when the broker is Redis, per process otherwise."""

from __future__ import annotations

import os

import pytest

from crisisdesk import ratelimit
from tests.conftest import need


@pytest.fixture
def local(settings, monkeypatch):
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "smtp.example.test", 25
    monkeypatch.setattr(ratelimit, "_local", {})
    monkeypatch.setattr(ratelimit, "_script", None)


def test_unlimited_never_waits(local, settings):
    settings.CRISISDESK_SMTP_RATE_PER_SECOND = 0
    assert [ratelimit.reserve(now=100.0) for _ in range(50)] == [0.0] * 50


def test_each_send_gets_the_next_slot_one_interval_later(local, settings):
    settings.CRISISDESK_SMTP_RATE_PER_SECOND = 4
    waits = [ratelimit.reserve(now=100.0) for _ in range(4)]
    assert waits == [0.0, 0.25, 0.5, 0.75]
    # Time that passed unused is not saved up: no burst after a pause.
    assert ratelimit.reserve(now=200.0) == 0.0
    assert ratelimit.reserve(now=200.0) == 0.25


def test_each_smtp_server_has_its_own_bucket(local, settings):
    settings.CRISISDESK_SMTP_RATE_PER_SECOND = 2
    assert ratelimit.reserve(now=10.0) == 0.0
    settings.EMAIL_HOST = "other.example.test"
    assert ratelimit.reserve(now=10.0) == 0.0


@pytest.mark.services
def test_workers_share_the_bucket_through_redis(settings, monkeypatch):
    import redis

    # The broker's Redis when it is one; otherwise the machine's, on a database of
    # this test's own: the shared bucket is tried in both suites' runs.
    url = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis://"):
        url = "redis://127.0.0.1:6379/10"
    try:
        reachable = bool(redis.Redis.from_url(url, socket_timeout=2).ping())
    except redis.RedisError:
        reachable = False
    need(reachable, f"Redis at {url} (the shared bucket)")

    settings.CELERY_BROKER_URL = url
    settings.EMAIL_HOST, settings.EMAIL_PORT = f"rate-test-{os.getpid()}", 25
    settings.CRISISDESK_SMTP_RATE_PER_SECOND = 10
    monkeypatch.setattr(ratelimit, "_local", {})
    monkeypatch.setattr(ratelimit, "_script", None)
    redis.Redis.from_url(url).delete(ratelimit._key())
    first = ratelimit.reserve(now=1000.0)
    # Another process: no script or local state of its own, the same Redis key.
    monkeypatch.setattr(ratelimit, "_script", None)
    monkeypatch.setattr(ratelimit, "_local", {})
    second = ratelimit.reserve(now=1000.0)
    assert (first, second) == (0.0, pytest.approx(0.1))
    assert ratelimit._local == {}  # it came from Redis, not this process
    redis.Redis.from_url(url).delete(ratelimit._key())
