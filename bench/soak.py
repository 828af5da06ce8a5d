"""A soak: the whole desk under steady use for --minutes, its memory watched.

Real parts: PostgreSQL, Redis, gunicorn (the API), a Celery worker and beat, and an
aiosmtpd server that counts what it receives. ``--clients`` threads each loop, one
cycle every ``--pace`` seconds, through the API as a crisis manager would:

1. list incidents, open one (with an Idempotency-Key) on a playbook whose level 1
   pages the on-call person after 20 s and level 2 after 60 s, read it back;
2. draft a statement to a small audience, submit, approve and send it (e-mailed to
   every contact by the worker);
3. acknowledge the incidents older than 40 s (so some have paged level 1 and none
   level 2), resolve those older than 90 s, close those resolved;
4. read the public status page.

Every 10 s the resident memory (VmRSS) of gunicorn (master and workers) and of the
Celery worker (main process and pool) is sampled; after a warm-up (a tenth of the
run, at least 60 s, at most 5 minutes) the least-squares slope of each is reported
in MB per hour: flat memory is a slope near 0. The worker's main process is also
reported alone (``worker_main_*``: CRISISDESK_WORKER_MAX_MEMORY_MB replaces pool
processes only), with its slope over the second half of the run beside the whole
(does it level off?) and its size every tenth of the run. Any HTTP status other
than the one expected, or a transport error, counts as an error.

Load that varies: ``--surge-clients N`` adds N clients that open incidents only
during surges of ``--surge-minutes`` starting every ``--surge-every`` minutes (they
still acknowledge, resolve and close what they opened in between). The surges are
alike, so a process that keeps the size of its busiest moment rises in the first
and stays level after the later ones, where one that leaks keeps rising:
``worker_main_rss_mb_before_each_surge`` is the main process's size just before
each surge and at the end. ``--warm-up-minutes`` sets the warm-up instead.

SIGINT or SIGTERM (Ctrl-C, ``timeout``, ``kill -INT <pid>``) ends the run before its
time and still prints the report, for the minutes run (``stopped_early`` says so). The
desk's processes run in process groups of their own, so a Ctrl-C in the terminal
reaches the soak alone, which stops them after its last requests.

Two soaks at once need a database and a Redis database each (DATABASE_URL,
CELERY_BROKER_URL): a run empties its own first.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/soak.py --minutes 30

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/crisisdesk_bench_soak,
created if missing) and CELERY_BROKER_URL (default redis://127.0.0.1:6379/5, flushed).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import gunicorn, pct, rss_mb, wait_up  # noqa: E402 - after the path is set

SAMPLE_SECONDS = 10
# What a client does to each incident it opened, in order, seconds after opening.
STEPS = [
    (40, "acknowledge", None),
    (90, "resolve", {"summary": "Fixed."}),
    (130, "close", None),
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--pace", type=float, default=3.0, help="seconds between a client's cycles")
    p.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    p.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    p.add_argument("--contacts", type=int, default=20, help="contacts of the audience")
    p.add_argument("--sweep-seconds", type=int, default=5)
    p.add_argument("--surge-clients", type=int, default=0, help="extra clients during surges")
    p.add_argument("--surge-every", type=float, default=20.0, help="minutes between surge starts")
    p.add_argument("--surge-minutes", type=float, default=5.0, help="how long a surge lasts")
    p.add_argument("--warm-up-minutes", type=float, default=None, help="instead of the automatic")
    args = p.parse_args()
    if args.surge_clients and not 0 < args.surge_minutes < args.surge_every:
        p.error("--surge-minutes must be more than 0 and less than --surge-every")
    return args


def surge_starts(args: argparse.Namespace) -> list[float]:
    """Seconds into the run at which each surge begins (none without surge clients)."""
    if not args.surge_clients:
        return []
    starts, k = [], 1
    while k * args.surge_every + args.surge_minutes <= args.minutes:
        starts.append(k * args.surge_every * 60)
        k += 1
    return starts


def slope_per_hour(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) pairs, in MB per hour."""
    if len(samples) < 3:
        return None
    xs, ys = [s[0] for s in samples], [s[1] for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx * 3600, 1)


