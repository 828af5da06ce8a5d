"""How long the post-mortem takes to build for a long crisis.

Makes one incident with 5,000 timeline entries (``--entries``) and 500 sent or
published messages (one in ten a correction), plus escalations, role hand-overs
and tasks, then times building the report and rendering it as HTML (the first
page of the timeline), Markdown (the whole timeline, streamed) and PDF (bounded,
with the whole timeline attached as CSV), after one untimed PDF (a server's first
loads the fonts). Targets: HTML under 1 s, PDF under 2 s whatever the number of
entries. The last line printed is one JSON object (``pdf_ms``, ``html_ms``,
``md_ms``, ``pdf_pages``, ``peak_rss_mb``...).

    .venv/bin/python bench/postmortem_report.py
    .venv/bin/python bench/postmortem_report.py --entries 50000 --messages 500 --repeat 3

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/crisisdesk_bench_pm,
created if missing; a sqlite:/// URL works too).
"""

from __future__ import annotations

import argparse
import json
import resource
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
    p.add_argument("--entries", type=int, default=5000, help="timeline entries")
    p.add_argument("--messages", type=int, default=500, help="sent or published messages")
    p.add_argument("--repeat", type=int, default=5, help="timed runs of each step (median kept)")
    return p.parse_args()


def timed(fn, repeat: int) -> tuple[float, object]:
    runs, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - start)
    return round(statistics.median(runs) * 1000, 1), result


def build_record(entries: int, messages: int):
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from incidents import services
    from incidents.models import Message, RoleAssignment, Task, TimelineEntry
    from playbooks.models import CrisisRole, StakeholderGroup

    User = get_user_model()
    people = [
        User.objects.create_user(f"p{i}", f"p{i}@example.test", first_name=f"Person {i}")
        for i in range(20)
    ]
    roles = [
        CrisisRole.objects.create(slug=f"role-{i}", name=f"Role {i}", sort_order=i)
        for i in range(7)
    ]
    audiences = [
        StakeholderGroup.objects.create(slug=f"aud-{i}", name=f"Audience {i}") for i in range(6)
    ]
    incident = services.incident_open(title="Long crisis: ügyféladatok · διαρροή · דליפה")
    start = timezone.now() - timedelta(days=3)
    span = timedelta(days=2)
    type(incident).objects.filter(pk=incident.pk).update(
        opened_at=start,
        acknowledged_at=start + timedelta(minutes=4),
        first_statement_at=start + timedelta(minutes=50),
        contained_at=start + timedelta(hours=20),
        resolved_at=start + span,
        status="resolved",
        escalation_policy={"repeat": 0, "levels": [{"delay_seconds": 120}]},
    )
    step = span / max(entries, 1)
    kinds = ["note", "task", "role", "escalation", "message", "deadline", "acknowledged"]
    TimelineEntry.objects.bulk_create(
        TimelineEntry(
            incident=incident,
            at=start + step * i,
            kind=kinds[i % len(kinds)],
            actor=people[i % len(people)],
            text=f"Entry {i}: what happened at this point of the crisis, in a sentence or two.",
            data=(
                {"level": 1 + i % 3, "cycle": 0, "user_ids": [people[i % 20].pk]}
                if kinds[i % len(kinds)] == "escalation"
                else {}
            ),
        )
        for i in range(entries - 1)  # incident_open wrote one already
    )
    msg_step = span / max(messages, 1)
    made: list[Message] = []
    for i in range(messages):
        corrects = made[-1] if i % 10 == 9 and made else None
        made.append(
            Message.objects.create(
                incident=incident,
                audience=audiences[i % len(audiences)],
                channel="email" if i % 2 else "website",
                subject=f"Update {i}",
                body=f"Update {i} to our customers: what we know, what we do, what you can do.",
                status="sent" if i % 2 else "published",
                author=people[i % 20],
                approver=people[(i + 1) % 20],
                approved_at=start + msg_step * i,
                sent_at=start + msg_step * i + timedelta(seconds=30),
                sent_by=people[i % 20],
                published_where="" if i % 2 else "https://status.example.test",
                corrects=corrects,
            )
        )
    for i, role in enumerate(roles):
        for j in range(3):
            RoleAssignment.objects.create(
                incident=incident,
                role=role,
                user=people[(i + j) % 20],
                assumed_at=start + timedelta(hours=8 * j),
                relieved_at=start + timedelta(hours=8 * (j + 1)) if j < 2 else None,
            )
    Task.objects.bulk_create(
        Task(
            incident=incident,
            position=i,
            title=f"Task {i}",
            role=roles[i % 7],
            due_at=start + timedelta(minutes=15 * i),
            status="done" if i % 3 else "open",
            done_at=start + timedelta(minutes=15 * i + (20 if i % 4 else 5)) if i % 3 else None,
        )
        for i in range(40)
    )
    return incident


def main() -> None:
    args = parse_args()
    django_on_empty_database(database="crisisdesk_bench_pm", prefix="crisisdesk-bench-pm-")
    from django.db import connection

    from incidents import postmortem

    incident = build_record(args.entries, args.messages)

    # One untimed run first: a server's first PDF loads the fonts, later ones do not.
    postmortem.report_pdf(postmortem.report_build(incident))
    build_ms, report = timed(lambda: postmortem.report_build(incident), args.repeat)
    html_ms, html = timed(
        lambda: postmortem.report_html(postmortem.report_build(incident)), args.repeat
    )
    md_ms, markdown = timed(
        lambda: postmortem.report_markdown(postmortem.report_build(incident)), args.repeat
    )
    pdf_ms, pdf = timed(
        lambda: postmortem.report_pdf(postmortem.report_build(incident)), args.repeat
    )
    import pypdfium2

    pages = len(pypdfium2.PdfDocument(pdf))
    result = {
        "database": connection.vendor,
        "timeline_entries": report.timeline_count,
        "messages": report.message_count,
        "corrections": report.correction_count,
        "build_ms": build_ms,
        "html_ms": html_ms,
        "html_kb": round(len(html.encode()) / 1024),
        "md_ms": md_ms,
        "md_kb": round(len(markdown.encode()) / 1024),
        "pdf_ms": pdf_ms,
        "pdf_pages": pages,
        "pdf_kb": round(len(pdf) / 1024),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "targets": {"html_ms": 1000, "pdf_ms": 2000},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
