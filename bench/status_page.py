"""The public status page under a storm of readers: /status/ from the cache, through gunicorn.

Makes a desk with five public incidents, 40 published statements (each in English,
Hebrew, Hungarian and Greek, some corrected), a confidential incident and a drill,
starts gunicorn (the production WSGI server), warms the page once per language,
then runs ``--clients`` threads for ``--seconds``, each asking for /status/ with
one of the four languages in Accept-Language, as browsers do. Every answer is
checked (200 and the newest statement's text in the right language). Target: 500
requests per second with p99 under 50 ms on a 2-core machine. The last line is
one JSON object (``per_second``, ``p50_ms``, ``p99_ms``, ``errors``...).

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/status_page.py --clients 16 --seconds 20 --workers 3

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/crisisdesk_bench_status,
created if missing; a sqlite:/// URL works too) and CACHE_URL (default: none, so the
file cache in the data dir that a local desk uses; redis://127.0.0.1:6379/2 for Redis).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import django_on_empty_database  # noqa: E402
from bench.load import gunicorn, pct  # noqa: E402 - after the path is set

LANGUAGES = ("en", "he", "hu", "el")
WORDS = {
    "en": "Update {i}: deliveries run; tracking is behind.",
    "he": "עדכון {i}: המשלוחים פועלים; המעקב מאחר.",
    "hu": "{i}. frissítés: a kézbesítés megy, a követés késik.",
    "el": "Ενημέρωση {i}: οι παραδόσεις συνεχίζονται· η παρακολούθηση καθυστερεί.",
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    p.add_argument("--statements", type=int, default=40)
    return p.parse_args()


def build_desk(statements: int) -> str:
    """The incidents and statements; returns the newest statement's number."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from incidents import services
    from incidents.models import Message
    from playbooks.models import StakeholderGroup

    author = get_user_model().objects.create_user("bench", "bench@example.test")
    customers = StakeholderGroup.objects.create(
        slug="customers", name="Customers", kind="customers", public=True
    )
    incidents = [
        services.incident_open(title=f"Public incident {i}: ügyfél · πελάτες · לקוחות")
        for i in range(5)
    ]
    services.incident_open(title="Secret board matter", confidential=True)
    services.incident_open(title="Drill: tracking down", drill=True)
    start = timezone.now() - timedelta(hours=6)
    previous: dict[int, Message] = {}
    for i in range(statements):
        incident = incidents[i % len(incidents)]
        at = start + timedelta(minutes=5 * i)
        message = Message.objects.create(
            incident=incident,
            audience=customers,
            channel="website",
            language="en",
            body=WORDS["en"].format(i=i),
            translations={
                code: {"subject": "", "body": WORDS[code].format(i=i)}
                for code in LANGUAGES
                if code != "en"
            },
            status="published",
            published_where="/status/",
            author=author,
            approver=author,
            approved_at=at,
            sent_at=at,
            # Every fourth statement corrects the incident's previous one.
            corrects=previous.get(incident.pk) if i % 4 == 3 else None,
        )
        previous[incident.pk] = message
    return str(statements - 1)


def main() -> None:
    args = parse_args()
    django_on_empty_database(database="crisisdesk_bench_status", prefix="crisisdesk-bench-st-")
    newest = build_desk(args.statements)
    from incidents import statuscache

    statuscache.status_changed()  # outside a transaction: at once

    server, base = gunicorn(
        workers=args.workers, extra=["--backlog", "2048"], env={"ALLOWED_HOSTS": "127.0.0.1"}
    )
    port = int(base.rsplit(":", 1)[1])

    def get(language: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", "/status/", headers={"Accept-Language": language})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    expected = {code: WORDS[code].format(i=newest).encode() for code in LANGUAGES}
    for _ in range(150):
        try:
            get("en")
            break
        except OSError:
            time.sleep(0.2)
    for code in LANGUAGES:  # warm: one rendering per language, then all from the cache
        status, body = get(code)
        assert status == 200 and expected[code] in body, (code, status)
        assert b"Secret board matter" not in body and b"Drill: tracking" not in body

    timings: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + args.seconds

    def client(n: int) -> None:
        nonlocal errors
        mine: list[float] = []
        failed = 0
        i = n
        while time.monotonic() < stop:
            code = LANGUAGES[i % len(LANGUAGES)]
            i += 1
            started = time.perf_counter()
            try:
                status, body = get(code)
                ok = status == 200 and expected[code] in body
            except OSError:
                ok = False
            elapsed = (time.perf_counter() - started) * 1000
            if ok:
                mine.append(elapsed)
            else:
                failed += 1
        with lock:
            timings.extend(mine)
            errors += failed

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - began
    server.terminate()
    server.wait(timeout=20)

    print(
        json.dumps(
            {
                "path": "/status/",
                "clients": args.clients,
                "gunicorn_workers": args.workers,
                "statements": args.statements,
                "cache": "redis" if os.environ.get("CACHE_URL") else "file",
                "database": os.environ["DATABASE_URL"].split(":", 1)[0],
                "cpus": os.cpu_count(),
                "seconds": round(wall, 1),
                "requests": len(timings),
                "per_second": round(len(timings) / wall, 1),
                "p50_ms": pct(timings, 0.50),
                "p95_ms": pct(timings, 0.95),
                "p99_ms": pct(timings, 0.99),
                "errors": errors,
            }
        )
    )


if __name__ == "__main__":
    main()
