"""Bad CSV through every door, and exports that spreadsheets can neither misread nor execute."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from playbooks.models import Stakeholder
from playbooks.stakeholder_import import (
    MAX_CSV_BYTES,
    CsvImportError,
    stakeholders_export_csv,
    stakeholders_import_csv,
)
from tests.factories import StakeholderFactory, StakeholderGroupFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customers(db):
    return StakeholderGroupFactory(slug="customers", name="Customers")


@pytest.fixture
def root(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


def refused(text: str) -> list:
    before = Stakeholder.objects.count()
    with pytest.raises(CsvImportError) as exc:
        stakeholders_import_csv(text=text)
    assert Stakeholder.objects.count() == before
    return exc.value.errors


def through_the_doors(text: str, root, tmp_path) -> tuple[str, str, dict]:
    path = tmp_path / "in.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CommandError) as command:
        call_command("import_stakeholders", str(path))
    browser = Client()
    browser.force_login(root)
    page = browser.post(
        reverse("admin:playbooks_stakeholder_import"),
        {"file": SimpleUploadedFile("in.csv", text.encode("utf-8"))},
    )
    assert page.status_code == 200
    api = APIClient()
    api.force_authenticate(root)
    answer = api.post("/api/v1/contacts/import/", {"csv": text}, format="json")
    assert answer.status_code == 400, answer.content
    assert Stakeholder.objects.count() == 0
    return str(command.value), page.content.decode(), answer.json()


def test_a_one_megabyte_cell_is_a_row_error(customers, root, tmp_path):
    text = "name,email,group\nAnna,anna@example.test,customers\nBig,big@example.test,customers\n"
    text = text.replace("Big", "B" * 1_000_000)
    errors = refused(text)
    assert [e.row for e in errors] == [3], errors
    assert "longer than" in str(errors[0])
    command, page, api = through_the_doors(text, root, tmp_path)
    assert "row 3, " in command and "longer than" in command
    assert "row 3, " in page and "longer than" in page
    assert api["rows"][0]["row"] == 3 and "longer than" in api["rows"][0]["message"]


def test_an_unreadable_giant_cell_is_a_row_error_too(customers):
    text = 'name,email,group\nAnna,anna@example.test,customers\n"' + "x" * 200_000 + '",,\n'
    errors = refused(text)
    assert [e.row for e in errors] == [3] and "longer than" in str(errors[0])


def test_a_long_cell_is_refused_naming_its_field(customers):
    text = "name,email,group,notes\nAnna,anna@example.test,customers," + "n" * 20_000 + "\n"
    errors = refused(text)
    assert [(e.row, e.field) for e in errors] == [(2, "notes")] and "longer than" in str(errors[0])


def test_it_refuses_a_file_larger_than_the_limit(customers, root, tmp_path):
    row = "Anna,anna@example.test,customers\n"
    text = "name,email,group\n" + row * (MAX_CSV_BYTES // len(row) + 1)
    errors = refused(text)
    assert len(errors) == 1 and "larger than" in str(errors[0])
    command, page, api = through_the_doors(text, root, tmp_path)
    assert "larger than" in command and "larger than" in page
    assert "larger than" in api["rows"][0]["message"]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("An\x00na,anna@example.test,customers,", "name"),
        ("Anna,anna@example.test,customers,call\x00me", "notes"),
        ("Anna,anna@example.test,customers,ring\x07", "notes"),
    ],
)
def test_it_refuses_control_characters_naming_row_and_field(customers, root, tmp_path, row, field):
    text = f"name,email,group,notes\nBob,bob@example.test,customers,\n{row}\n"
    errors = refused(text)
    assert [(e.row, e.field) for e in errors] == [(3, field)], errors
    assert "control character" in str(errors[0])
    command, page, api = through_the_doors(text, root, tmp_path)
    assert f"row 3, {field}: " in command and "control character" in page
    assert api["rows"][0]["field"] == field


def test_notes_keep_tabs_and_line_breaks(customers):
    stakeholders_import_csv(
        text='name,email,group,notes\nAnna,a@example.test,customers,"a\tb\r\nc"\n'
    )
    assert Stakeholder.objects.get().notes == "a\tb\r\nc"


DANGEROUS = ['=HYPERLINK("http://evil.example")', "+1+1", "-2+3", "@SUM(A1)", "\tTab", "\rCR"]


def test_the_export_neutralises_formulas_and_starts_with_a_bom(customers, root):
    for name in DANGEROUS:
        StakeholderFactory(group=customers, name=name)
    StakeholderFactory(group=customers, name="Kovács Péter", phone="+36 1 234 5678")
    text = stakeholders_export_csv(groups=[customers])
    assert text.startswith("\ufeffname,")
    for cells in list(csv.reader(io.StringIO(text[1:], newline="")))[1:]:
        assert all(cell[:1] not in ("=", "+", "-", "@", "\t", "\r") for cell in cells), cells
    assert "'=HYPERLINK" in text and "'+36 1 234 5678" in text

    api = APIClient()
    api.force_authenticate(root)
    over_api = api.get("/api/v1/contacts/export/").content
    browser = Client()
    browser.force_login(root)
    over_admin = browser.post(
        reverse("admin:playbooks_stakeholdergroup_changelist"),
        {"action": "export_csv", "_selected_action": [customers.pk]},
    ).content
    for body in (over_api, over_admin):
        assert body.startswith("\ufeff".encode())
        assert body.decode("utf-8") == text


def test_the_neutralised_export_imports_back_unchanged(customers):
    for name in [*DANGEROUS[:4], "'=quoted already", "'plain quote"]:
        StakeholderFactory(group=customers, name=name, phone="+44 20 7946 0000")
    before = sorted(Stakeholder.objects.values_list("name", "phone"))
    text = stakeholders_export_csv(groups=[customers])
    Stakeholder.objects.all().delete()
    stakeholders_import_csv(text=text)
    assert sorted(Stakeholder.objects.values_list("name", "phone")) == before
