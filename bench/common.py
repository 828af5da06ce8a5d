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


def paging_playbook(*, delays: tuple[int, ...], oncall):
    """A published playbook whose escalation levels page the on-call holder of a
    crisis-manager role, ``delays[i]`` seconds after opening; ``oncall`` holds the
    rotation. Returns (playbook, role)."""
    from datetime import timedelta

    from django.utils import timezone

    from playbooks.models import (
        CrisisRole,
        EscalationLevel,
        OnCallRotation,
        Phase,
        Playbook,
        PlaybookStep,
        RotationMember,
    )
    from playbooks.services import playbook_publish

    role = CrisisRole.objects.create(slug="crisis-manager", name="Crisis manager")
    rotation = OnCallRotation.objects.create(
        name="CM", role=role, starts_at=timezone.now() - timedelta(days=1), handoff_hours=24 * 90
    )
    RotationMember.objects.create(rotation=rotation, user=oncall, position=1)
    playbook = Playbook.objects.create(
        key="bench", title="Bench", scenario="service_outage", first_statement_minutes=600
    )
    PlaybookStep.objects.create(playbook=playbook, position=1, phase=Phase.DETECT, title="Look")
    for position, delay in enumerate(delays, start=1):
        EscalationLevel.objects.create(
            playbook=playbook, position=position, delay_seconds=delay, target="role", role=role
        )
    return playbook_publish(playbook=playbook), role
