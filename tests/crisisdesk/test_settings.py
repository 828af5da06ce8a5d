"""Settings come from the environment and refuse bad values at start-up."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k3y-" + "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ"


def manage(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DEBUG"))}
    clean.update({"CRISISDESK_DATA_DIR": str(tmp_path), **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEBUG", "ture"),
        ("EMAIL_USE_TLS", "maybe"),
        ("DATABASE_URL", "postgres//db.example.test/crisisdesk"),
        ("DATABASE_URL", "mysql-ish:/nowhere"),
        ("DATABASE_URL", "postgres://db.example.test:port/crisisdesk"),
        ("CELERY_BROKER_URL", "redis:/localhost"),
        ("CRISISDESK_ENV", "prod"),
        ("EMAIL_PORT", "twenty-five"),
    ],
)
def test_it_refuses_a_bad_value_and_names_the_variable(tmp_path, variable, value):
    env = {variable: value}
    if variable.startswith("EMAIL_"):
        env["EMAIL_HOST"] = "smtp.example.test"
    result = manage("check", tmp_path=tmp_path, **env)
    assert result.returncode != 0
    assert variable in result.stderr
    assert "Traceback" not in result.stderr.splitlines()[-1]


def test_it_refuses_to_start_in_production_without_a_secret_key(tmp_path):
    result = manage("check", tmp_path=tmp_path, CRISISDESK_ENV="production", ALLOWED_HOSTS="x.test")
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr


def test_it_refuses_to_start_in_production_without_allowed_hosts(tmp_path):
    result = manage("check", tmp_path=tmp_path, CRISISDESK_ENV="production", SECRET_KEY=GOOD_KEY)
    assert result.returncode != 0
    assert "ALLOWED_HOSTS is required" in result.stderr


def test_it_passes_the_deployment_checklist_in_production(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        tmp_path=tmp_path,
        CRISISDESK_ENV="production",
        SECRET_KEY=GOOD_KEY,
        ALLOWED_HOSTS="crisisdesk.example.test",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_it_runs_locally_with_no_configuration_at_all(tmp_path):
    result = manage("check", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
