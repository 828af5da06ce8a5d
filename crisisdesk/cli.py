"""``crisisdesk``: the one command that runs a whole local desk.

``crisisdesk up`` migrates, loads the starter playbooks and demo data, prints
the demo login and the address, then runs the three processes a desk needs
(web, Celery worker, Celery beat) under one small supervisor. Ctrl-C, or any
one process dying, stops all three.

``crisisdesk manage ...`` is ``manage.py`` for an installed desk.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

SHUTDOWN_GRACE_SECONDS = 10


@dataclass
class Proc:
    name: str
    argv: list[str]
    popen: subprocess.Popen | None = None


def _django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crisisdesk.settings")
    import django

    django.setup()


def _pump(proc: Proc, width: int) -> None:
    """Copy a child's output to ours, each line prefixed with the process name."""
    assert proc.popen is not None and proc.popen.stdout is not None
    prefix = f"{proc.name:<{width}} | "
    for line in iter(proc.popen.stdout.readline, ""):
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


def supervise(procs: Sequence[Proc]) -> int:
    """Run the processes until Ctrl-C or until one of them exits; then stop the rest.

    1. Start each child in its own process group, so a Ctrl-C in the terminal
       reaches us once and we decide the order of shutdown.
    2. Wait until a child exits or we receive SIGINT/SIGTERM.
    3. Send SIGTERM to every child still running (Celery's warm shutdown lets
       a worker finish the task in hand), wait, then SIGKILL what is left.
    """
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    width = max(len(p.name) for p in procs)
    pumps = []
    try:
        for proc in procs:
            proc.popen = subprocess.Popen(
                proc.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                start_new_session=True,
            )
            pump = threading.Thread(target=_pump, args=(proc, width), daemon=True)
            pump.start()
            pumps.append(pump)
        failed: Proc | None = None
        while not stop.is_set() and failed is None:
            failed = next((p for p in procs if p.popen and p.popen.poll() is not None), None)
            stop.wait(0.5)
        if failed is not None:
            print(f"\n{failed.name} exited with code {failed.popen.returncode}; stopping the desk.")
        else:
            print("\nStopping the desk (web, worker, beat)…")
        _stop_all(procs)
        return 0 if failed is None else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for pump in pumps:
            pump.join(timeout=1)


def _stop_all(procs: Sequence[Proc]) -> None:
    running = [p for p in procs if p.popen and p.popen.poll() is None]
    for proc in running:
        # The main process only: Celery's warm shutdown stops its own pool children.
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
    for proc in running:
        try:
            proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{proc.name} did not stop in {SHUTDOWN_GRACE_SECONDS}s; killing it.")
            os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait()


def desk_processes(*, host: str, port: int, concurrency: int) -> list[Proc]:
    python = sys.executable
    return [
        Proc("web", [python, "-m", "django", "runserver", f"{host}:{port}", "--noreload"]),
        Proc(
            "worker",
            [
                python, "-m", "celery", "-A", "crisisdesk", "worker",
                "--loglevel", "WARNING", "--concurrency", str(concurrency),
            ],
        ),
        Proc("beat", [python, "-m", "celery", "-A", "crisisdesk", "beat", "--loglevel", "WARNING"]),
    ]  # fmt: skip


def cmd_up(args: argparse.Namespace) -> int:
    _django_setup()
    from django.conf import settings
    from django.core.management import call_command

    print(f"CrisisDesk: data in {settings.VAR_DIR}")
    call_command("migrate", interactive=False, verbosity=0)
    demo = io.StringIO()
    if not args.no_demo:
        call_command("seed_demo", stdout=demo)
    url = f"http://{args.host}:{args.port}/"
    print()
    print(f"  CrisisDesk is starting at {url}")
    for line in demo.getvalue().splitlines():
        print(f"  {line}")
    if settings.EMAIL_BACKEND == "crisisdesk.mail.EmlFileBackend":
        print(f"  E-mails are written to {settings.EMAIL_FILE_PATH} (.eml files)")
    print("  Ctrl-C stops web, worker and beat.")
    print()
    return supervise(desk_processes(host=args.host, port=args.port, concurrency=args.concurrency))


def cmd_manage(args: argparse.Namespace) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crisisdesk.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["crisisdesk manage", *args.rest])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crisisdesk", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="migrate, load demo data and run web + worker + beat")
    up.add_argument("--host", default=os.environ.get("CRISISDESK_HOST", "127.0.0.1"))
    up.add_argument("--port", type=int, default=int(os.environ.get("CRISISDESK_PORT", "8000")))
    up.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    up.add_argument("--no-demo", action="store_true", help="skip the demo data and login")
    up.set_defaults(func=cmd_up)
    manage = sub.add_parser("manage", help="run a manage.py command", add_help=False)
    manage.add_argument("rest", nargs=argparse.REMAINDER)
    manage.set_defaults(func=cmd_manage)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
