"""The report rendered: the HTML page, Markdown and PDF (WeasyPrint).

The HTML page shows the full timeline a page at a time, the Markdown streams it,
and the PDF carries it as an attached CSV (its printed pages stay bounded)."""

from __future__ import annotations

import io
import tempfile
from collections import namedtuple
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import BinaryIO, TextIO

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db.models import TextField
from django.db.models.functions import Cast
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

from crisisdesk.csvexport import csv_write
from incidents.models import (
    Incident,
    PostMortem,
    TimelineEntry,
)
from incidents.postmortem.facts import (
    AudienceMessages,
    Report,
    instant_from_text,
    person_name,
)

# The printed report is bounded whatever the record's size: it carries what executives
# read, each long list cut at these lengths with a line saying so, and the full timeline
# goes into the PDF as an attached CSV (bench/postmortem_report.py). The HTML page cuts
# escalations and acknowledgements the same way (its timeline, a page at a time, has
# every entry) and lists every message; Markdown keeps all.
PRINT_ESCALATIONS_MAX = 50
PRINT_ACKNOWLEDGEMENTS_MAX = 10
PRINT_MESSAGES_MAX = 50
# Role holders, roll-call answers, tasks and action items, each.
PRINT_ROWS_MAX = 100
TIMELINE_CSV_NAME = "timeline.csv"
TIMELINE_CSV_HEADER = ("id", "at", "kind", "text", "by", "corrects")
TIMELINE_FIELDS = ("pk", "at", "kind", "text", "actor_id", "corrects_id")
# Rows read from the database at a time when the timeline is streamed.
TIMELINE_CHUNK = 2000
# Timeline entries per page of the HTML report.
TIMELINE_PAGE_SIZE = 500


def timeline_entries(incident: Incident):
    """The incident's whole timeline, oldest first, as a queryset of rows to page or
    stream: rows, not model instances, as a record can hold tens of thousands."""
    return (
        TimelineEntry.objects.filter(incident=incident)
        .order_by("at", "pk")
        .values_list(*TIMELINE_FIELDS, named=True)
    )


TimelineRow = namedtuple("TimelineRow", TIMELINE_FIELDS)


def timeline_stream(incident: Incident) -> Iterator[TimelineRow]:
    """The incident's whole timeline, oldest first, streamed from the database.

    Each instant is read as text (``instant_from_text``).
    """
    rows = (
        TimelineEntry.objects.filter(incident=incident)
        .order_by("at", "pk")
        .annotate(at_text=Cast("at", TextField()))
        .values_list("pk", "at_text", "kind", "text", "actor_id", "corrects_id")
    )
    for pk, at, kind, text, actor_id, corrects_id in rows.iterator(chunk_size=TIMELINE_CHUNK):
        yield TimelineRow(pk, instant_from_text(at), kind, text, actor_id, corrects_id)


def actor_names(incident: Incident) -> dict[int, str]:
    """Who wrote the incident's timeline entries, by user id: one query for any length."""
    actors = TimelineEntry.objects.filter(incident=incident).values("actor_id")
    return {u.pk: person_name(u) for u in get_user_model().objects.filter(pk__in=actors)}


def _timeline_rendered(timeline: Iterable, names: dict[int, str], *, mode: str) -> str:
    """Timeline rows, rendered here rather than in the template: it is the one part of
    the report that runs to thousands of rows (bench/postmortem_report.py)."""
    correction = escape(_("correction"))
    tz = timezone.get_current_timezone()
    parts = []
    for e in timeline:
        when = e.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
        who = names.get(e.actor_id, "")
        if mode == "markdown":
            parts.append(f"- {when} {e.text}" + (f" ({who})" if who else "") + "\n")
        else:
            note = f" <small>({correction})</small>" if e.corrects_id else ""
            parts.append(
                f'<tr class="kind-{e.kind}"><td>{when}</td>'
                f"<td><bdi>{escape(e.text)}</bdi>{note}</td><td>{escape(who)}</td></tr>"
            )
    text = "".join(parts)
    return text if mode == "markdown" else mark_safe(text)  # noqa: S308 - every value escaped


def _chunks(rows: Iterable, size: int = TIMELINE_CHUNK) -> Iterator[list]:
    """The rows (a stream from the database) in lists of ``size``."""
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def timeline_csv_write(incident: Incident, out: TextIO) -> None:
    """The full timeline as CSV (BOM, neutralised cells), streamed from the database."""
    tz = timezone.get_current_timezone()
    names = actor_names(incident)
    csv_write(
        out,
        header=TIMELINE_CSV_HEADER,
        rows=(
            [
                str(e.pk),
                e.at.astimezone(tz).isoformat(),
                e.kind,
                e.text,
                names.get(e.actor_id, ""),
                str(e.corrects_id or ""),
            ]
            for e in timeline_stream(incident)
        ),
    )


def _messages_capped(report: Report, limit: int) -> list[AudienceMessages]:
    """The first ``limit`` messages (corrections count with their original), by group."""
    groups, left = [], limit
    for group in report.messages:
        if left <= 0:
            break
        rows = group.rows[:left]
        left -= sum(1 + len(row.corrections) for row in rows)
        groups.append(replace(group, rows=rows))
    return groups


