"""Bad YAML through every door (command, admin upload, API): a clear error, nothing written."""

from __future__ import annotations

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from playbooks.models import CrisisRole, Playbook, StakeholderGroup
from playbooks.playbook_io import (
    MAX_DOCUMENT_BYTES,
    MAX_NESTING_DEPTH,
    PlaybookImportError,
    playbooks_import_yaml,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

GOOD = """\
format: crisisdesk-playbooks/1
roles:
  - slug: lead
    name: Lead
stakeholder_groups:
  - slug: customers
    name: Customers
    kind: customers
playbooks:
  - key: outage
    title: Outage
    scenario: service_outage
    status: draft
    review_cycle_days: 90
    steps:
      - phase: detect
        title: Look
        due_offset_minutes: 30
    escalation:
      - delay_seconds: 60
        target: users
        users: [alice]
"""

BOMB = """\
format: crisisdesk-playbooks/1
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
playbooks: []
"""


@pytest.fixture
def alice(db):
    return UserFactory(username="alice")


def errors_of(text: str) -> list[str]:
    before = (
        Playbook.objects.count(),
        CrisisRole.objects.count(),
        StakeholderGroup.objects.count(),
    )
    with pytest.raises(PlaybookImportError) as exc:
        playbooks_import_yaml(text=text)
    after = (Playbook.objects.count(), CrisisRole.objects.count(), StakeholderGroup.objects.count())
    assert after == before
    return exc.value.errors


def through_the_doors(text: str, tmp_path) -> tuple[str, str, dict]:
    """The same file through the command, the admin's import page and the API."""
    path = tmp_path / "in.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CommandError) as command:
        call_command("import_playbooks", str(path))
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    browser = Client()
    browser.force_login(root)
    page = browser.post(
        reverse("admin:playbooks_playbook_import"),
        {"file": SimpleUploadedFile("in.yaml", text.encode("utf-8"))},
    )
    assert page.status_code == 200
    api = APIClient()
    api.force_authenticate(root)
    answer = api.post("/api/v1/playbooks/import/", {"yaml": text}, format="json")
    assert answer.status_code == 400, answer.content
    assert Playbook.objects.count() == 0
    return str(command.value), page.content.decode(), answer.json()


def test_a_good_file_still_imports(alice):
    assert playbooks_import_yaml(text=GOOD).created[0].key == "outage"


def test_it_refuses_an_alias_bomb_at_once(db, tmp_path):
    started = time.monotonic()
    errors = errors_of(BOMB)
    assert time.monotonic() - started < 1
    assert errors[0].startswith("line 2: ") and "anchors and aliases" in errors[0]
    command, page, api = through_the_doors(BOMB, tmp_path)
    assert "anchors and aliases" in command
    assert "anchors and aliases" in page
    assert "anchors and aliases" in api["errors"][0]


def test_it_refuses_nesting_deeper_than_the_limit(db, tmp_path):
    deep = "format: crisisdesk-playbooks/1\nplaybooks: " + "[" * 5000 + "]" * 5000 + "\n"
    errors = errors_of(deep)
    assert errors[0].startswith("line 2: ") and f"deeper than {MAX_NESTING_DEPTH}" in errors[0]
    command, page, api = through_the_doors(deep, tmp_path)
    assert f"deeper than {MAX_NESTING_DEPTH}" in command
    assert f"deeper than {MAX_NESTING_DEPTH}" in page
    assert f"deeper than {MAX_NESTING_DEPTH}" in api["errors"][0]
    block = "format: crisisdesk-playbooks/1\nplaybooks:\n" + "".join(
        "  " * n + "- \n" for n in range(1, 60)
    )
    assert "deeper than" in errors_of(block)[0]


def test_it_refuses_a_document_larger_than_the_limit(db, tmp_path):
    big = GOOD + "# " + "x" * MAX_DOCUMENT_BYTES + "\n"
    errors = errors_of(big)
    assert len(errors) == 1 and "larger than" in errors[0]
    command, page, api = through_the_doors(big, tmp_path)
    assert "larger than" in command and "larger than" in page and "larger than" in api["errors"][0]


def test_it_refuses_a_list_used_as_a_key(alice, tmp_path):
    text = GOOD.replace("    status: draft\n", "    status: draft\n    ? [a, b]\n    : 1\n")
    errors = errors_of(text)
    assert any(e.startswith("line 14: ") and "key must be text" in e for e in errors), errors
    command, page, api = through_the_doors(text, tmp_path)
    assert "key must be text" in command and "key must be text" in page
    assert any("key must be text" in e for e in api["errors"])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("review_cycle_days: 90", "review_cycle_days: 100000000000000000000"),
            "line 14: playbooks[0].review_cycle_days: Ensure this value is less than or equal "
            "to 1096",
        ),
        (
            ("due_offset_minutes: 30", "due_offset_minutes: 9999999999"),
            "line 18: playbooks[0].steps[0].due_offset_minutes: Ensure this value is less than "
            "or equal to 43200",
        ),
        (
            ("delay_seconds: 60", "delay_seconds: 100000000000000000000"),
            "line 20: playbooks[0].escalation[0].delay_seconds: Ensure this value is less than "
            "or equal to 86400",
        ),
        (
            ("    status: draft\n", "    status: draft\n    escalation_repeat_count: 1000\n"),
            "line 14: playbooks[0].escalation_repeat_count: Ensure this value",
        ),
        (
            ("    status: draft\n", "    status: draft\n    first_statement_minutes: 99999999\n"),
            "line 14: playbooks[0].first_statement_minutes: Ensure this value",
        ),
        (
            ("    status: draft\n", "    status: draft\n    page_at_once_max_severity: 5\n"),
            "line 14: playbooks[0].page_at_once_max_severity: Ensure this value is less than "
            "or equal to 4",
        ),
        (
            ("    status: draft\n", "    status: draft\n    page_at_once_max_severity: SEV1\n"),
            "line 14: playbooks[0].page_at_once_max_severity: expected a whole number",
        ),
        (
            ("    status: draft\n", "    status: draft\n    roll_call_minutes: 1441\n"),
            "line 14: playbooks[0].roll_call_minutes: Ensure this value is less than or equal to 1440",
        ),
        (
            ("    status: draft\n", "    status: draft\n    reply_minutes: 0\n"),
            "line 14: playbooks[0].reply_minutes: Ensure this value is greater than or equal to 1",
        ),
        (
            (
                "    status: draft\n",
                "    status: draft\n    reply_deadlines:\n      - channel: myspace\n"
                "        minutes: 10\n",
            ),
            "line 15: playbooks[0].reply_deadlines: Entry 1: “myspace” is not a channel",
        ),
        (
            ("    status: draft\n", "    status: draft\n    reply_deadlines: soon\n"),
            "line 14: playbooks[0].reply_deadlines: expected a list",
        ),
    ],
)
def test_it_reports_out_of_bound_numbers_as_field_errors(alice, tmp_path, change, expected):
    text = GOOD.replace(*change)
    errors = errors_of(text)
    assert any(e.startswith(expected) for e in errors), errors
    command, page, api = through_the_doors(text, tmp_path)
    assert expected in command and expected.split(": ", 1)[1][:40] in page
    assert any(e.startswith(expected) for e in api["errors"])


