from __future__ import annotations

import os
import shutil

import pytest

from tests.factories import UserFactory

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(condition: bool, message: str) -> None:
    """Skip on a developer's machine, fail under CI: a missing service is never a pass there."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required by CI: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _mail_and_data_isolated(settings, tmp_path):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.EMAIL_FILE_PATH = tmp_path / "mail"


@pytest.fixture(autouse=True)
def _listening_rules_forgotten():
    """Each process keeps the enabled listening rules for a few seconds
    (incidents/listening/rules.py); a test's rolled-back rules must not outlive it."""
    from incidents.listening import rules

    rules._rules_drop()
    yield
    rules._rules_drop()


@pytest.fixture(autouse=True)
def _language_reset():
    """Each test starts in the desk's language. A request through the test client leaves
    its language active in the thread (LocaleMiddleware activates, nothing deactivates:
    in a server the next request activates its own), so a Hebrew page would otherwise
    make the next test's timeline texts Hebrew."""
    from django.conf import settings as django_settings
    from django.utils import translation

    translation.activate(django_settings.LANGUAGE_CODE)
    yield
    translation.deactivate()


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    need(path is not None, "headless Chromium is not installed (Debian: apt-get install chromium)")
    return path  # type: ignore[return-value]


def _broker_reachable(url: str) -> bool:
    if url.startswith(("amqp://", "amqps://", "pyamqp://")):
        from kombu import Connection

        try:
            with Connection(url, connect_timeout=2) as broker:
                broker.ensure_connection(max_retries=1)
        except Exception:  # noqa: BLE001 - refused, unknown vhost, bad login: unreachable
            return False
        return True
    if not url.startswith(("redis://", "rediss://")):
        return True
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def smtp_server():
    from tests.realstack import SmtpSink

    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def beat_factory(tmp_path, transactional_db):
    """Start real Celery beat schedulers (sweep every second); stopped after the test."""
    from tests.realstack import SWEEP_SECONDS, make_beat

    started = []

    def start(*, name="beat1", sweep_seconds=SWEEP_SECONDS):
        process = make_beat(
            tmp_path, name=name, extra_env={"CRISISDESK_SWEEP_SECONDS": str(sweep_seconds)}
        ).start()
        started.append(process)
        process.wait_ready(marker="beat: Starting")
        return process

    yield start
    for process in started:
        process.stop()
        # Shown by pytest only when the test failed: what the process said.
        print(f"--- {process.log_path.name} (last 5000 characters)\n{process.log()}")


@pytest.fixture
def worker_factory(tmp_path, settings, transactional_db):
    """Start real Celery workers; every one started is stopped after the test."""
    from tests.realstack import make_worker

    need(
        _broker_reachable(settings.CELERY_BROKER_URL),
        f"the Celery broker at {settings.CELERY_BROKER_URL} is not reachable",
    )
    started = []

    def start(*, smtp=None, name="w1", ready=True, **kwargs):
        process = make_worker(tmp_path, smtp=smtp, name=name, **kwargs).start()
        started.append(process)
        if ready:
            process.wait_ready()
        return process

    yield start
    for process in started:
        process.stop()
        # Shown by pytest only when the test failed: what the process said.
        print(f"--- {process.log_path.name} (last 5000 characters)\n{process.log()}")


@pytest.fixture(scope="session", autouse=True)
def _no_stray_database_sessions(django_db_setup, django_db_blocker):
    """Let the test database be dropped even if a killed worker's session lingers on PostgreSQL."""
    yield
    from django.db import OperationalError, connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            try:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
            except OperationalError:
                pass  # best effort: nothing to clean if the database cannot be reached
