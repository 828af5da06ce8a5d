"""What every benchmark does first: Django on an empty database of its own."""

from __future__ import annotations

import os
import tempfile


def django_on_empty_database(*, database: str, prefix: str) -> None:
    """Point Django at DATABASE_URL (default: the PostgreSQL database ``database`` on
    loopback, created if missing; a sqlite:/// URL works too), with a throw-away data
    folder, then migrate and empty it."""
    os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{database}")
    os.environ["CRISISDESK_DATA_DIR"] = tempfile.mkdtemp(prefix=prefix)
    os.environ["DJANGO_SETTINGS_MODULE"] = "crisisdesk.settings"
    os.environ["LOG_LEVEL"] = "WARNING"
    if os.environ["DATABASE_URL"].startswith("postgres"):
        from bench.escalation_latency import ensure_database

        ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)
