"""Playbook YAML: byte-identical round trip, idempotent re-import, whole-file refusal with lines."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import CommandError, call_command

from playbooks import services
from playbooks.models import (
    EscalationLevel,
    MessageTemplate,
    Playbook,
    PlaybookStep,
    RotationMember,
    StakeholderGroup,
    UpdateCadence,
)
from playbooks.playbook_io import PlaybookImportError, playbooks_export_yaml, playbooks_import_yaml
from tests.factories import (
    CrisisRoleFactory,
    OnCallRotationFactory,
    StakeholderGroupFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def full_playbook():
    owner = UserFactory(username="owner")
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    cm = CrisisRoleFactory(
        slug="crisis-manager",
        name="Crisis manager",
        responsibilities="Leads.\nDecides.",
        can_approve_messages=True,
        sort_order=1,
    )
    comms = CrisisRoleFactory(slug="communications-lead", name="Communications lead", sort_order=2)
    customers = StakeholderGroupFactory(
        slug="customers", name="Customers", priority=1, preferred_channels=["email", "social_post"]
    )
    media = StakeholderGroupFactory(slug="media", name="Media", kind="media", default_language="el")
    rotation = OnCallRotationFactory(name="Crisis managers", role=cm)
    RotationMember.objects.create(rotation=rotation, user=alice, position=1)
    playbook = Playbook.objects.create(
        key="data-breach",
        title="Adatvédelmi incidens",
        scenario="data_breach",
        summary="Line one.\nLine two: “quoted”.",
        severity_guidance="SEV1: customer data out.",
        owner=owner,
        review_cycle_days=90,
        last_reviewed_on=dt.date(2026, 10, 1),
        first_statement_minutes=45,
        escalation_repeat_count=2,
        page_at_once_max_severity=1,
        roll_call_minutes=7,
    )
    PlaybookStep.objects.create(
        playbook=playbook,
        position=1,
        phase="detect",
        title="Confirm",
        role=cm,
        due_offset_minutes=0,
        instructions="Check logs.\nCall legal.",
    )
    PlaybookStep.objects.create(
        playbook=playbook,
        position=2,
        phase="communicate",
        title="Holding statement",
        role=comms,
        due_offset_minutes=30,
    )
    PlaybookStep.objects.create(playbook=playbook, position=3, phase="learn", title="Review")
    MessageTemplate.objects.create(
        playbook=playbook,
        name="Customer notice",
        audience=customers,
        channel="email",
        language="en",
        subject="{incident_reference}: {incident_title}",
        body="Dear {recipient_name},\nwe are sorry.\n",
    )
    MessageTemplate.objects.create(
        playbook=playbook,
        name="Customer notice",
        audience=customers,
        channel="email",
        language="he",
        subject="עדכון: {incident_title}",
        body="שלום {recipient_name},\nאנו מצטערים.\n",
    )
    MessageTemplate.objects.create(
        playbook=playbook,
        name="Press",
        audience=media,
        channel="press_release",
        language="el",
        subject="Ανακοίνωση",
        body="Η {company} ενημερώνει.\n",
    )
    EscalationLevel.objects.create(
        playbook=playbook, position=1, delay_seconds=300, target="role", role=cm
    )
    level2 = EscalationLevel.objects.create(
        playbook=playbook, position=2, delay_seconds=600, target="users"
    )
    level2.users.set([bob, alice])
    EscalationLevel.objects.create(
        playbook=playbook, position=3, delay_seconds=900, target="rotation", rotation=rotation
    )
    UpdateCadence.objects.create(playbook=playbook, audience=customers, every_minutes=120)
    UpdateCadence.objects.create(playbook=playbook, audience=media, every_minutes=240)
    return services.playbook_publish(playbook=playbook)


def wipe_playbooks():
    for model in (UpdateCadence, EscalationLevel, MessageTemplate, PlaybookStep, Playbook):
        model.objects.all().delete()
    StakeholderGroup.objects.all().delete()


def test_it_round_trips_byte_for_byte(full_playbook):
    Playbook.objects.filter(pk=full_playbook.pk).update(last_reviewed_on=dt.date(2026, 10, 1))
    first = playbooks_export_yaml(playbooks=[Playbook.objects.get(pk=full_playbook.pk)])
    assert "Adatvédelmi incidens" in first and "עדכון" in first and "Ανακοίνωση" in first
    assert "instructions: |" in first  # multi-line text as block scalars
    assert "page_at_once_max_severity: 1\n" in first
    wipe_playbooks()

    result = playbooks_import_yaml(text=first)
    assert len(result.created) == 1 and result.groups_created == 2
    again = playbooks_export_yaml(playbooks=result.created)
    assert again == first
    assert "roll_call_minutes: 7" in first and result.created[0].roll_call_minutes == 7


def test_it_leaves_an_identical_playbook_unchanged(full_playbook):
    text = playbooks_export_yaml(playbooks=[full_playbook])
    counts = (
        Playbook.objects.count(),
        PlaybookStep.objects.count(),
        MessageTemplate.objects.count(),
    )
    result = playbooks_import_yaml(text=text)
    assert result.created == [] and [p.pk for p in result.unchanged] == [full_playbook.pk]
    assert (
        Playbook.objects.count(),
        PlaybookStep.objects.count(),
        MessageTemplate.objects.count(),
    ) == counts


def test_it_imports_changed_content_as_a_new_version_and_keeps_the_old_one(full_playbook):
    text = playbooks_export_yaml(playbooks=[full_playbook]).replace(
        "title: Confirm", "title: Confirm the scope"
    )
    result = playbooks_import_yaml(text=text)
    (new,) = result.created
    assert (new.key, new.version, new.status) == ("data-breach", 2, "published")
    full_playbook.refresh_from_db()
    assert full_playbook.status == "retired"
    assert full_playbook.steps.get(position=1).title == "Confirm"
    assert new.steps.get(position=1).title == "Confirm the scope"


def import_error(text: str) -> list[str]:
    before = (Playbook.objects.count(), StakeholderGroup.objects.count())
    with pytest.raises(PlaybookImportError) as exc:
        playbooks_import_yaml(text=text)
    assert (Playbook.objects.count(), StakeholderGroup.objects.count()) == before
    return exc.value.errors


GOOD = """\
format: crisisdesk-playbooks/1
stakeholder_groups:
  - slug: customers
    name: Customers
    kind: customers