def set_up(contacts: int) -> dict:
    """A crisis manager with a token, an on-call person, a paging playbook, an audience."""
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token

    from bench.common import paging_playbook
    from incidents.permissions import ensure_groups
    from playbooks.models import Stakeholder, StakeholderGroup
    from tests.factories import UserFactory

    ensure_groups()
    manager = UserFactory(username="soak-manager")
    manager.groups.add(Group.objects.get(name="Crisis managers"))
    oncall = UserFactory(username="soak-oncall", email="oncall@example.test")
    playbook, role = paging_playbook(delays=(20, 60), oncall=oncall)
    role.holders.add(manager)  # the crisis manager may approve their own statement
    audience = StakeholderGroup.objects.create(slug="customers", name="Customers")
    Stakeholder.objects.bulk_create(
        Stakeholder(group=audience, name=f"Customer {i}", email=f"c{i}@example.test")
        for i in range(contacts)
    )
    return {
        "token": Token.objects.create(user=manager).key,
        "playbook": playbook.pk,
        "audience": audience.pk,
    }


class Client:
    """One API user: counts requests and errors, keeps latencies."""

    def __init__(self, base: str, token: str, tally: dict, lock: threading.Lock):
        self.base, self.lock, self.tally = base, lock, tally
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None, *, expect=(200,), auth=True):
        request = urllib.request.Request(
            self.base + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                **(self.headers if auth else {}),
                **({"Idempotency-Key": str(uuid.uuid4())} if path == "/api/v1/incidents/" else {}),
            },
        )
        start = time.perf_counter()
        status, data = 0, None
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except OSError:
            raw = b""
        elapsed = (time.perf_counter() - start) * 1000
        ok = status in expect
        if ok and raw and path.startswith("/api/"):
            data = json.loads(raw)
        with self.lock:
            self.tally["requests"] += 1
            self.tally["timings"].append(elapsed)
            if not ok:
                self.tally["errors"] += 1
                if len(self.tally["error_samples"]) < 10:
                    self.tally["error_samples"].append([method, path, status, raw[:200].decode()])
        return data


def open_and_announce(client: Client, ids: dict, *, playbook: int, audience: int, n: int) -> None:
    """List incidents, open one and read it back, then draft, approve and send a statement."""
    client.call("GET", "/api/v1/incidents/?page_size=20")
    opened = client.call(
        "POST",
        "/api/v1/incidents/",
        {"title": f"Soak incident {n}", "severity": 3, "playbook": playbook},
        expect=(201,),
    )
    if opened:
        ids[opened["id"]] = (time.monotonic(), 0)
        client.call("GET", f"/api/v1/incidents/{opened['id']}/")
        draft = client.call(
            "POST",
            "/api/v1/messages/",
            {
                "incident": opened["id"],
                "audience": audience,
                "channel": "email",
                "language": "en",
                "subject": f"Update {n}",
                "body": f"We are looking into it (update {n}).",
            },
            expect=(201,),
        )
        if draft:
            client.call("POST", f"/api/v1/messages/{draft['id']}/submit/")
            client.call(
                "POST",
                f"/api/v1/messages/{draft['id']}/approve/",
                {"approve_own": True, "accept_boilerplate": True},
            )
            client.call("POST", f"/api/v1/messages/{draft['id']}/send/")


def cycle(client: Client, ids: dict, *, playbook: int, audience: int, n: int, opens=True) -> None:
    """One client's round; with ``opens`` false it only moves its incidents on."""
    if opens:
        open_and_announce(client, ids, playbook=playbook, audience=audience, n=n)
    now = time.monotonic()
    for pk, (at, done) in list(ids.items()):  # each step once, in order, when due
        step = next((s for s in STEPS[done:] if now - at > s[0]), None)
        if step is None:
            continue
        _after, path, body = step
        client.call("POST", f"/api/v1/incidents/{pk}/{path}/", body)
        ids[pk] = (at, STEPS.index(step) + 1)
        if path == "close":
            ids.pop(pk)
    if opens:
        client.call("GET", "/status/", auth=False)


