"""CSV exports: a UTF-8 BOM (so spreadsheet programs read Hebrew, Greek and Hungarian
right), CRLF lines, and every cell neutralised against formula injection the OWASP
way: a cell starting with = + - @, tab or carriage return (after any single quotes)
gets one more leading single quote. The stakeholder export and the post-mortem's
timeline attachment both write through ``csv_write``."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import TextIO

# A cell a spreadsheet would run as a formula, possibly behind quotes already added.
FORMULA = re.compile(r"'*[=+\-@\t\r]")


# The characters a cell FORMULA matches can start with: most cells are let through on
# one look at their first character (a long export has hundreds of thousands).
_FORMULA_FIRST = frozenset("'=+-@\t\r")


def neutralise(value: str) -> str:
    if not value or value[0] not in _FORMULA_FIRST:
        return value
    return "'" + value if FORMULA.match(value) else value


def csv_write(out: TextIO, *, header: Iterable[str], rows: Iterable[Iterable[str]]) -> None:
    """Write the BOM, the header and each row as it comes: rows may be a generator
    over a database iterator, so a long export never sits in memory at once."""
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for cells in rows:
        writer.writerow([neutralise(cell) for cell in cells])
