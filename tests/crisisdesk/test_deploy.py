"""The Procfile and the systemd units that DEPLOYMENT.md uses really start a desk.

Each command is read from the file (the Procfile's lines, the units' ExecStart),
with the install paths replaced by this test's virtualenv and checkout and the
environment file's values used, in production mode, on an SQLite file and the
filesystem broker in a temporary data folder. Migrations run first (the
Procfile's ``release``, the ``crisisdesk-migrate`` unit); then web, worker and
beat start, web answers /healthz, the worker says it is ready, beat says it
started, and /readyz turns 200 once beat's first sweep ran on the worker. SIGTERM
stops each of them cleanly.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.realstack import free_port

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALL_DIR = "/opt/crisisdesk"
VENV_BIN = Path(sys.executable).parent
GOOD_KEY = "k3y-" + "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ"

pytestmark = pytest.mark.services


# ------------------------------------------------------------------ reading


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def unit(name: str) -> dict[str, list[str]]:
    """A unit file's [Service] keys, each with every value it is given."""
    keys: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def env_file() -> dict[str, str]:
    values = {}
    for line in (UNITS / "crisisdesk.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key] = value
    return values


def systemd_argv(command: str, env: dict[str, str], instance: str = "1") -> list[str]:
    """ExecStart as systemd runs it: ${VAR} is one word, %i the instance, %% a percent."""
    command = command.replace("%i", instance).replace("%%", "%")
    command = re.sub(r"\$\{(\w+)\}", lambda m: shlex.quote(env[m.group(1)]), command)
    argv = shlex.split(command)
    assert argv[0].startswith(f"{INSTALL_DIR}/.venv/bin/"), argv[0]
    return [str(VENV_BIN / Path(argv[0]).name), *argv[1:]]


def procfile_argv(command: str) -> list[str]:
    """As honcho or foreman run a Procfile line: by a shell, with the virtualenv on PATH."""
    return ["bash", "-c", f"exec {command}"]


# ------------------------------------------------------------------ running


@pytest.fixture
def desk_env(tmp_path):
    """The environment file's values, made to run here: production mode, no servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_"))}
    env.update(env_file())
    for key in list(env):
        if key.startswith("EMAIL_"):
            del env[key]  # e-mails to .eml files in the data folder
    port = free_port()
    env.update(
        SECRET_KEY=GOOD_KEY,
        CRISISDESK_DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'data' / 'crisisdesk.sqlite3'}",
        CELERY_BROKER_URL="filesystem://",
        CRISISDESK_SWEEP_SECONDS="1",
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        CRISISDESK_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        CRISISDESK_WORKER_CONCURRENCY="1",
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    (tmp_path / "data").mkdir()
    env["_PORT"] = str(port)
    return env


class Running:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log_path = name, log
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, marker: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log():
                return
            assert self.popen.poll() is None, f"{self.name} exited:\n{self.log()[-3000:]}"
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no {marker!r} after {timeout}s:\n{self.log()[-3000:]}")

    def terminate(self) -> int:
        """SIGTERM, as systemd and honcho stop a process; its exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
            raise AssertionError(f"{self.name} ignored SIGTERM:\n{self.log()[-3000:]}") from None


def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback only
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def wait_for_status(url: str, status: int, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = get(url)
            if last[0] == status:
                return last[2]
        except OSError as exc:  # not listening yet
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{url}: never {status}; last: {last!r}")


def run_desk(tmp_path, env, commands: dict[str, list[str]]) -> None:
    """Migrate, start web + worker + beat, check each is up, then SIGTERM each."""
    migrate = subprocess.run(
        commands["migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    base = f"http://127.0.0.1:{env['_PORT']}"
    started = []
    try:
        for name in ("web", "worker", "beat"):
            started.append(Running(name, commands[name], env, tmp_path / f"{name}.log"))
        web, worker, beat = started
        assert wait_for_status(f"{base}/healthz", 200) == b'{"status": "ok"}'
        worker.wait_for_log("ready.")
        beat.wait_for_log("beat: Starting")
        # Beat's first sweep, run by the worker: the whole desk is ready.
        wait_for_status(f"{base}/readyz", 200)
        # Production behind the proxy: plain HTTP to a page is sent to HTTPS, and a
        # request the proxy marks as HTTPS is not.
        status, headers, _body = get(f"{base}/accounts/login/")
        assert status == 301
        assert headers["Location"].startswith("https://")
        status, headers, _body = get(f"{base}/accounts/login/", **{"X-Forwarded-Proto": "https"})
        assert status == 200
        assert "Strict-Transport-Security" in headers
    finally:
        codes = {process.name: process.terminate() for process in started}
    assert codes == {"web": 0, "worker": 0, "beat": 0}, {p.name: p.log()[-2000:] for p in started}


# ------------------------------------------------------------------ tests


def test_the_procfile_starts_web_worker_and_beat(tmp_path, desk_env):
    entries = procfile()
    assert set(entries) == {"release", "web", "worker", "beat"}
    run_desk(
        tmp_path,
        desk_env,
        {name: procfile_argv(cmd) for name, cmd in entries.items()}
        | {"migrate": procfile_argv(entries["release"])},
    )


def test_the_systemd_units_start_web_worker_and_beat(tmp_path, desk_env):
    units = {
        "migrate": unit("crisisdesk-migrate.service"),
        "web": unit("crisisdesk-web.service"),
        "worker": unit("crisisdesk-worker@.service"),
        "beat": unit("crisisdesk-beat.service"),
    }
    commands = {}
    for name, keys in units.items():
        assert keys["WorkingDirectory"] == [INSTALL_DIR]
        assert keys["EnvironmentFile"] == ["/etc/crisisdesk/crisisdesk.env"]
        if name != "migrate":
            assert keys["Restart"] == ["always"]
            assert keys["KillSignal"] == ["SIGTERM"]
        env = dict(desk_env)
        # The unit's own Environment= are defaults: the environment file overrides them.
        for assignment in keys.get("Environment", []):
            for pair in shlex.split(assignment):
                key, value = pair.split("=", 1)
                env.setdefault(key, value)
        (exec_start,) = keys["ExecStart"]
        commands[name] = systemd_argv(exec_start, env)
    run_desk(tmp_path, desk_env, commands)


def test_the_environment_file_names_every_required_production_setting():
    values = env_file()
    assert values["CRISISDESK_ENV"] == "production"
    for key in ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL", "EMAIL_HOST"):
        assert key in values
    assert "127.0.0.1" in values["ALLOWED_HOSTS"].split(",")  # the probes ask over loopback


def test_the_environment_file_passes_the_deployment_checklist(desk_env):
    """`manage.py check --deploy` as DEPLOYMENT.md runs it, with the environment file."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=desk_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
