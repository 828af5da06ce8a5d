"""Real parts for integration tests: an SMTP server and Celery worker processes.

The worker is a real ``celery worker`` subprocess on the configured broker
(the filesystem transport by default, Redis when CELERY_BROKER_URL says so),
connected to the test database, delivering to a real SMTP server (aiosmtpd)
on loopback. Tests that use it need committed data (``transactional_db``).
"""

from __future__ import annotations

import asyncio
import email
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from django.db import connection

from incidents.escalation import REENQUEUE_AFTER

ROOT = Path(__file__).resolve().parents[1]
ROLL_CALL_REASONS = frozenset({"activation", "roll_call_chase"})
# The dead man's switch (incidents/watchdog.py): a test that runs a worker without
# beat for longer than the stale limit rightly gets it; only its own test counts it.
DEADMAN_REASON = "deadman"
# The sweep interval real-stack beats run with (beat_factory).
SWEEP_SECONDS = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unread_bytes(port: int, peer: str) -> int:
    """Bytes the kernel holds for a server on ``port`` (root namespace) that its process
    has not read yet, summed over its connections from ``peer``."""
    out = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    total = 0
    for line in out.splitlines():
        # Recv-Q Send-Q Local:Port Peer:Port (the state is left out when filtered on)
        fields = line.split()
        if len(fields) >= 4 and fields[3].rsplit(":", 1)[0] == peer:
            total += int(fields[0])
    return total


def smtp_settled(loop: asyncio.AbstractEventLoop, *, port: int, peer: str) -> None:
    """Wait until the SMTP server on ``port`` (its event loop ``loop``) has read and
    handled every byte the kernel got from ``peer``, once ``peer`` can send no more (its
    link cut, its process killed): nothing left unread in its sockets, then its loop
    gone round three times with that still so. An e-mail whose last bytes left before
    the cut or the kill is then counted, however late the server got to it."""
    quiet = 0
    deadline = time.monotonic() + 30
    while quiet < 3:
        assert time.monotonic() < deadline, "the SMTP server never caught up"
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=10)
        quiet = quiet + 1 if unread_bytes(port, peer) == 0 else 0


@dataclass
class Received:
    rcpt_tos: list[str]
    message: EmailMessage
    at: float  # time.time() when the server accepted it


@dataclass
class SmtpSink:
    """An SMTP server on loopback that keeps every message it accepts.

    With ``hold_replies`` it keeps each message's data but holds back its "250"
    reply until ``release`` is set: the moment between the server's acceptance
    and the sender learning of it, where a killed sender leaves a message that
    arrived but is not marked sent. ``data_arrived`` is set on the first one.
    """

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    # E-mails of these reasons (X-CrisisDesk-Reason) are accepted but kept apart in
    # ``ignored``: the engine's tests count pages and messages, and opening an
    # incident also e-mails its role holders (the roll call). A test about the roll
    # call empties the set. So are the dead man's switch's (its own test counts them).
    ignore_reasons: frozenset[str] = ROLL_CALL_REASONS | {DEADMAN_REASON}
    ignored: list[Received] = field(default_factory=list)
    hold_replies: bool = False
    data_arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    _controller: Controller | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        arrived = Received(list(envelope.rcpt_tos), message, time.time())
        if message["X-CrisisDesk-Reason"] in self.ignore_reasons:
            with self._lock:
                self.ignored.append(arrived)
            return "250 Message accepted for delivery"  # never held, never counted
        with self._lock:
            self.received.append(arrived)
        self.data_arrived.set()
        while self.hold_replies and not self.release.is_set():
            await asyncio.sleep(0.05)
        return "250 Message accepted for delivery"

    def start(self) -> SmtpSink:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def settle(self, peer: str = "127.0.0.1") -> None:
        """``smtp_settled`` for this server."""
        assert self._controller is not None
        smtp_settled(self._controller.loop, port=self.port, peer=peer)

    def message_ids(self) -> list[str]:
        with self._lock:
            return [r.message["Message-ID"] for r in self.received]

    def assert_nothing_more(
        self, count: int, *, sweep_seconds: float = SWEEP_SECONDS, after: float | None = None
    ) -> None:
        """Prove that nothing but the ``count`` expected e-mails arrives.

        Waits until two sweep intervals past the point where the engine would
        re-send a lost timer or e-mail (REENQUEUE_AFTER) have gone by since the
        last expected arrival (or ``after``, a time.time()), never a fixed sleep.
        """
        with self._lock:
            last = max((r.at for r in self.received), default=time.time())
        start = max(last, after or 0.0)
        quiet = REENQUEUE_AFTER.total_seconds() + 2 * sweep_seconds
        time.sleep(max(0.0, start + quiet - time.time()))
        with self._lock:
            extra = self.received[count:]
        assert len(self.received) == count, [
            (r.message["Subject"], r.message["Message-ID"]) for r in extra
        ]

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        with self._lock:
            return list(self.received)


def database_url_for_subprocess() -> str:
    """The URL of the database this test runs on (the test database, not the real one)."""
    s = connection.settings_dict
    if s["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    auth = s["USER"] or ""
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    host = s["HOST"] or "127.0.0.1"
    port = s["PORT"] or 5432
    return f"postgres://{auth}@{host}:{port}/{s['NAME']}"


@dataclass
class CeleryProcess:
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None

    def start(self) -> CeleryProcess:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        return self

    def wait_ready(self, marker: str = "ready.", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log_path.read_text(errors="replace"):
                return
            if self.popen and self.popen.poll() is not None:
                raise RuntimeError(f"celery exited early:\n{self.log()}")
            time.sleep(0.1)
        raise TimeoutError(f"celery not ready after {timeout}s:\n{self.log()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def received_tasks(self, task: str) -> int:
        """How many ``task`` messages this worker has taken from the broker so far."""
        return self.log_path.read_text(errors="replace").count(f"Task {task}[")  # "… received"


def celery_env(*, smtp: SmtpSink | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url_for_subprocess()
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if smtp is not None:
        env["EMAIL_HOST"] = "127.0.0.1"
        env["EMAIL_PORT"] = str(smtp.port)
        env["EMAIL_TIMEOUT"] = "5"
    env.update(extra or {})
    return env


def make_worker(
    tmp_path: Path, *, smtp: SmtpSink | None, name: str = "w1", concurrency: int = 2,
    extra_env: dict[str, str] | None = None,
) -> CeleryProcess:  # fmt: skip
    argv = [
        sys.executable, "-m", "celery", "-A", "crisisdesk", "worker", "--loglevel", "INFO",
        "--concurrency", str(concurrency), "--hostname", f"{name}@%h", "--without-gossip",
        "--without-mingle",
    ]  # fmt: skip
    return CeleryProcess(argv, celery_env(smtp=smtp, extra=extra_env), tmp_path / f"{name}.log")


def make_beat(
    tmp_path: Path, *, name: str = "beat1", extra_env: dict[str, str] | None = None
) -> CeleryProcess:
    argv = [
        sys.executable, "-m", "celery", "-A", "crisisdesk", "beat", "--loglevel", "INFO",
        "--schedule", str(tmp_path / f"{name}-schedule"),
    ]  # fmt: skip
    return CeleryProcess(argv, celery_env(smtp=None, extra=extra_env), tmp_path / f"{name}.log")


def eventually(check: Callable[[], bool], timeout: float = 30, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()
