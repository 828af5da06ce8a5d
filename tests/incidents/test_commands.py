import pytest
from django.core.management import CommandError, call_command

from incidents.models import Incident

pytestmark = pytest.mark.django_db


def test_it_opens_and_acknowledges_from_the_command_line(team, make_playbook, broker_calls, capsys):
    playbook = make_playbook(key="outage")
    call_command(
        "open_incident",
        "Αδυναμία πληρωμών",
        "--playbook",
        "outage",
        "--severity",
        "1",
        "--by",
        "noa",
    )
    out = capsys.readouterr().out
    incident = Incident.objects.get()
    assert f"Opened {incident.reference}: Αδυναμία πληρωμών" in out
    assert "Escalation level at" in out
    assert incident.playbook == playbook and incident.opened_by.username == "noa"

    call_command("acknowledge_incident", incident.reference, "--by", "eszter")
    incident.refresh_from_db()
    assert incident.status == "acknowledged"


def test_it_says_what_is_wrong(team, make_playbook):
    make_playbook(key="outage")
    with pytest.raises(
        CommandError, match="No published playbook with key 'nope'. Published: outage"
    ):
        call_command("open_incident", "x", "--playbook", "nope")
    with pytest.raises(CommandError, match="title"):
        call_command("open_incident", "   ")
    assert Incident.objects.count() == 0
