"""A statement to a large audience on real parts: PostgreSQL, Redis, a Celery worker
and beat, an aiosmtpd server in a process of its own.

Creates N contacts in four languages, approves one message to them and sends it.
The fan-out (writing the outbox in batches) runs in a writer process of its own,
so its memory is measured apart from the worker's; the worker delivers in chunks.
The SMTP server counts, per recipient, the Message-IDs it received. The last line
printed is one JSON object: contacts, expected, received, duplicates (a contact
who got two different e-mails: never expected), resends_same_message_id (the same
e-mail again after a worker died between the server's acceptance and the commit),
missing, seconds (from the send to the last e-mail), per_second, and the peak
resident memory of the worker and of the writer.

    .venv/bin/python bench/mass_send.py                        # 10,000 contacts
    .venv/bin/python bench/mass_send.py --contacts 100000
    .venv/bin/python bench/mass_send.py --kill-worker          # SIGKILL the worker mid-chunk

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/crisisdesk_mass,
created if missing) and CELERY_BROKER_URL (default redis://127.0.0.1:6379/7, flushed first).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from escalation_latency import ensure_database, rss_mb_tree  # noqa: E402

LANGS = ("en", "he", "el", "hu")
MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
REASON = re.compile(rb"^X-CrisisDesk-Reason:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contacts", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=4, help="worker processes (concurrency)")
    p.add_argument(
        "--kill-worker",
        action="store_true",
        help="SIGKILL the worker halfway, while e-mails are being sent, and restart it",
    )
    p.add_argument("--sweep-seconds", type=int, default=5)
    p.add_argument("--smtp-server", nargs=2, metavar=("PORT", "STATS"), help=argparse.SUPPRESS)
    p.add_argument("--write", type=int, metavar="MESSAGE", help=argparse.SUPPRESS)
    return p.parse_args()


# ------------------------------------------------------------- the SMTP server


def smtp_server(port: int, stats: Path) -> None:
    """Count what arrives, per recipient and Message-ID; a snapshot every half second,
    the full count on SIGTERM."""
    from aiosmtpd.controller import Controller

    seen: dict[str, list[bytes]] = {}
    lock = threading.Lock()
    done = threading.Event()

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook
            head = envelope.content.split(b"\r\n\r\n", 1)[0]
            reason = REASON.search(head)
            if reason and reason.group(1) == b"message":
                mid = MESSAGE_ID.search(head)
                with lock:
                    for rcpt in envelope.rcpt_tos:
                        seen.setdefault(rcpt, []).append(mid.group(1) if mid else b"")
            return "250 Message accepted for delivery"

    def write(final: bool) -> None:
        with lock:
            received = sum(len(v) for v in seen.values())
            out = {"received": received, "recipients": len(seen), "at": time.time()}
            if final:
                out["duplicates"] = sum(len(set(v)) - 1 for v in seen.values())
                out["resends_same_message_id"] = sum(len(v) - len(set(v)) for v in seen.values())
                out["recipients_list"] = sorted(seen)
        tmp = stats.with_suffix(".tmp")
        tmp.write_text(json.dumps(out))
        tmp.rename(stats)

    signal.signal(signal.SIGTERM, lambda *_: done.set())
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    print("smtp ready", flush=True)
    while not done.wait(0.5):
        write(False)
    controller.stop()
    write(True)


def read_stats(stats: Path) -> dict:
    try:
        return json.loads(stats.read_text())
    except (OSError, ValueError):
        return {"received": 0, "recipients": 0}


# ------------------------------------------------------------------- the writer


def write_outbox(message_id: int) -> None:
    """The fan-out, as the worker's task runs it, in a process of its own."""
    import django

    django.setup()
    from incidents import comms

    print(comms.message_fanout(message_id=message_id), flush=True)


# ------------------------------------------------------------------ the bench


def set_up(n: int):
    """N contacts in four languages and an approved message to them."""
    from django.contrib.auth import get_user_model

    from incidents import comms, services
    from playbooks.models import CrisisRole, Stakeholder, StakeholderGroup

    User = get_user_model()
    author = User.objects.create_user("writer", "writer@example.test", "x", first_name="Wanda")
    lawyer = User.objects.create_user("counsel", "counsel@example.test", "x", first_name="Carl")
    CrisisRole.objects.create(
        slug="legal-counsel", name="Legal counsel", can_approve_messages=True
    ).holders.add(lawyer)
    group = StakeholderGroup.objects.create(slug="customers", name="Customers")
    for start in range(0, n, 5000):
        Stakeholder.objects.bulk_create(
            [
                Stakeholder(
                    group=group,
                    name=f"Contact {i}",
                    email=f"c{i}@example.test",
                    language=LANGS[i % len(LANGS)],
                )
                for i in range(start, min(n, start + 5000))
            ]
        )
    incident = services.incident_open(title="Kártyaadatok kiszivárogtak", severity=1)
    services.incident_acknowledge(incident=incident, actor=author)
    message = comms.message_draft(
        incident=incident,
        author=author,
        audience=group,
        channel="email",
        subject="Card data exposed",
        body="Dear {recipient_name}, card data of some customers was exposed. We block the cards.",
    )
    message = comms.message_edit(
        message=message,
        editor=author,
        subject=message.subject,
        body=message.body,
        translations={
            "he": {"subject": "עדכון", "body": "{recipient_name} שלום, נתוני כרטיסים נחשפו."},
            "el": {"subject": "Ενημέρωση", "body": "Αγαπητέ/ή {recipient_name}, εκτέθηκαν κάρτες."},
            "hu": {"subject": "Tájékoztatás", "body": "Kedves {recipient_name}! Kártyaadatok."},
        },
    )
    comms.message_submit(message=message, actor=author)
    comms.message_approve(message=message, approver=lawyer)
    return message, author


