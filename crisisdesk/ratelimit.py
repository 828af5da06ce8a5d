"""A send-rate limit per SMTP server, shared by every worker.

``CRISISDESK_SMTP_RATE_PER_SECOND`` (0: unlimited) e-mails per second to one SMTP
server (host and port). Each send reserves the next free slot of the server's
schedule and waits until it comes (GCRA: the bucket is one timestamp, "the next
slot is free at"; a burst of one). With a Redis broker the timestamp lives in
Redis, updated by one Lua script (atomic), so every worker on every machine
shares it; with the filesystem broker there is no Redis and each worker process
keeps its own (the limit is then per process).

Only a message's rows wait here (a mass send, incidents/notify.py ``chunk_deliver``):
a page to an on-call person, delivered by the same function, is never held back
behind a statement to 100,000 customers.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

log = logging.getLogger(__name__)

_RESERVE = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
if free < now then free = now end
redis.call('SET', KEYS[1], tostring(free + interval), 'PX', math.ceil(interval / 1000) + 60000)
return free - now
"""

_local: dict[str, float] = {}
_lock = threading.Lock()
_script = None


def _key() -> str:
    host = getattr(settings, "EMAIL_HOST", "") or "local"
    port = getattr(settings, "EMAIL_PORT", "")
    return f"crisisdesk:smtp-rate:{host}:{port}"


def _redis_script():
    global _script
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")):
        return None
    if _script is None:
        import redis

        _script = redis.Redis.from_url(url, socket_timeout=5).register_script(_RESERVE)
    return _script


def reserve(*, rate: int | None = None, now: float | None = None) -> float:
    """Reserve the next send slot of this SMTP server; how many seconds to wait for it."""
    rate = settings.CRISISDESK_SMTP_RATE_PER_SECOND if rate is None else rate
    if rate <= 0:
        return 0.0
    now = time.time() if now is None else now
    interval_us = 1_000_000 // rate
    script = _redis_script()
    if script is not None:
        try:
            waited = script(keys=[_key()], args=[int(now * 1_000_000), interval_us])
            return max(0.0, int(waited) / 1_000_000)
        except Exception:  # noqa: BLE001 - Redis is down: hold this process to the rate
            log.warning("the shared SMTP rate limit is unreachable; limiting per process")
    with _lock:
        free = max(_local.get(_key(), 0.0), now)
        _local[_key()] = free + interval_us / 1_000_000
    return free - now


def wait_turn() -> None:
    """Wait until this process may send its next e-mail to the SMTP server."""
    delay = reserve()
    if delay > 0:
        time.sleep(delay)
