"""CSV imports, read one way for every file the desk takes (contacts, mentions).

``read_table`` refuses a file over MAX_CSV_BYTES (or over the caller's row limit),
reads it as spreadsheets write it (UTF-8 with or without a BOM, CRLF, comma or
semicolon sniffed, the quote always "), checks the header (case and spaces
ignored, aliases mapped, unknown and missing required columns named) and gives
each non-blank row as a dict of its cells, with one neutralising leading quote
taken off (what ``crisisdesk.csvexport`` adds). Rows with more cells than columns
or a cell over MAX_CELL_CHARS become row errors; the caller validates the rest
and writes nothing unless every row is good.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

MAX_CSV_BYTES = 2_000_000
MAX_CELL_CHARS = 10_000
_NEUTRALISED = re.compile(r"'+[=+\-@\t\r]")


def unneutralise(value: str) -> str:
    return value[1:] if _NEUTRALISED.match(value) else value


@dataclass(frozen=True)
class RowError:
    row: int  # the line as a spreadsheet numbers it: the header is row 1
    field: str
    message: str

    def __str__(self) -> str:
        if self.row == 0:
            return _("file: %(message)s") % {"message": self.message}
        return _("row %(row)s, %(field)s: %(message)s") % {
            "row": self.row,
            "field": self.field or "-",
            "message": self.message,
        }


class CsvImportError(Exception):
    def __init__(self, errors: list[RowError]):
        super().__init__("\n".join(map(str, errors)))
        self.errors = errors


@dataclass
class Table:
    header: list[str]
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)  # rows that could not be read


def _records(text: str) -> tuple[list[list[str]], list[RowError]]:
    """The records of the file, and an error for the one that could not be read."""
    text = text.lstrip("\ufeff")
    # Only the delimiter is sniffed: the quote is always ", as spreadsheets write it (the
    # sniffer would take the export's leading ' of a neutralised cell for a quote).
    try:
        delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;").delimiter
    except csv.Error:
        delimiter = ","
    rows: list[list[str]] = []
    try:
        # csv stops at a cell over its field size limit (131072): reported as too long.
        for cells in csv.reader(io.StringIO(text, newline=""), csv.excel, delimiter=delimiter):
            rows.append(cells)
    except csv.Error as exc:
        message = (
            _("A cell is longer than %(n)s characters.") % {"n": MAX_CELL_CHARS}
            if "field larger than field limit" in str(exc)
            else _("Not readable as CSV: %(error)s") % {"error": exc}
        )
        return rows, [RowError(len(rows) + 1, "", message)]
    return rows, []


def read_table(
    text: str,
    *,
    columns: Iterable[str],
    required: Iterable[str] = (),
    aliases: Mapping[str, str] | None = None,
    max_rows: int | None = None,
    header_errors=None,
) -> Table:
    """The file's rows (see the module docstring); raises CsvImportError for a file
    refused whole: too large, empty, too many rows, or a bad header. ``header_errors``
    (the header's columns -> a list of RowError) adds the caller's own header rules."""
    columns = tuple(columns)
    aliases = aliases or {}
    size = len(text.encode("utf-8"))
    if size > MAX_CSV_BYTES:
        raise CsvImportError(
            [
                RowError(
                    0,
                    "",
                    _("The file is larger than %(n)s bytes (%(size)s): split it.")
                    % {"n": MAX_CSV_BYTES, "size": size},
                )
            ]
        )
    records, unreadable = _records(text)
    if not records or not any(cell.strip() for cell in records[0]):
        raise CsvImportError([RowError(1, "", _("The file is empty: it needs a header row."))])
    if max_rows is not None and len(records) > max_rows + 1:
        raise CsvImportError(
            [RowError(0, "", _("At most %(n)s rows in one file: split it.") % {"n": max_rows})]
        )
    header = [aliases.get(h.strip().casefold(), h.strip().casefold()) for h in records[0]]
    errors: list[RowError] = []
    unknown = [h for h in header if h not in columns]
    if unknown:
        errors.append(
            RowError(
                1,
                "",
                _("Unknown column(s): %(cols)s. Known: %(known)s.")
                % {"cols": ", ".join(unknown), "known": ", ".join(columns)},
            )
        )
    errors += [
        RowError(1, name, _("The “%(name)s” column is required.") % {"name": name})
        for name in required
        if name not in header
    ]
    if header_errors is not None:
        errors += header_errors(header)
    if errors:
        raise CsvImportError(errors)
    table = Table(header=header, errors=list(unreadable))
    for number, cells in enumerate(records[1:], start=2):
        if not any(c.strip() for c in cells):
            continue  # blank lines are not rows
        if len(cells) > len(header):
            table.errors.append(RowError(number, "", _("More cells than columns.")))
            continue
        values = {
            h: unneutralise(cells[i].strip()) if i < len(cells) else ""
            for i, h in enumerate(header)
        }
        too_long = [
            RowError(
                number, h, _("A cell is longer than %(n)s characters.") % {"n": MAX_CELL_CHARS}
            )
            for h, v in values.items()
            if len(v) > MAX_CELL_CHARS
        ]
        if too_long:
            table.errors += too_long
            continue
        table.rows.append((number, values))
    return table
