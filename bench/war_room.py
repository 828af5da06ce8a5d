"""How long the war room's incident page takes to render on the server for a long crisis.

Makes one active incident with 2,000 timeline entries (notes, pages, role
hand-overs...), 40 tasks over the six phases, seven roles held, escalation
pages and 60 messages, then requests /incidents/<reference>/ through Django's
whole stack (middleware, session, permission checks, template) as a signed-in
crisis manager, the way a browser would. Target: p95 under 150 ms. The last
line printed is one JSON object.

    .venv/bin/python bench/war_room.py
    .venv/bin/python bench/war_room.py --entries 2000 --runs 50

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/crisisdesk_bench_wr,
created if missing; a sqlite:/// URL works too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import django_on_empty_database  # noqa: E402 - after the path is set


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", type=int, default=2000, help="timeline entries")
    p.add_argument("--runs", type=int, default=50, help="timed requests (after 3 warm-ups)")
    return p.parse_args()


def build_incident(entries: int):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from incidents import services
    from incidents.models import Message, RoleAssignment, Task, TimelineEntry
    from incidents.permissions import ensure_groups
    from playbooks.models import CrisisRole, Phase, StakeholderGroup

    ensure_groups()
    User = get_user_model()
    people = [
        User.objects.create_user(f"p{i}", f"p{i}@example.test", first_name=f"Person {i}")
        for i in range(20)
    ]
    viewer = User.objects.create_user("manager", "manager@example.test", "bench-only")
    viewer.groups.add(Group.objects.get(name="Crisis managers"))
    roles = [
        CrisisRole.objects.create(slug=f"role-{i}", name=f"Role {i}", sort_order=i)
        for i in range(7)
    ]
    audiences = [
        StakeholderGroup.objects.create(slug=f"aud-{i}", name=f"Audience {i}") for i in range(4)
    ]
    incident = services.incident_open(title="Long crisis: ügyféladatok · διαρροή · דליפה")
    start = timezone.now() - timedelta(hours=30)
    type(incident).objects.filter(pk=incident.pk).update(
        opened_at=start,
        escalation_policy={
            "repeat": 1,
            "levels": [
                {"delay_seconds": 120, "target": "user", "user_ids": [people[0].pk]},
                {"delay_seconds": 300, "target": "user", "user_ids": [people[1].pk]},
            ],
        },
    )
    incident.refresh_from_db()
    step = timedelta(hours=29) / max(entries, 1)
    kinds = ["note", "task", "role", "escalation", "message", "deadline", "correction"]
    TimelineEntry.objects.bulk_create(
        TimelineEntry(
            incident=incident,
            at=start + step * i,
            kind=kinds[i % len(kinds)],
            actor=people[i % len(people)],
            text=f"Entry {i}: what happened at this point of the crisis, in a sentence or two.",
            data=(
                {"level": 1 + i % 2, "cycle": 0, "user_ids": [people[i % 20].pk]}
                if kinds[i % len(kinds)] == "escalation"
                else {}
            ),
        )
        for i in range(entries - TimelineEntry.objects.filter(incident=incident).count())
    )
    phases = [value for value, _label in Phase.choices]
    Task.objects.bulk_create(
        Task(
            incident=incident,
            position=i,
            phase=phases[i % len(phases)],
            title=f"Task {i}",
            instructions="Do this, then that.",
            role=roles[i % 7],
            assignee=people[i % 20],
            due_at=start + timedelta(minutes=15 * i),
            status="done" if i % 3 == 0 else "open",
            done_at=start + timedelta(minutes=15 * i + 5) if i % 3 == 0 else None,
            done_by=people[(i + 1) % 20] if i % 3 == 0 else None,
        )
        for i in range(40)
    )
    for i, role in enumerate(roles):
        RoleAssignment.objects.create(
            incident=incident, role=role, user=people[i], assumed_at=start + timedelta(minutes=i)
        )
    for i in range(60):
        Message.objects.create(
            incident=incident,
            audience=audiences[i % len(audiences)],
            channel="email" if i % 2 else "website",
            subject=f"Update {i}",
            body=f"Update {i} to our customers: what we know, what we do, what you can do.",
            status=("sent", "published", "draft", "in_review")[i % 4],
            author=people[i % 20],
            approver=people[(i + 1) % 20] if i % 4 < 2 else None,
            approved_at=start + timedelta(minutes=20 * i) if i % 4 < 2 else None,
            sent_at=start + timedelta(minutes=20 * i, seconds=30) if i % 4 < 2 else None,
        )
    return incident, viewer


def main() -> None:
    args = parse_args()
    django_on_empty_database(database="crisisdesk_bench_wr", prefix="crisisdesk-bench-wr-")
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    settings.ALLOWED_HOSTS = ["*"]
    incident, viewer = build_incident(args.entries)
    client = Client()
    client.force_login(viewer)
    url = f"/incidents/{incident.reference}/"
    for _ in range(3):
        assert client.get(url).status_code == 200
    # As a server does once it has loaded the application (crisisdesk/wsgi.py).
    from crisisdesk.wsgi import settle_heap

    settle_heap()
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        cProfile.runctx("client.get(url)", globals(), locals(), "/tmp/war_room.prof")
        pstats.Stats("/tmp/war_room.prof").sort_stats("cumulative").print_stats(40)
    queries: list[str] = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = client.get(url)
    assert response.status_code == 200
    entries = response.content.count(b'data-kind="')
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    times.sort()
    result = {
        "database": connection.vendor,
        "timeline_entries": entries,
        "runs": args.runs,
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 1),
        "max_ms": round(times[-1], 1),
        "queries": len(queries),
        "html_kb": round(len(response.content) / 1024),
        "target_p95_ms": 150,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