playbooks:
  - key: outage
    title: Outage
    scenario: service_outage
    status: draft
    steps:
      - phase: detect
        title: Look
    templates:
      - name: Notice
        audience: customers
        channel: email
        body: "{incident_title} is being fixed."
    escalation:
      - delay_seconds: 60
        target: users
        users: [alice]
"""


def test_a_good_small_file_imports(db):
    UserFactory(username="alice")
    result = playbooks_import_yaml(text=GOOD)
    assert result.created[0].status == "draft" and result.created[0].templates.count() == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("scenario: service_outage", "scenario: alien_invasion"),
            "line 9: playbooks[0].scenario: “alien_invasion” is not one of",
        ),
        (
            ("phase: detect", "phase: panic"),
            "line 12: playbooks[0].steps[0].phase: “panic” is not one of",
        ),
        (
            ("title: Look", "title: Look\n        role: nobody"),
            "line 14: playbooks[0].steps[0].role: unknown role “nobody”",
        ),
        (
            ("{incident_title} is", "{incident_titel} is"),
            "line 18: playbooks[0].templates[0].body: Unknown placeholder(s): {incident_titel}",
        ),
        (
            ("audience: customers", "audience: fans"),
            "line 16: playbooks[0].templates[0].audience: unknown stakeholder group “fans”",
        ),
        (
            ("delay_seconds: 60", "delay_seconds: soon"),
            "line 20: playbooks[0].escalation[0].delay_seconds: expected a whole number",
        ),
        (
            ("users: [alice]", "users: [alice]\n        role: crisis-manager"),
            "playbooks[0].escalation[0].role: does not go with target “users”",
        ),
        (
            ("users: [alice]", "users: [zed]"),
            "line 22: playbooks[0].escalation[0].users: unknown user(s) zed",
        ),
        (
            ("    status: draft\n", "    status: draft\n    colour: red\n"),
            "line 11: playbooks[0].colour: unknown field",
        ),
        (
            ("format: crisisdesk-playbooks/1", "format: something-else"),
            "line 1: format: must be “crisisdesk-playbooks/1”",
        ),
    ],
)
def test_it_refuses_a_bad_file_whole_naming_the_line(db, change, expected):
    UserFactory(username="alice")
    errors = import_error(GOOD.replace(*change, 1))
    assert any(e.startswith(expected) or expected in e for e in errors), errors


def test_it_reports_every_error_not_only_the_first(db):
    UserFactory(username="alice")
    text = GOOD.replace("phase: detect", "phase: panic").replace(
        "channel: email", "channel: pigeon"
    )
    errors = import_error(text)
    assert len(errors) == 2


def test_it_reports_a_syntax_error_with_its_line(db):
    errors = import_error("format: crisisdesk-playbooks/1\nplaybooks:\n  - key: [unclosed\n")
    assert errors[0].startswith("line 4: not valid YAML") or errors[0].startswith(
        "line 3: not valid YAML"
    )


def test_it_refuses_to_publish_a_playbook_nobody_would_be_paged_by(db):
    text = GOOD.replace("status: draft", "status: published").split("    escalation:")[0]
    errors = import_error(text)
    assert "no escalation level" in errors[0]


def test_the_commands_export_and_import(full_playbook, tmp_path, capsys):
    out = tmp_path / "playbooks.yaml"
    call_command("export_playbooks", "-o", str(out))
    assert "data-breach" in out.read_text(encoding="utf-8")
    call_command("import_playbooks", str(out))
    assert "unchanged data-breach v1" in capsys.readouterr().out

    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("phase: detect", "phase: panic"), encoding="utf-8")
    with pytest.raises(CommandError, match=r"bad.yaml: nothing imported, 1 error\(s\)"):
        call_command("import_playbooks", str(out), str(bad))
    with pytest.raises(CommandError, match="No published playbook with key"):
        call_command("export_playbooks", "nope")