def main() -> None:
    args = parse_args()
    if args.smtp_server:
        smtp_server(int(args.smtp_server[0]), Path(args.smtp_server[1]))
        return
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crisisdesk_mass")
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/7")
    os.environ["CRISISDESK_SWEEP_SECONDS"] = str(args.sweep_seconds)
    os.environ["DJANGO_SETTINGS_MODULE"] = "crisisdesk.settings"
    os.environ["LOG_LEVEL"] = "WARNING"
    # As in production: with DEBUG on, Django keeps the last 9,000 queries' SQL (a
    # batch's INSERT holds 1,000 rows), which the writer's memory would measure.
    os.environ.setdefault("DEBUG", "false")
    if args.write:
        write_outbox(args.write)
        return
    data_dir = Path(tempfile.mkdtemp(prefix="crisisdesk-mass-"))
    os.environ["CRISISDESK_DATA_DIR"] = str(data_dir)
    if os.environ["DATABASE_URL"].startswith("postgres"):
        ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from incidents import comms, dispatch, notify
    from incidents.escalation import MASS_STALLED_AFTER, REENQUEUE_AFTER
    from incidents.models import Notification
    from tests.realstack import free_port, make_beat, make_worker

    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    message, author = set_up(args.contacts)
    connection.close()

    port, stats = free_port(), data_dir / "smtp.json"
    smtp = subprocess.Popen(
        [sys.executable, __file__, "--smtp-server", str(port), str(stats)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert smtp.stdout.readline().strip() == "smtp ready"

    class Sink:  # what make_worker needs to know of the SMTP server
        pass

    sink = Sink()
    sink.port = port
    worker = make_worker(data_dir, smtp=sink, concurrency=args.workers)
    worker.env["LOG_LEVEL"] = "WARNING"
    worker.start()
    worker.wait_ready()
    beat = make_beat(data_dir, extra_env={"CRISISDESK_SWEEP_SECONDS": str(args.sweep_seconds)})
    beat.start()

    # The send: validated, the first batch written, chunks queued; the rest of the
    # fan-out is the writer process's (not a worker's: its memory is measured apart).
    started = time.time()
    real_fanout = dispatch.fanout_on_commit
    dispatch.fanout_on_commit = lambda message_id: None
    comms.message_send(message=message, actor=author)
    dispatch.fanout_on_commit = real_fanout
    connection.close()
    writer = subprocess.Popen(
        [sys.executable, __file__, "--write", str(message.pk)],
        env={**os.environ, "CRISISDESK_DATA_DIR": str(data_dir)},
        stdout=subprocess.DEVNULL,
    )

    worker_rss = writer_rss = 0.0
    killed = False
    deadline = started + 120 + args.contacts / 50
    while time.time() < deadline:
        time.sleep(0.5)
        now = read_stats(stats)
        worker_rss = max(worker_rss, rss_mb_tree(worker.popen.pid))
        if writer.poll() is None:
            writer_rss = max(writer_rss, rss_mb_tree(writer.pid))
        if (
            args.kill_worker
            and not killed
            and now["received"] >= args.contacts // 2
            and Notification.objects.filter(status="sending").exists()  # provably mid-chunk
        ):
            worker.kill(signal.SIGKILL)
            killed = True
            worker = make_worker(data_dir, smtp=sink, concurrency=args.workers, name="w2")
            worker.env["LOG_LEVEL"] = "WARNING"
            worker.start()
        if now["recipients"] >= args.contacts:
            break
    last = read_stats(stats).get("at", time.time())
    # Resends and duplicates, if any, arrive now: give the sweep its chance to send
    # anything it would (a lease running out, a stalled send re-queued).
    quiet = REENQUEUE_AFTER.total_seconds() + 2 * args.sweep_seconds
    if killed:
        quiet += notify.lease().total_seconds() + MASS_STALLED_AFTER.total_seconds()
    time.sleep(quiet)
    writer.wait(timeout=600)
    connection.close()
    beat.stop()
    worker.stop()
    smtp.send_signal(signal.SIGTERM)
    smtp.wait(timeout=120)
    final = read_stats(stats)
    expected = {f"c{i}@example.test" for i in range(args.contacts)}
    got = set(final.get("recipients_list", []))
    seconds = max(0.001, last - started)
    result = {
        "contacts": args.contacts,
        "expected": args.contacts,
        "received": final["received"],
        "duplicates": final["duplicates"],
        "resends_same_message_id": final["resends_same_message_id"],
        "missing": len(expected - got),
        "unexpected": len(got - expected),
        "seconds": round(seconds, 1),
        "per_second": round(len(got & expected) / seconds, 1),
        "worker_peak_rss_mb": worker_rss,
        "writer_peak_rss_mb": writer_rss,
        "workers": args.workers,
        "kill_worker": args.kill_worker,
        "killed": killed,
        "rate_limit_per_second": settings.CRISISDESK_SMTP_RATE_PER_SECOND,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
