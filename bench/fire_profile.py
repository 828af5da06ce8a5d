"""What one escalation costs the engine: a fire and its delivery, profiled in one process.

bench/escalation_latency.py measures lateness end to end (beat, broker, worker, SMTP
server). This one takes the broker and the worker's scheduling out, to tell the
engine's own work from the rest: on PostgreSQL (and Redis, which the fire's
next-level timer goes to), with an SMTP server in this process, it

- fires ``--fires`` first escalations one at a time, each the only one due (the
  steady case): ``timer_fire_due``, then its delivery (``notify.deliver_now``: claim,
  re-check, render, hand over, mark sent), timed and counted apart;
- fires ``--batches`` batches of ``FIRE_BATCH`` due together (the burst case);
- then does both again under cProfile and names the functions where the time goes
  (the figures are from the runs without it).

Per fire and per delivery: milliseconds (p50, p90) and SQL statements. It also times
a pure-Python loop of 10 million additions, so figures from two machines, or two
nights, can be compared. The last line printed is one JSON object.

    .venv/bin/python bench/fire_profile.py --fires 200 --batches 8

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/crisisdesk_bench_profile,
created if missing; emptied) and CELERY_BROKER_URL (default redis://127.0.0.1:6379/7, flushed).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUR_CODE = ("incidents/", "playbooks/", "crisisdesk/")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fires", type=int, default=200, help="single fires (the steady case)")
    p.add_argument("--batches", type=int, default=8, help="batches of FIRE_BATCH (the burst)")
    p.add_argument("--top", type=int, default=12, help="functions named per profile")
    return p.parse_args()


def loop_seconds() -> float:
    """A pure-Python loop of 10 million additions: how fast this machine's cores are now."""
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return round(time.perf_counter() - started, 3)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))], 2)