def report_context(report: Report, *, mode: str = "html", timeline_page: object = 1) -> dict:
    """What the templates read. ``mode`` is "html" (the page: one page of the timeline,
    ``timeline_page`` as the query string gave it), "markdown" (the timeline is streamed
    after it) or "print" (bounded lists; the timeline is attached as CSV)."""
    narrative = _narrative_sections(report.postmortem)
    context = {
        "report": report,
        "incident": report.incident,
        "postmortem": report.postmortem,
        # Summary and impact open the report; the reflection follows the facts.
        "narrative_head": narrative[:2],
        "narrative_tail": narrative[2:],
        "company": settings.COMPANY_NAME,
        "escalations": report.escalations,
        "acknowledgements": report.acknowledgements,
        # Not "messages": base.html shows the messages framework's notices by that name.
        "message_groups": report.messages,
        "assignments": report.assignments,
        "roll_call": report.roll_call,
        "tasks": report.tasks,
        "action_items": report.action_items,
    }
    if mode == "markdown":
        return context  # a file: every escalation, acknowledgement and message
    messages = _messages_capped(report, PRINT_MESSAGES_MAX)
    context.update(
        escalations=report.escalations[:PRINT_ESCALATIONS_MAX],
        acknowledgements=report.acknowledgements[:PRINT_ACKNOWLEDGEMENTS_MAX],
        message_groups=messages,
        messages_shown=sum(1 + len(row.corrections) for group in messages for row in group.rows),
        timeline_csv=TIMELINE_CSV_NAME,
    )
    if mode == "print":
        # Lists that grow with people and steps rather than entries: on the page in full.
        context.update(
            assignments=report.assignments[:PRINT_ROWS_MAX],
            roll_call=report.roll_call[:PRINT_ROWS_MAX],
            tasks=report.tasks[:PRINT_ROWS_MAX],
            action_items=report.action_items[:PRINT_ROWS_MAX],
        )
        context["rest"] = _("all are in the attached %(csv)s") % {"csv": TIMELINE_CSV_NAME}
    else:
        # The page lists every message: who was told in which language is nowhere else.
        context.update(message_groups=report.messages, messages_shown=report.message_count)
        context["rest"] = _("all are in the full timeline below")
        paginator = Paginator(timeline_entries(report.incident), TIMELINE_PAGE_SIZE)
        page = paginator.get_page(timeline_page)
        context.update(
            timeline_page=page,
            timeline_rendered=_timeline_rendered(
                page.object_list, actor_names(report.incident), mode="html"
            ),
        )
    return context


def _narrative_sections(postmortem: PostMortem | None) -> list[tuple[str, str]]:
    if postmortem is None:
        return []
    return [
        (str(PostMortem._meta.get_field(name).verbose_name), getattr(postmortem, name))
        for name in PostMortem.NARRATIVE
    ]


def report_markdown_chunks(report: Report) -> Iterator[str]:
    """The Markdown report in pieces: the facts, then the full timeline streamed from the
    database a chunk at a time, so a long record never sits in memory as one string.
    The time zone is taken now: a streaming response reads the pieces after the view."""
    head = render_to_string("incidents/postmortem.md", report_context(report, mode="markdown"))
    tz = timezone.get_current_timezone()

    def pieces() -> Iterator[str]:
        yield head
        names = actor_names(report.incident)
        with timezone.override(tz):
            for chunk in _chunks(timeline_stream(report.incident)):
                yield _timeline_rendered(chunk, names, mode="markdown")

    return pieces()


def report_markdown(report: Report) -> str:
    return "".join(report_markdown_chunks(report))


def report_html(report: Report, *, request=None, timeline_page: object = 1) -> str:
    return render_to_string(
        "incidents/postmortem.html",
        report_context(report, timeline_page=timeline_page),
        request=request,
    )


class PdfUnavailable(Exception):
    """WeasyPrint could not load: the Pango system library is missing."""


def report_pdf(report: Report) -> bytes:
    """The report as PDF: chart, tables and page numbers (WeasyPrint)."""
    try:
        import weasyprint
    except OSError as exc:  # WeasyPrint loads Pango when imported
        raise PdfUnavailable(
            _(
                "PDF export needs the Pango library on the server "
                "(Debian/Ubuntu: apt-get install libpango-1.0-0 libpangoft2-1.0-0): %(error)s"
            )
            % {"error": exc}
        ) from exc

    html = render_to_string("incidents/postmortem_print.html", report_context(report, mode="print"))
    # The CSV goes through a temporary file, not a string: the timeline is streamed in.
    with tempfile.TemporaryFile() as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        timeline_csv_write(report.incident, text)
        text.flush()
        text.detach()
        raw.seek(0)
        attachment = weasyprint.Attachment(
            file_obj=_ReadAtOnce(raw),
            # A base URL keeps WeasyPrint from taking the file's name (an int) for a path.
            base_url=settings.SITE_URL,
            name=TIMELINE_CSV_NAME,
            description=_("The full timeline of %(reference)s")
            % {"reference": report.incident.reference},
        )
        return weasyprint.HTML(string=html, base_url=settings.SITE_URL).write_pdf(
            attachments=[attachment]
        )


class _ReadAtOnce:
    """A file WeasyPrint reads in one call. It reads attachments 4 KB at a time into one
    growing bytes object, which copies a 6 MB timeline.csv some 1,500 times (0.2 s)."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def read(self, size: int = -1) -> bytes:
        return self._file.read()


def postmortem_path(incident: Incident) -> str:
    return reverse("incidents:postmortem", args=[incident.reference])
