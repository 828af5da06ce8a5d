"""Mentions from CSV, by the stakeholder import's rules: every bad row named, nothing
written unless every row is good.

1. Read the file with ``crisisdesk.csvimport.read_table``, as the contacts import
   does (size and MAX_ROWS limits, the header checked: ``text`` required, the
   others optional).
2. Validate every row with the same rules as a webhook item
   (``services.mention_validate``), collecting every error.
3. If all are good, write them in one transaction through ``services.mention_record``
   (rules evaluated on each, an ``id`` seen before skipped).
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import OperationalError, transaction
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from crisisdesk.csvimport import CsvImportError, RowError, read_table
from incidents.listening import rules as listening_rules
from incidents.listening import services
from incidents.listening.models import Source

COLUMNS = (
    "id", "text", "channel", "author", "url", "language", "sentiment", "reach", "published_at",
)  # fmt: skip
MAX_ROWS = 5000


def _item(number: int, values: dict[str, str]) -> tuple[dict, list[RowError]]:
    errors: list[RowError] = []
    item: dict = {
        "external_id": values.get("id", ""),
        "text": values.get("text", ""),
        "channel": values.get("channel", ""),
        "author": values.get("author", ""),
        "url": values.get("url", ""),
        "language": values.get("language", ""),
    }
    sentiment = values.get("sentiment", "")
    if sentiment:
        try:
            item["sentiment"] = float(sentiment) if sentiment[-1].isdigit() else sentiment
        except ValueError:
            item["sentiment"] = sentiment
    reach = values.get("reach", "")
    if reach:
        if not reach.isdigit():
            errors.append(RowError(number, "reach", _("A whole number.")))
        else:
            item["reach"] = int(reach)
    published = values.get("published_at", "")
    if published:
        try:
            when: datetime | None = parse_datetime(published)
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            errors.append(
                RowError(
                    number,
                    "published_at",
                    _("A date and time with its offset, e.g. 2026-11-26T09:00:00+01:00."),
                )
            )
        else:
            item["published_at"] = when
    return item, errors


def mentions_import_csv(*, text: str, source: Source, actor=None) -> int:
    """Import the file (see the module docstring); the number of mentions written."""
    table = read_table(text, columns=COLUMNS, required=("text",), max_rows=MAX_ROWS)
    errors = table.errors
    items: list[dict] = []
    for number, values in table.rows:
        item, row_errors = _item(number, values)
        try:
            services.mention_validate(source=source, **item)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                row_errors += [RowError(number, field, m) for m in messages]
        errors += row_errors
        items.append(item)
    if errors:
        raise CsvImportError(errors)
    for attempt in range(services.DEADLOCK_ATTEMPTS):
        try:
            return _write(items, source=source, actor=actor)
        except OperationalError as exc:
            if not services.deadlocked(exc) or attempt == services.DEADLOCK_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


@transaction.atomic
def _write(items: list[dict], *, source: Source, actor) -> int:
    written = 0
    rules = listening_rules.enabled_rules()
    for item in items:
        _m, created, _f = services.mention_record(source=source, actor=actor, rules=rules, **item)
        written += created
    return written
