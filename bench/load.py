"""What the load benchmarks share: gunicorn started on a free port, percentiles, and
the CPU and memory of a process tree read from /proc (Linux; 0 elsewhere)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank below), rounded to 0.1; None for no values."""
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * (len(values) - 1)))], 1)


def gunicorn(
    *,
    workers: int,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
    own_session: bool = False,
) -> tuple[subprocess.Popen, str]:
    """gunicorn serving crisisdesk.wsgi on loopback, and its base URL (not yet up).

    ``own_session``: in a process group of its own, so a Ctrl-C in the terminal reaches
    only the bench, which must then stop it (the Celery processes are started so too).
    """
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "crisisdesk.wsgi", "-w", str(workers),
         "-b", f"127.0.0.1:{port}", "--log-level", "warning", *(extra or [])],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        start_new_session=own_session,
    )  # fmt: skip
    return server, f"http://127.0.0.1:{port}"


def wait_up(url: str, *, headers: dict[str, str] | None = None, seconds: float = 30) -> None:
    """Until ``url`` answers at all (any HTTP status), or TimeoutError."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {seconds} s") from None
            time.sleep(0.2)


def tree(pid: int) -> list[int]:
    """The process and all its descendants."""
    pids, i = [pid], 0
    while i < len(pids):
        with contextlib.suppress(OSError):
            pids += [
                int(c) for c in Path(f"/proc/{pids[i]}/task/{pids[i]}/children").read_text().split()
            ]
        i += 1
    return pids


def rss_mb(pid: int, *, peak: bool = False, children: bool = True) -> float:
    """Resident memory of a process tree (or, children=False, the process alone) in
    MiB: now (VmRSS) or at its peak (VmHWM)."""
    key, total = ("VmHWM:" if peak else "VmRSS:"), 0
    for p in tree(pid) if children else [pid]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(key):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def cpu_seconds(pid: int, *, children_only: bool = True) -> float:
    """User + system CPU of a process tree so far (gunicorn's workers: children only)."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = tree(pid)[1:] if children_only else tree(pid)
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks
