"""The post-mortem of a long record: a bounded PDF with the full timeline attached as CSV,
an HTML page that shows the timeline a page at a time, a complete streamed Markdown."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from incidents import postmortem
from incidents import services as incident_services
from incidents.models import TimelineEntry
from incidents.postmortem import render
from incidents.postmortem.chart import MARK_MERGE_PX
from playbooks.stakeholder_import import unneutralise
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

KINDS = ("note", "escalation", "task", "acknowledged", "role")


def long_record(entries: int, *, title: str = "Hosszú válság · διαρροή · דליפה"):
    """One resolved incident with ``entries`` timeline entries over a day, a fifth of
    them each notes, escalation pages and acknowledgements; some texts look like
    spreadsheet formulas, some are Hebrew or Greek."""
    writer = UserFactory(username="writer", first_name="Noa", last_name="Levi")
    incident = incident_services.incident_open(title=title)
    start = timezone.now().replace(microsecond=0) - dt.timedelta(days=2)
    step = dt.timedelta(days=1) / entries
    texts = ("Entry {i}: the export was public.", '=HYPERLINK("x","{i}")', "רשומה {i} · Καταχώριση")
    TimelineEntry.objects.bulk_create(
        TimelineEntry(
            incident=incident,
            at=start + step * i,
            kind=KINDS[i % len(KINDS)],
            actor=writer if i % 2 else None,
            text=texts[i % len(texts)].format(i=i),
            data={"level": 1, "cycle": 0, "user_ids": [writer.pk]}
            if KINDS[i % len(KINDS)] == "escalation"
            else {},
        )
        for i in range(entries - 1)  # incident_open wrote one
    )
    type(incident).objects.filter(pk=incident.pk).update(
        opened_at=start, resolved_at=start + dt.timedelta(days=1), status="resolved"
    )
    incident.refresh_from_db()
    return incident


def reader_client(client):
    user = UserFactory(username="reader")
    user.user_permissions.add(Permission.objects.get(codename="view_postmortem"))
    client.force_login(user)
    return client


def pdf_of(client, incident):
    import pypdfium2

    response = client.get(reverse("incidents:postmortem_pdf", args=[incident.reference]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    return pypdfium2.PdfDocument(io.BytesIO(response.content))


def text_of(pdf) -> str:
    return "\n".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))


def test_it_prints_a_bounded_report_and_says_where_the_rest_is(client):
    reader_client(client)
    # 600 entries already fill every printed list (120 notes, pages, acknowledgements).
    short, long = long_record(600), long_record(3000, title="Second crisis")
    short_pdf, long_pdf = pdf_of(client, short), pdf_of(client, long)
    # Five times the entries, the same report: the timeline is not printed.
    assert abs(len(long_pdf) - len(short_pdf)) <= 1, (len(short_pdf), len(long_pdf))
    assert len(long_pdf) <= 12
    text = text_of(long_pdf)
    for section in (
        "Milestones",
        "Against the playbook's targets",
        "Timeline chart",
        "Escalations",
        "Who was told what, and when",
        "Notes and decisions",
        "Action items",
    ):
        assert section in text, section
    # 3,000 entries: 600 of each kind.
    assert "The first 50 of 600 notes; all are in the attached timeline.csv." in text
    assert "The first 50 of 600 escalation pages; all are in the attached timeline.csv." in text
    assert "The first 10 of 600 acknowledgements; all are in the attached timeline.csv." in text
    assert "The full timeline (3000 entries) is attached to this PDF as timeline.csv" in text
    assert "Entry 0: the export was public." in text  # the first note is printed
    assert "Entry 2985:" not in text  # a late note is not (it is in the CSV)
    short_pdf.close()
    long_pdf.close()


def test_it_attaches_every_timeline_entry_as_csv(client):
    reader_client(client)
    incident = long_record(3000)
    pdf = pdf_of(client, incident)
    assert pdf.count_attachments() == 1
    attachment = pdf.get_attachment(0)
    assert attachment.get_name() == "timeline.csv"
    data = bytes(attachment.get_data())
    pdf.close()
    assert data.startswith("\ufeff".encode())  # spreadsheet programs read it as UTF-8
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["id", "at", "kind", "text", "by", "corrects"]
    entries = list(incident.timeline.select_related("actor").order_by("at", "pk"))
    assert len(rows) - 1 == len(entries) == 3000
    for row, entry in zip(rows[1:], entries, strict=True):
        assert int(row[0]) == entry.pk and row[2] == entry.kind
        assert dt.datetime.fromisoformat(row[1]) == entry.at
        assert unneutralise(row[3]) == entry.text
        assert row[4] == (entry.actor.get_full_name() if entry.actor else "")
    # Formulas are neutralised: a spreadsheet shows them as text, never runs them.
    formulas = [row[3] for row in rows[1:] if "HYPERLINK" in row[3]]
    assert formulas and all(cell.startswith("'=") for cell in formulas)
    assert any("רשומה" in row[3] and "Καταχώριση" in row[3] for row in rows[1:])


def timeline_texts(html: str) -> list[str]:
    body = html[html.index('id="timeline"') :]
    body = body[: body.index("</table>")]
    return re.findall(r"<td><bdi>(.*?)</bdi>", body)


def test_it_shows_the_timeline_a_page_at_a_time_and_every_entry_across_pages(client):
    from django.utils.html import escape

    reader_client(client)
    incident = long_record(1200)
    url = reverse("incidents:postmortem", args=[incident.reference])
    seen = []
    for page in (1, 2, 3):
        response = client.get(url, {"timeline": page})
        assert response.status_code == 200
        html = response.content.decode()
        rows = timeline_texts(html)
        assert len(rows) == (500 if page < 3 else 200)
        assert f"Page {page} of 3" in html
        assert ('rel="next"' in html) == (page < 3) and ('rel="prev"' in html) == (page > 1)
        seen += rows
    expected = [
        escape(t) for t in incident.timeline.order_by("at", "pk").values_list("text", flat=True)
    ]
    assert seen == expected
    # The lists above the timeline are cut too, and say so.
    assert "The first 50 of 240 escalation pages; all are in the full timeline below." in html
    # A page past the end shows the last; nonsense shows the first.
    assert timeline_texts(client.get(url, {"timeline": 99}).content.decode()) == seen[1000:]
    assert timeline_texts(client.get(url, {"timeline": "x"}).content.decode()) == seen[:500]


def test_it_streams_the_complete_markdown(client):
    reader_client(client)
    incident = long_record(1200)
    response = client.get(reverse("incidents:postmortem_markdown", args=[incident.reference]))
    assert response.status_code == 200 and response.streaming
    text = b"".join(response.streaming_content).decode()
    lines = text[text.index("## Full timeline") :].splitlines()[2:]
    texts = list(incident.timeline.order_by("at", "pk").values_list("text", flat=True))
    assert len(lines) == len(texts) == 1200
    for line, entry_text in zip(lines, texts, strict=True):
        assert entry_text in line
    assert postmortem.report_markdown(postmortem.report_build(incident)) == text


def test_a_hidden_incident_answers_like_a_made_up_one_on_every_export(client):
    reader_client(client)
    secret = incident_services.incident_open(title="Secret", confidential=True)
    for view in ("postmortem", "postmortem_markdown", "postmortem_pdf"):
        for reference in (secret.reference, "INC-2099-9999"):
            response = client.get(reverse(f"incidents:{view}", args=[reference]), {"timeline": 2})
            assert response.status_code == 404


def test_the_chart_merges_overlapping_marks_of_a_long_record(db):
    incident = long_record(3000)
    chart = postmortem.report_build(incident).chart
    escalations = [m for m in chart.marks if m.kind == "escalation"]
    assert 0 < len(escalations) <= chart.width // MARK_MERGE_PX
    xs = [m.x for m in escalations]
    assert max(xs) - min(xs) > 300  # the marks still span the record's day


def test_the_print_lists_are_cut_at_their_bounds(db):
    report = postmortem.report_build(long_record(3000))
    context = render.report_context(report, mode="print")
    assert len(context["escalations"]) == render.PRINT_ESCALATIONS_MAX < len(report.escalations)
    assert len(context["acknowledgements"]) == render.PRINT_ACKNOWLEDGEMENTS_MAX
    assert len(report.notes) == 50 and report.note_count == 600
    assert report.timeline_count == 3000
    # Markdown is a file: it keeps every escalation and acknowledgement.
    markdown = render.report_context(report, mode="markdown")
    assert len(markdown["escalations"]) == 600 and len(markdown["acknowledgements"]) == 600


def sent_messages(incident, n: int) -> None:
    from incidents.models import Message
    from tests.factories import StakeholderGroupFactory

    audience = StakeholderGroupFactory(name="Customers")
    author = UserFactory(username="author")
    for i in range(n):
        at = incident.opened_at + dt.timedelta(minutes=10 + i)
        Message.objects.create(
            incident=incident,
            audience=audience,
            channel="website",
            subject=f"Update {i}",
            body=f"Update {i}: what we know.",
            status="published",
            author=author,
            approver=author,
            approved_at=at,
            sent_at=at,
            sent_by=author,
            published_where="status page",
        )


def test_it_prints_the_first_messages_and_the_page_lists_them_all(client):
    reader_client(client)
    incident = long_record(100)
    sent_messages(incident, render.PRINT_MESSAGES_MAX + 10)
    pdf = pdf_of(client, incident)
    text = text_of(pdf)
    pdf.close()
    assert "The first 50 of 60 messages; all are in the attached timeline.csv." in text
    assert "Update 49" in text and "Update 50" not in text
    html = client.get(reverse("incidents:postmortem", args=[incident.reference])).content.decode()
    assert "Update 59" in html and "The first 50 of 60 messages" not in html


def test_it_prints_the_first_tasks_and_the_page_lists_them_all(client):
    from incidents.models import Task

    reader_client(client)
    incident = long_record(100)
    Task.objects.bulk_create(
        Task(incident=incident, position=i, title=f"Step number {i}")
        for i in range(render.PRINT_ROWS_MAX + 20)
    )
    pdf = pdf_of(client, incident)
    text = text_of(pdf)
    pdf.close()
    assert "The first 100 of 120 tasks; all are on the post-mortem page." in text
    assert "Step number 99" in text and "Step number 100" not in text
    html = client.get(reverse("incidents:postmortem", args=[incident.reference])).content.decode()
    assert "Step number 119" in html and "The first 100 of 120 tasks" not in html


def test_the_streamed_timeline_reads_every_instant_exactly():
    """The stream reads instants as the database writes them as text (faster than
    Django's loader): to the microsecond, in UTC, on SQLite and on PostgreSQL."""
    incident = incident_services.incident_open(title="Instants")
    base = dt.datetime(2026, 3, 29, 0, 59, 59, tzinfo=dt.UTC)  # a daylight-saving night
    TimelineEntry.objects.bulk_create(
        TimelineEntry(
            incident=incident, at=base + dt.timedelta(microseconds=us), kind="note", text=str(us)
        )
        for us in (0, 1, 5, 10, 123456, 999999, 1_000_001)
    )
    streamed = {row.pk: row.at for row in render.timeline_stream(incident)}
    stored = dict(TimelineEntry.objects.filter(incident=incident).values_list("pk", "at"))
    assert streamed == stored and len(stored) == 8
    assert all(at.utcoffset() == dt.timedelta(0) for at in streamed.values())
