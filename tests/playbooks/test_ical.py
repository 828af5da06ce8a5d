import datetime as dt

import pytest
from django.utils import timezone
from icalendar import Calendar

from playbooks.models import RotationMember
from playbooks.oncall import rotation_ical_url
from tests.factories import CrisisRoleFactory, OnCallRotationFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def rotation():
    role = CrisisRoleFactory(name="Κύριος εκπρόσωπος")
    rotation = OnCallRotationFactory(
        role=role,
        name="Spokespeople",
        timezone="Asia/Jerusalem",
        handoff_hours=168,
        starts_at=timezone.now() - dt.timedelta(days=3),
    )
    for position, (first, last) in enumerate([("נועה", "לוי"), ("Ελένη", "Παπαδοπούλου")], start=1):
        user = UserFactory(first_name=first, last_name=last)
        RotationMember.objects.create(rotation=rotation, user=user, position=position)
    return rotation


def test_it_serves_the_shifts_as_a_calendar_feed(client, rotation, settings):
    settings.SITE_URL = "https://desk.example.test"
    url = rotation_ical_url(rotation)
    assert url.startswith("https://desk.example.test/playbooks/oncall/")
    response = client.get(url.removeprefix(settings.SITE_URL))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"

    cal = Calendar.from_ical(response.content)
    events = list(cal.walk("VEVENT"))
    assert 20 <= len(events) <= 32  # weekly shifts from 4 weeks back to 26 weeks ahead
    summaries = [str(e["SUMMARY"]) for e in events]
    assert summaries[0] == "On call: Κύριος εκπρόσωπος — נועה לוי"
    assert summaries[1] == "On call: Κύριος εκπρόσωπος — Ελένη Παπαδοπούλου"
    assert len({str(e["UID"]) for e in events}) == len(events)
    first = events[0]
    assert first.decoded("DTSTART") == rotation.starts_at.replace(microsecond=0)
    assert first.decoded("DTEND") - first.decoded("DTSTART") == dt.timedelta(weeks=1)
    assert str(cal["X-WR-TIMEZONE"]) == "Asia/Jerusalem"


def test_it_hides_the_feed_behind_its_token(client, rotation):
    assert client.get(f"/playbooks/oncall/{rotation.pk}/wrong-token.ics").status_code == 404
    assert client.get(f"/playbooks/oncall/999999/{rotation.ical_token}.ics").status_code == 404
