"""The escalation engine on real parts: a Celery worker and beat on the configured broker
(filesystem or Redis), the test database (SQLite file or PostgreSQL) and an SMTP server."""

from __future__ import annotations

import pytest
from django.utils import timezone

from incidents import services
from incidents.models import Timer

pytestmark = pytest.mark.services


def escalation_mails(smtp, incident):
    return [r for r in smtp.received if incident.reference in r.message["Subject"]]


def test_it_pages_each_level_on_time_and_stops_at_acknowledgement(
    team, make_playbook, worker_factory, beat_factory, smtp_server
):
    playbook = make_playbook(delays=(2, 2, 3))
    worker = worker_factory(smtp=smtp_server)
    beat_factory()

    incident = services.incident_open(
        title="Szolgáltatáskiesés: a fizetés nem működik", severity=1, playbook=playbook
    )
    t0 = incident.opened_at.timestamp()

    first_two = smtp_server.wait_for(2, timeout=30)
    assert len(first_two) == 2, worker.log()
    assert [r.rcpt_tos for r in first_two] == [["noa@example.test"], ["eleni@example.test"]]
    assert "level 1, not acknowledged" in first_two[0].message["Subject"]
    assert "Szolgáltatáskiesés: a fizetés nem működik" in first_two[0].message["Subject"]
    # On time: level 1 at +2 s, level 2 at +4 s (allowing for process start-up jitter).
    assert 2 <= first_two[0].at - t0 < 4
    assert 4 <= first_two[1].at - t0 < 6.5

    services.incident_acknowledge(incident=incident, actor=team["people"]["eleni"])
    level3 = Timer.objects.get(incident=incident, kind="escalation", level=3)
    assert level3.state == "cancelled"
    # Level 3 would have fired at +7 s: nothing more may arrive, counted past that.
    smtp_server.assert_nothing_more(2, after=t0 + 7)
    assert Timer.objects.filter(incident=incident, kind="escalation", state="fired").count() == 2
    html = first_two[1].message.get_body(("html",)).get_content()
    assert "/incidents/ack/" in html
    assert first_two[1].message["Message-ID"].startswith("<")
    assert timezone.now()


def test_a_sev1_pages_level_1_without_waiting_for_its_delay(
    team, make_playbook, worker_factory, beat_factory, smtp_server
):
    """The playbook pages SEV1 at once: level 1's two-minute delay is not waited for."""
    playbook = make_playbook(delays=(120, 120, 120), page_at_once_max_severity=1)
    worker = worker_factory(smtp=smtp_server)
    beat_factory()

    incident = services.incident_open(
        title="Adatszivárgás: ügyfélkártyák", severity=1, playbook=playbook
    )
    t0 = incident.opened_at.timestamp()
    first = smtp_server.wait_for(1, timeout=60)
    assert len(first) == 1, worker.log()
    assert first[0].rcpt_tos == ["noa@example.test"]
    assert "level 1, not acknowledged" in first[0].message["Subject"]
    # Well inside the two minutes level 1 would otherwise wait (start-up jitter allowed).
    assert first[0].at - t0 < 30
    incident.refresh_from_db()
    assert incident.first_paged_at is not None
    assert incident.first_paged_at.timestamp() - t0 < 30
    body = first[0].message.get_body(("plain",)).get_content()
    assert "First public statement due" in body

    services.incident_acknowledge(incident=incident, actor=team["people"]["noa"])
    assert Timer.objects.get(incident=incident, kind="escalation", level=2).state == "cancelled"
    smtp_server.assert_nothing_more(1)