def top(profile: cProfile.Profile, n: int) -> tuple[list[dict], list[dict]]:
    """The ``n`` functions with the most time of their own, and our own code's by
    cumulative time (where a fire spends it, callees included)."""
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (path, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():
        short = path.replace(str(ROOT) + "/", "")
        rows.append(
            {
                "function": f"{short}:{line}({name})",
                "calls": calls,
                "own_ms": round(own * 1000, 1),
                "cumulative_ms": round(cumulative * 1000, 1),
                "ours": short.startswith(OUR_CODE),
            }
        )
    own = sorted(rows, key=lambda r: -r["own_ms"])[:n]
    ours = sorted((r for r in rows if r["ours"]), key=lambda r: -r["cumulative_ms"])[:n]
    return [{k: v for k, v in r.items() if k != "ours"} for r in own], [
        {k: v for k, v in r.items() if k != "ours"} for r in ours
    ]


class Counted:
    """Counts the SQL statements run through Django's connection while it is on."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, execute, sql, params, many, context):
        self.n += 1
        return execute(sql, params, many, context)


def main() -> None:
    args = parse_args()
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/7")
    os.environ.setdefault("DEBUG", "false")  # as in production: cached templates
    machine = loop_seconds()
    from bench.common import django_on_empty_database, paging_playbook

    django_on_empty_database(database="crisisdesk_bench_profile", prefix="crisisdesk-profile-")
    import redis
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from incidents import escalation, notify, services
    from incidents.models import Notification, Timer
    from tests.realstack import free_port

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()
    # The SMTP server in a process of its own (bench/mass_send.py's): in this one it
    # would share the interpreter's lock with the code measured.
    port = free_port()
    smtp = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "mass_send.py"), "--smtp-server", str(port),
         str(Path(os.environ["CRISISDESK_DATA_DIR"]) / "smtp.json")],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert smtp.stdout.readline().strip() == "smtp ready"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_TIMEOUT = 5

    oncall = get_user_model().objects.create_user(
        "oncall", "oncall@example.test", "x", first_name="Noa"
    )
    playbook, _role = paging_playbook(delays=(7200, 7200), oncall=oncall)
    batch = escalation.FIRE_BATCH
    nb = args.batches * batch
    n = 2 * (args.fires + nb)
    for i in range(n):
        services.incident_open(title=f"Profile {i}", playbook=playbook)
    Timer.objects.exclude(kind="escalation").update(state="cancelled")
    Notification.objects.exclude(reason="escalation").update(status="cancelled")
    timers = list(
        Timer.objects.filter(kind="escalation", level=1).order_by("pk").values_list("pk", flat=True)
    )

    # The fire writes its pages; their delivery is timed apart (as the worker runs it,
    # in the same task, after commit).
    written: list[int] = []
    deliver = notify.deliver_now
    notify.deliver_now = written.extend

    def due_now(pks: list[int]) -> None:
        Timer.objects.filter(pk__in=pks).update(due_at=timezone.now() - timedelta(milliseconds=1))

    class Off:  # no profiler: the timings without its overhead
        enable = disable = staticmethod(lambda: None)

    def run(pks: list[int], fire_profile=Off, deliver_profile=Off) -> dict:
        due_now(pks)
        written.clear()
        counted = Counted()
        with connection.execute_wrapper(counted):
            started = time.perf_counter()
            fire_profile.enable()
            outcome = escalation.timer_fire_due(timer_id=pks[0])
            fire_profile.disable()
            fired = time.perf_counter()
            fire_queries, counted.n = counted.n, 0
            deliver_profile.enable()
            deliver(list(written))
            deliver_profile.disable()
            done = time.perf_counter()
        assert len(written) == len(pks), (outcome, len(written), len(pks))
        return {
            "fire_ms": (fired - started) * 1000,
            "deliver_ms": (done - fired) * 1000,
            "fire_queries": fire_queries,
            "deliver_queries": counted.n,
        }

    # Timed without the profiler, then the same again under it (its overhead inflates
    # Python-heavy code more than waits on the database or the network).
    profiles = {k: cProfile.Profile() for k in ("fire", "deliver", "batch_fire", "batch_deliver")}
    singles = iter(timers[: 2 * args.fires])
    single = [run([next(singles)]) for _ in range(args.fires)]
    for pk in singles:
        run([pk], profiles["fire"], profiles["deliver"])
    groups = iter(timers[2 * args.fires :][i : i + batch] for i in range(0, 2 * nb, batch))
    batches = [run(next(groups)) for _ in range(args.batches)]
    for pks in groups:
        run(pks, profiles["batch_fire"], profiles["batch_deliver"])
    smtp.terminate()
    smtp.wait(timeout=30)
    broker.flushdb()
    sent = Notification.objects.filter(reason="escalation", status="sent").count()
    assert sent == n, (sent, n)

    for name, profile in profiles.items():
        own, ours = top(profile, args.top)
        print(f"--- {name}: own time", file=sys.stderr)
        for r in own:
            print(f"  {r['own_ms']:9.1f} ms {r['calls']:7d}x  {r['function']}", file=sys.stderr)
        print(f"--- {name}: our code, cumulative", file=sys.stderr)
        for r in ours:
            print(
                f"  {r['cumulative_ms']:9.1f} ms {r['calls']:7d}x  {r['function']}",
                file=sys.stderr,
            )

    def med(rows, key):
        return round(statistics.median(r[key] for r in rows), 1)

    result = {
        "python_loop_10m_s": machine,
        "database": connection.vendor,
        "fires": args.fires,
        "fire_ms_p50": pct([r["fire_ms"] for r in single], 0.5),
        "fire_ms_p90": pct([r["fire_ms"] for r in single], 0.9),
        "fire_queries": med(single, "fire_queries"),
        "deliver_ms_p50": pct([r["deliver_ms"] for r in single], 0.5),
        "deliver_ms_p90": pct([r["deliver_ms"] for r in single], 0.9),
        "deliver_queries": med(single, "deliver_queries"),
        "batch": batch,
        "batches": args.batches,
        "batch_fire_ms_p50": pct([r["fire_ms"] for r in batches], 0.5),
        "batch_fire_queries": med(batches, "fire_queries"),
        "batch_deliver_ms_p50": pct([r["deliver_ms"] for r in batches], 0.5),
        "batch_deliver_queries": med(batches, "deliver_queries"),
        "batch_ms_per_page": round(
            statistics.median((r["fire_ms"] + r["deliver_ms"]) / batch for r in batches), 2
        ),
        "sent": sent,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