def main() -> None:
    args = parse_args()
    # SIGINT or SIGTERM ends the run early and still prints its report (for the time run).
    halt = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: halt.set())
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/5")
    os.environ["CRISISDESK_SWEEP_SECONDS"] = str(args.sweep_seconds)
    os.environ.setdefault("DEBUG", "false")  # as in production: no SQL kept per query
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
    from bench.common import django_on_empty_database

    django_on_empty_database(database="crisisdesk_bench_soak", prefix="crisisdesk-bench-soak-")
    import redis
    from django.conf import settings
    from django.db import connection

    from tests.realstack import SmtpSink, make_beat, make_worker

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    setup = set_up(args.contacts)
    connection.close()
    data_dir = Path(tempfile.mkdtemp(prefix="crisisdesk-soak-"))

    smtp = SmtpSink(ignore_reasons=frozenset()).start()
    worker = make_worker(data_dir, smtp=smtp, concurrency=args.concurrency)
    worker.env["LOG_LEVEL"] = "WARNING"
    worker.start()
    worker.wait_ready()
    beat = make_beat(data_dir, extra_env={"CRISISDESK_SWEEP_SECONDS": str(args.sweep_seconds)})
    beat.start()
    server, base = gunicorn(workers=args.web_workers, own_session=True)
    wait_up(f"{base}/healthz")

    tally = {"requests": 0, "errors": 0, "timings": [], "error_samples": []}
    lock = threading.Lock()
    seconds = args.minutes * 60
    started = time.monotonic()
    stop = started + seconds

    def running() -> bool:
        return time.monotonic() < stop and not halt.is_set()

    surges = surge_starts(args)

    def surging(at: float) -> bool:
        return any(s <= at - started < s + args.surge_minutes * 60 for s in surges)

    def run(n: int, surge: bool = False) -> None:
        client, ids, i = Client(base, setup["token"], tally, lock), {}, 0
        while running():
            began = time.monotonic()
            opens = not surge or surging(began)
            if opens or ids:
                i += 1
                cycle(
                    client,
                    ids,
                    playbook=setup["playbook"],
                    audience=setup["audience"],
                    n=i,
                    opens=opens,
                )
            halt.wait(max(0.0, args.pace - (time.monotonic() - began)))

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(args.clients)]
    threads += [
        threading.Thread(target=run, args=(args.clients + n, True), daemon=True)
        for n in range(args.surge_clients)
    ]
    for t in threads:
        t.start()
    web: list[tuple[float, float]] = []
    work: list[tuple[float, float]] = []
    main_rss: list[tuple[float, float]] = []
    loads: list[float] = []
    while running():
        t = time.monotonic() - started
        web.append((t, rss_mb(server.pid)))
        work.append((t, rss_mb(worker.popen.pid)))
        main_rss.append((t, rss_mb(worker.popen.pid, children=False)))
        loads.append(os.getloadavg()[0])
        halt.wait(min(SAMPLE_SECONDS, max(0.0, stop - time.monotonic())))
    for t in threads:
        t.join(timeout=120)
    wall = time.monotonic() - started
    server.terminate()
    server.wait(timeout=30)
    beat.stop()
    worker.stop()
    smtp.stop()

    warm = (
        args.warm_up_minutes * 60
        if args.warm_up_minutes is not None
        else min(300.0, max(60.0, seconds / 10))
    )
    from incidents.models import Incident, Notification

    result = {
        "minutes": round(wall / 60, 1),
        "stopped_early": halt.is_set(),
        "clients": args.clients,
        "requests": tally["requests"],
        "errors": tally["errors"],
        "p50_ms": pct(tally["timings"], 0.50),
        "p99_ms": pct(tally["timings"], 0.99),
        "incidents_opened": Incident.objects.count(),
        "incidents_closed": Incident.objects.filter(status="closed").count(),
        "emails_received": len(smtp.received) + len(smtp.ignored),
        "outbox_failed": Notification.objects.filter(status="failed").count(),
        "web_rss_mb_first_last": [web[0][1], web[-1][1]] if web else None,
        "worker_rss_mb_first_last": [work[0][1], work[-1][1]] if work else None,
        "web_rss_slope_mb_per_hour": slope_per_hour([s for s in web if s[0] >= warm]),
        "worker_rss_slope_mb_per_hour": slope_per_hour([s for s in work if s[0] >= warm]),
        "worker_main_rss_slope_mb_per_hour": slope_per_hour([s for s in main_rss if s[0] >= warm]),
        "worker_main_rss_slope_second_half_mb_per_hour": slope_per_hour(
            [s for s in main_rss if s[0] >= max(warm, wall / 2)]
        ),
        "worker_main_rss_mb_every_tenth": [
            main_rss[min(len(main_rss) - 1, round(k * (len(main_rss) - 1) / 10))][1]
            for k in range(11)
        ]
        if main_rss
        else None,
        "surge_clients": args.surge_clients,
        "surge_starts_minutes": [round(x / 60, 1) for x in surges],
        "worker_main_rss_mb_before_each_surge": [
            next((m for t, m in reversed(main_rss) if t < at), None)
            for at in [*surges, float("inf")]
        ]
        if surges and main_rss
        else None,
        "warm_up_seconds": warm,
        "load_average_min_max": [round(min(loads), 2), round(max(loads), 2)] if loads else None,
        "error_samples": tally["error_samples"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
