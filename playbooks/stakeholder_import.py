"""Stakeholder contacts from CSV: every error reported by row and column, nothing half-written.

1. Read the header (case and spaces ignored; "organization" accepted), sniff
   the delimiter (comma or semicolon), accept a UTF-8 BOM and CRLF.
2. Validate every row and collect every error; if there is one, raise
   CsvImportError and write nothing.
3. In one transaction, match contacts by e-mail within their group
   (case-insensitive): existing ones are updated with the non-empty cells,
   new ones created. The same e-mail twice in the file: the later row wins.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils.translation import gettext as _

from playbooks.models import Stakeholder, StakeholderGroup

COLUMNS = ("name", "email", "phone", "organisation", "language", "group", "notes")
ALIASES = {"organization": "organisation", "e-mail": "email", "mail": "email"}
PHONE = re.compile(r"^[0-9 +\-()./]*$")
MAX = {f.name: f.max_length for f in Stakeholder._meta.fields if getattr(f, "max_length", None)}


@dataclass(frozen=True)
class RowError:
    row: int  # the line as a spreadsheet numbers it: the header is row 1
    field: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, {self.field or '-'}: {self.message}"


class CsvImportError(Exception):
    def __init__(self, errors: list[RowError]):
        super().__init__("\n".join(map(str, errors)))
        self.errors = errors


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates_in_file: int = 0


def _reader(text: str) -> csv.reader:
    text = text.lstrip("\ufeff")
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;")
    except csv.Error:
        dialect = csv.excel
    return csv.reader(io.StringIO(text, newline=""), dialect)


def _group_lookup() -> dict[str, StakeholderGroup]:
    lookup = {}
    for group in StakeholderGroup.objects.all():
        lookup[group.slug.casefold()] = group
        lookup[group.name.casefold()] = group
    return lookup


def stakeholders_import_csv(
    *, text: str, default_group: StakeholderGroup | None = None
) -> ImportReport:
    rows = list(_reader(text))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise CsvImportError([RowError(1, "", _("The file is empty: it needs a header row."))])
    header = [ALIASES.get(h.strip().casefold(), h.strip().casefold()) for h in rows[0]]
    errors: list[RowError] = []
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        errors.append(
            RowError(
                1,
                "",
                _("Unknown column(s): %(cols)s. Known: %(known)s.")
                % {"cols": ", ".join(unknown), "known": ", ".join(COLUMNS)},
            )
        )
    if "name" not in header:
        errors.append(RowError(1, "name", _("The “name” column is required.")))
    if "group" not in header and default_group is None:
        errors.append(RowError(1, "group", _("Add a “group” column or choose a group.")))
    if errors:
        raise CsvImportError(errors)

    languages = {code for code, _name in settings.LANGUAGES}
    groups = _group_lookup()
    clean: list[tuple[int, StakeholderGroup, dict]] = []
    for number, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue  # blank lines are not contacts
        if len(cells) > len(header):
            errors.append(RowError(number, "", _("More cells than columns.")))
            continue
        values = {h: (cells[i].strip() if i < len(cells) else "") for i, h in enumerate(header)}
        row_errors = []
        if not values.get("name"):
            row_errors.append(RowError(number, "name", _("A name is required.")))
        for fld in ("name", "email", "phone", "organisation"):
            if len(values.get(fld, "")) > MAX[fld]:
                row_errors.append(
                    RowError(number, fld, _("Longer than %(n)s characters.") % {"n": MAX[fld]})
                )
        email = values.get("email", "")
        if email:
            try:
                validate_email(email)
            except ValidationError:
                row_errors.append(
                    RowError(number, "email", _("“%(v)s” is not an e-mail address.") % {"v": email})
                )
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
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    contacts = Stakeholder.objects.filter(group__in=list(groups)).select_related("group")
    for c in contacts.order_by("group__slug", "name", "pk"):
        writer.writerow(
            [c.name, c.email, c.phone, c.organisation, c.language, c.group.slug, c.notes]
        )
    return out.getvalue()
