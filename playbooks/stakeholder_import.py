"""Stakeholder contacts from CSV: every error reported by row and column, nothing half-written.

1. Refuse a file larger than MAX_CSV_BYTES. Read the header (case and spaces
   ignored; "organization" accepted), sniff the delimiter (comma or semicolon),
   accept a UTF-8 BOM and CRLF. A cell longer than MAX_CELL_CHARS is a row error.
2. Validate every row with the model's own field validation (lengths, e-mail,
   no control characters) plus the import's rules, and collect every error; if
   there is one, raise CsvImportError and write nothing.
3. In one transaction, match contacts by e-mail within their group
   (case-insensitive): existing ones are updated with the non-empty cells,
   new ones created. The same e-mail twice in the file: the later row wins.

Export writes a UTF-8 BOM (so spreadsheet programs read Hebrew, Greek and
Hungarian names right) and neutralises formulas the OWASP way: a cell starting
with = + - @, tab or carriage return (after any single quotes) gets one more
leading single quote. Import takes exactly one such quote off again, so an
export imports back unchanged; a plain leading quote elsewhere is kept.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from crisisdesk.csvexport import csv_write
from crisisdesk.csvimport import (  # noqa: F401 - the import's errors and limits, named here too
    MAX_CELL_CHARS,
    MAX_CSV_BYTES,
    CsvImportError,
    RowError,
    read_table,
    unneutralise,
)
from playbooks.models import Stakeholder, StakeholderGroup

COLUMNS = ("name", "email", "phone", "organisation", "language", "group", "notes")
ALIASES = {"organization": "organisation", "e-mail": "email", "mail": "email"}
PHONE = re.compile(r"^[0-9 +\-()./]*$")


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates_in_file: int = 0


def _group_lookup() -> dict[str, StakeholderGroup]:
    lookup = {}
    for group in StakeholderGroup.objects.all():
        lookup[group.slug.casefold()] = group
        lookup[group.name.casefold()] = group
    return lookup


def stakeholders_import_csv(
    *, text: str, default_group: StakeholderGroup | None = None
) -> ImportReport:
    def group_column(header: list[str]) -> list[RowError]:
        if "group" not in header and default_group is None:
            return [RowError(1, "group", _("Add a “group” column or choose a group."))]
        return []

    table = read_table(
        text, columns=COLUMNS, required=("name",), aliases=ALIASES, header_errors=group_column
    )
    errors = table.errors
    languages = {code for code, _name in settings.LANGUAGES}
    groups = _group_lookup()
    clean: list[tuple[int, StakeholderGroup, dict]] = []
    for number, values in table.rows:
        row_errors: list[RowError] = []
        if not values.get("name"):
            row_errors.append(RowError(number, "name", _("A name is required.")))
        row_errors += _model_errors(number, values)
        email = values.get("email", "")
        phone = values.get("phone", "")
        if phone and not PHONE.match(phone):
            row_errors.append(
                RowError(
                    number,
                    "phone",
                    _("“%(v)s” is not a phone number (digits, spaces, + - ( ) only).")
                    % {"v": phone},
                )
            )
        if not email and not phone:
            row_errors.append(
                RowError(number, "email", _("Give an e-mail address or a phone number."))
            )
        language = values.get("language", "").lower()
        if language and language not in languages:
            row_errors.append(
                RowError(
                    number,
                    "language",
                    _("“%(v)s” is not one of: %(known)s.")
                    % {"v": language, "known": ", ".join(sorted(languages))},
                )
            )
        group = default_group
        if values.get("group"):
            group = groups.get(values["group"].casefold())
            if group is None:
                row_errors.append(
                    RowError(
                        number, "group", _("No stakeholder group “%(v)s”.") % {"v": values["group"]}
                    )
                )
        elif group is None:
            row_errors.append(RowError(number, "group", _("No group given for this row.")))
        if row_errors:
            errors.extend(row_errors)
            continue
        values["language"] = language
        values["email"] = email.lower() if email else ""
        clean.append((number, group, values))
    if errors:
        raise CsvImportError(errors)
    return _write(clean)


def _model_errors(number: int, values: dict[str, str]) -> list[RowError]:
    """The contact model's own field validation: lengths, e-mail, no control characters."""
    fields = ("name", "email", "phone", "organisation", "notes")
    contact = Stakeholder(**{f: values.get(f, "") for f in fields})
    skip = [f.name for f in Stakeholder._meta.fields if f.name not in fields]
    if not values.get("name"):
        skip.append("name")  # reported as required
    try:
        contact.clean_fields(exclude=skip)
    except ValidationError as exc:
        return [
            RowError(number, field, message)
            for field, messages in exc.message_dict.items()
            for message in messages
        ]
    return []


@transaction.atomic
def _write(clean: list[tuple[int, StakeholderGroup, dict]]) -> ImportReport:
    report = ImportReport()
    # The later row wins for the same e-mail in the same group.
    last: dict[tuple[int, str], int] = {}
    for index, (_n, group, values) in enumerate(clean):
        if values["email"]:
            key = (group.pk, values["email"])
            if key in last:
                report.duplicates_in_file += 1
            last[key] = index
    group_ids = {group.pk for _n, group, _v in clean}
    existing = {
        (s.group_id, s.email.lower()): s
        for s in Stakeholder.objects.filter(group_id__in=group_ids).exclude(email="")
    }
    fields = ("name", "organisation", "phone", "language", "notes")
    for index, (_n, group, values) in enumerate(clean):
        if values["email"] and last[(group.pk, values["email"])] != index:
            continue
        current = existing.get((group.pk, values["email"])) if values["email"] else None
        if current is None:
            Stakeholder.objects.create(
                group=group, email=values["email"], **{f: values.get(f, "") for f in fields}
            )
            report.created += 1
            continue
        changed = [f for f in fields if values.get(f) and getattr(current, f) != values[f]]
        for f in changed:
            setattr(current, f, values[f])
        if changed:
            current.save(update_fields=changed)
            report.updated += 1
        else:
            report.unchanged += 1
    return report


def stakeholders_export_csv(*, groups: Iterable[StakeholderGroup]) -> str:
    """CSV with a UTF-8 BOM, every cell neutralised against formula injection."""
    out = io.StringIO()
    contacts = Stakeholder.objects.filter(group__in=list(groups)).select_related("group")
    csv_write(
        out,
        header=COLUMNS,
        rows=(
            [c.name, c.email, c.phone, c.organisation, c.language, c.group.slug, c.notes]
            for c in contacts.order_by("group__slug", "name", "pk")
        ),
    )
    return out.getvalue()