@pytest.mark.parametrize(
    ("change", "line", "path"),
    [
        (("key: outage", 'key: "out age"'), 10, "playbooks[0].key"),
        (("key: outage", 'key: "outage\\u202e"'), 10, "playbooks[0].key"),
        (("slug: lead", 'slug: "le\\u202ead"'), 3, "roles[0].slug"),
        (("slug: customers", 'slug: "cust omers"'), 6, "stakeholder_groups[0].slug"),
    ],
)
def test_it_refuses_keys_and_slugs_that_are_not_slugs(alice, change, line, path):
    errors = errors_of(GOOD.replace(*change))
    assert any(e.startswith(f"line {line}: {path}: ") and "slug" in e.lower() for e in errors), (
        errors
    )


def test_it_refuses_a_nul_character_in_any_text(alice, tmp_path):
    escaped = GOOD.replace("title: Look", 'title: "Lo\\0ok"')
    errors = errors_of(escaped)
    assert any(
        e.startswith("line 17: playbooks[0].steps[0].title: ") and "control character" in e
        for e in errors
    ), errors
    command, page, api = through_the_doors(escaped, tmp_path)
    assert "control character" in command and "control character" in page
    assert any("control character" in e for e in api["errors"])

    raw = GOOD.replace("title: Outage", "title: Out\x00age")
    errors = errors_of(raw)
    assert errors[0].startswith("line 11: ") and "control character" in errors[0], errors
    raw_bell = GOOD.replace("name: Lead", 'name: "Le\\aad"')
    assert any(e.startswith("line 4: roles[0].name: ") for e in errors_of(raw_bell))


def test_it_names_the_line_of_an_unpublishable_status(db):
    text = GOOD.replace("status: draft", "status: published").split("    escalation:")[0]
    errors = errors_of(text)
    assert errors and all(e.startswith("line 13: playbooks[0].status: ") for e in errors), errors
    assert any("no escalation level" in e for e in errors)


def test_an_unknown_field_does_not_hide_the_other_errors(alice):
    text = GOOD.replace("    status: draft\n", "    status: draft\n    colour: red\n").replace(
        "phase: detect", "phase: panic"
    )
    errors = errors_of(text)
    assert any("playbooks[0].colour: unknown field" in e for e in errors)
    assert any("playbooks[0].steps[0].phase" in e for e in errors), errors
    role_text = GOOD.replace("    name: Lead\n", "    name: Lead\n    hat: red\n").replace(
        "slug: lead", "slug: le ad"
    )
    errors = errors_of(role_text)
    assert any("roles[0].hat: unknown field" in e for e in errors)
    assert any("roles[0].slug" in e for e in errors), errors


@pytest.mark.parametrize("position", [0, 2])
def test_escalation_positions_in_the_file_must_count_from_one(alice, position):
    text = GOOD.replace(
        "      - delay_seconds: 60\n", f"      - position: {position}\n        delay_seconds: 60\n"
    )
    errors = errors_of(text)
    assert any(e.startswith("line 20: playbooks[0].escalation[0].position: ") for e in errors), (
        errors
    )
    good = GOOD.replace(
        "      - delay_seconds: 60\n", "      - position: 1\n        delay_seconds: 60\n"
    )
    assert playbooks_import_yaml(text=good).created[0].escalation_levels.get().position == 1
