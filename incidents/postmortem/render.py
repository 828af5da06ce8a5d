"""The report rendered: the HTML page, Markdown and PDF (WeasyPrint)."""

from __future__ import annotations

from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

from incidents.models import (
    Incident,
    PostMortem,
    TimelineEntry,
)
from incidents.postmortem.facts import Report, person_name


def _timeline_rendered(timeline: list[TimelineEntry], *, mode: str) -> str:
    """The full timeline, rendered here rather than in the template: it is the one part
    of the report that runs to thousands of rows (bench/postmortem_report.py)."""
    correction = escape(_("correction"))
    tz = timezone.get_current_timezone()
    parts = []
    for e in timeline:
        when = e.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
        who = person_name(e.actor) if e.actor_id else ""
        if mode == "markdown":
            parts.append(f"- {when} {e.text}" + (f" ({who})" if who else "") + "\n")
        elif mode == "print":
            parts.append(
                f'<p class="pm-line">{when} · {escape(e.text)}'
                + (f" · {escape(who)}" if who else "")
                + "</p>"
            )
        else:
            note = f" <small>({correction})</small>" if e.corrects_id else ""
            parts.append(
                f'<tr class="kind-{e.kind}"><td>{when}</td>'
                f"<td><bdi>{escape(e.text)}</bdi>{note}</td><td>{escape(who)}</td></tr>"
            )
    text = "".join(parts)
    return text if mode == "markdown" else mark_safe(text)  # noqa: S308 - every value escaped


def report_context(report: Report, *, mode: str = "html") -> dict:
    narrative = _narrative_sections(report.postmortem)
    return {
        "report": report,
        "timeline_rendered": _timeline_rendered(report.timeline, mode=mode),
        "incident": report.incident,
        "postmortem": report.postmortem,
        # Summary and impact open the report; the reflection follows the facts.
        "narrative_head": narrative[:2],
        "narrative_tail": narrative[2:],
        "company": settings.COMPANY_NAME,
    }


def _narrative_sections(postmortem: PostMortem | None) -> list[tuple[str, str]]:
    if postmortem is None:
        return []
    return [
        (str(PostMortem._meta.get_field(name).verbose_name), getattr(postmortem, name))
        for name in PostMortem.NARRATIVE
    ]


def report_markdown(report: Report) -> str:
    return render_to_string("incidents/postmortem.md", report_context(report, mode="markdown"))


def report_html(report: Report, *, request=None) -> str:
    return render_to_string("incidents/postmortem.html", report_context(report), request=request)


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
    return weasyprint.HTML(string=html, base_url=settings.SITE_URL).write_pdf()


def postmortem_path(incident: Incident) -> str:
    return reverse("incidents:postmortem", args=[incident.reference])
