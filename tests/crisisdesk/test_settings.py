"""Settings come from the environment and refuse bad values at start-up."""

import json
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


def test_a_rabbitmq_broker_confirms_publishes_into_a_durable_queue_acknowledged_late(tmp_path):
    """RabbitMQ (DEPLOYMENT.md): publisher confirms, a durable classic queue, persistent
    messages, late acknowledgement, heartbeats; read from the app a worker would run."""
    code = (
        "import json; from crisisdesk.celery import app; c = app.conf; "
        "q = app.amqp.queues[c.task_default_queue]; "
        "print(json.dumps([c.broker_transport_options, c.task_default_queue_type, "
        "c.task_default_delivery_mode, c.task_acks_late, c.task_reject_on_worker_lost, "
        "c.broker_heartbeat, q.durable, q.auto_delete]))"
    )
    url = "amqp://crisisdesk:secret@rabbit.example.test:5672/crisisdesk"
    result = manage("shell", "-c", code, tmp_path=tmp_path, CELERY_BROKER_URL=url)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    options, queue_type, mode, acks_late, reject_lost, heartbeat, durable, auto_delete = answer
    assert options == {"confirm_publish": True}
    assert (queue_type, mode) == ("classic", "persistent")
    assert acks_late and reject_lost and durable and not auto_delete
    assert 0 < heartbeat <= 30
