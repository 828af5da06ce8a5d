"""API under concurrent clients: open incidents and list incidents, through gunicorn.

Starts gunicorn (the production WSGI server) on PostgreSQL, then runs
``--clients`` threads for ``--seconds``: each loop opens an incident with an
Idempotency-Key (POST /api/v1/incidents/, a playbook with steps, roles and
timers behind it) and lists incidents (GET /api/v1/incidents/?page_size=50).
Prints throughput and latency per operation; the last line is one JSON object.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/api_load.py --clients 8 --seconds 30 --workers 4

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/crisisdesk_bench_api,
created if missing) and CELERY_BROKER_URL (default redis://127.0.0.1:6379/4, flushed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import gunicorn, pct, wait_up  # noqa: E402 - after the path is set


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    p.add_argument("--preload", type=int, default=2000, help="incidents in the table before")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crisisdesk_bench_api")
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/4")
    os.environ["CRISISDESK_DATA_DIR"] = tempfile.mkdtemp(prefix="crisisdesk-bench-api-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "crisisdesk.settings"
    os.environ["LOG_LEVEL"] = "WARNING"
    from bench.escalation_latency import ensure_database

    ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from incidents.models import Incident
    from playbooks.models import Playbook
    from playbooks.seed import demo_seed

    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    call_command("migrate", verbosity=0, interactive=False)  # groups, after the flush
    demo_seed()
    from incidents.permissions import ensure_groups
    from tests.factories import UserFactory

    ensure_groups()
    user = UserFactory(username="bench")
    user.groups.add(Group.objects.get(name="Crisis managers"))
    token = Token.objects.create(user=user).key
    playbook = Playbook.objects.filter(key="service-outage", status="published").get()
    Incident.objects.bulk_create(
        Incident(reference=f"INC-2000-{i:05d}", title=f"Earlier incident {i}", category="other")
        for i in range(args.preload)
    )

    server, base = gunicorn(workers=args.workers)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    wait_up(f"{base}/api/v1/incidents/?page_size=1", headers=headers)

    timings: dict[str, list[float]] = {"open": [], "list": []}
    errors: dict[str, int] = {"open": 0, "list": 0}
    lock = threading.Lock()
    stop = time.monotonic() + args.seconds
    body = json.dumps({"title": "Load: checkout down", "severity": 2, "playbook": playbook.pk})

    def call(kind: str, request: urllib.request.Request) -> None:
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                ok = response.status in (200, 201)
        except OSError:
            ok = False
        elapsed = (time.perf_counter() - start) * 1000
        with lock:
            if ok:
                timings[kind].append(elapsed)
            else:
                errors[kind] += 1

    def client() -> None:
        while time.monotonic() < stop:
            call(
                "open",
                urllib.request.Request(
                    f"{base}/api/v1/incidents/",
                    data=body.encode(),
                    headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
                    method="POST",
                ),
            )
            call(
                "list",
                urllib.request.Request(f"{base}/api/v1/incidents/?page_size=50", headers=headers),
            )

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    server.terminate()
    server.wait(timeout=20)

    result = {
        "clients": args.clients,
        "gunicorn_workers": args.workers,
        "seconds": round(wall, 1),
        "incidents_before": args.preload,
        **{
            f"{kind}_{name}": value
            for kind, values in timings.items()
            for name, value in (
                ("count", len(values)),
                ("per_s", round(len(values) / wall, 1)),
                ("p50_ms", round(statistics.median(values), 1) if values else None),
                ("p99_ms", pct(values, 0.99)),
                ("errors", errors[kind]),
            )
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
