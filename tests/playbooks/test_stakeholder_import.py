"""CSV import of stakeholder contacts."""

import pytest
from django.core.management import CommandError, call_command

from playbooks.models import Stakeholder
from playbooks.stakeholder_import import (
    CsvImportError,
    stakeholders_export_csv,
    stakeholders_import_csv,
)
from tests.factories import StakeholderFactory, StakeholderGroupFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def groups():
    return (
        StakeholderGroupFactory(slug="customers", name="Customers"),
        StakeholderGroupFactory(slug="media", name="Media", kind="media"),
    )


GOOD = (
    "Name,E-mail,Phone,Organization,Language,Group\r\n"
    "Kovács Péter,peter@example.test,+36 1 234 5678,Példa Kft.,hu,customers\r\n"
    "יוסי מזרחי,yossi@example.test,,,he,customers\r\n"
    "Ελένη Νικολάου,eleni@example.test,,Καθημερινή,el,Media\r\n"
)


def test_it_imports_a_good_file_with_unicode_names(groups):
    report = stakeholders_import_csv(text=GOOD)
    assert (report.created, report.updated) == (3, 0)
    peter = Stakeholder.objects.get(email="peter@example.test")
    assert (peter.name, peter.organisation, peter.language, peter.group.slug) == (
        "Kovács Péter",
        "Példa Kft.",
        "hu",
        "customers",
    )
    assert Stakeholder.objects.get(name="Ελένη Νικολάου").group.slug == "media"


def test_it_reports_every_bad_cell_with_row_and_column_and_writes_nothing(groups):
    StakeholderFactory(group=groups[0])
    before = Stakeholder.objects.count()
    text = (
        "name,email,phone,language,group\n"
        "Good Person,good@example.test,,,customers\n"
        ",nobody@example.test,,,customers\n"
        "Bad Mail,not-an-address,,,customers\n"
        "Bad Phone,,call me maybe,,customers\n"
        "Bad Lang,lang@example.test,,xx,customers\n"
        "Bad Group,group@example.test,,,fans\n"
        "No Way,,,,customers\n"
    )
    with pytest.raises(CsvImportError) as exc:
        stakeholders_import_csv(text=text)
    found = {(e.row, e.field) for e in exc.value.errors}
    assert found == {
        (3, "name"),
        (4, "email"),
        (5, "phone"),
        (6, "language"),
        (7, "group"),
        (8, "email"),
    }
    assert Stakeholder.objects.count() == before


def test_it_refuses_unknown_columns_and_a_missing_group(groups):
    with pytest.raises(CsvImportError, match="Unknown column"):
        stakeholders_import_csv(text="name,email,shoe size\nA,a@example.test,44\n")
    with pytest.raises(CsvImportError, match="group"):
        stakeholders_import_csv(text="name,email\nA,a@example.test\n")


def test_it_deduplicates_by_email_in_the_file_and_against_existing_contacts(groups):
    customers = groups[0]
    StakeholderFactory(group=customers, name="Old Name", email="Anna@Example.test")
    text = (
        "name;email;organisation\n"
        "Anna First;anna@example.test;\n"
        "Anna Second;ANNA@example.test;Acme\n"
        "Bob;bob@example.test;\n"
    )
    report = stakeholders_import_csv(text="\ufeff" + text, default_group=customers)
    assert (report.created, report.updated, report.duplicates_in_file) == (1, 1, 1)
    anna = Stakeholder.objects.get(email__iexact="anna@example.test")
    assert (anna.name, anna.organisation) == ("Anna Second", "Acme")
    assert Stakeholder.objects.filter(group=customers).count() == 2


def test_a_group_column_wins_over_the_default_group(groups):
    customers, media = groups
    stakeholders_import_csv(
        text="name,email,group\nA,a@example.test,media\nB,b@example.test,\n",
        default_group=customers,
    )
    assert Stakeholder.objects.get(email="a@example.test").group == media
    assert Stakeholder.objects.get(email="b@example.test").group == customers


def test_export_then_import_changes_nothing(groups):
    stakeholders_import_csv(text=GOOD)
    text = stakeholders_export_csv(groups=groups)
    report = stakeholders_import_csv(text=text)
    assert (report.created, report.updated, report.unchanged) == (0, 0, 3)


def test_the_command_imports_and_explains_failures(groups, tmp_path, capsys):
    good = tmp_path / "contacts.csv"
    good.write_text(GOOD, encoding="utf-8")
    call_command("import_stakeholders", str(good))
    assert "3 created" in capsys.readouterr().out

    bad = tmp_path / "bad.csv"
    bad.write_text("name,email\nX,broken\n", encoding="utf-8")
    with pytest.raises(CommandError, match=r"row 2, email: Enter a valid email address"):
        call_command("import_stakeholders", str(bad), "--group", "customers")
    with pytest.raises(CommandError, match="No stakeholder group 'fans'"):
        call_command("import_stakeholders", str(good), "--group", "fans")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("name,email\nKovács,k@example.test\n".encode("latin-1"))
    with pytest.raises(CommandError, match="not UTF-8"):
        call_command("import_stakeholders", str(latin1), "--group", "customers")
