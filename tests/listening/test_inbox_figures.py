"""How comments were answered, in the post-mortem and on the trends page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from incidents import comms
from incidents.listening import inbox, services
from incidents.listening.models import Mention
from incidents.models import Incident
from incidents.postmortem.facts import reply_figures, report_build
from incidents.postmortem.trends import trends

pytestmark = pytest.mark.django_db


def comment(desk, text: str, at: dt.datetime) -> Mention:
    mention, _c, _f = services.mention_record(
        source=services.manual_source(), text=text, channel="twitter", language="en", now=at
    )
    Mention.objects.filter(pk=mention.pk).update(incident=desk["incident"])
    mention.refresh_from_db()
    return inbox.mention_needs_reply(mention=mention, actor=desk["noa"], now=at)


def answered(desk, mention: Mention, at: dt.datetime) -> None:
    message = inbox.reply_draft(mention=mention, author=desk["eszter"], body="Sorry, fixed.")
    comms.message_submit(message=message, actor=desk["eszter"])
    comms.message_approve(message=message, approver=desk["noa"])
    inbox.reply_publish(mention=Mention.objects.get(pk=mention.pk), actor=desk["eszter"],
                        by_email=True, now=at)  # fmt: skip


@pytest.fixture
def record(inbox_desk, broker_calls):
    desk = inbox_desk
    start = timezone.now() - dt.timedelta(hours=3)
    answered(desk, comment(desk, "One", start), start + dt.timedelta(minutes=30))
    answered(desk, comment(desk, "Two", start), start + dt.timedelta(minutes=90))
    comment(desk, "Three, never answered", start)
    inbox.mention_dismiss(mention=desk["mention"], actor=desk["noa"], reason="Not about us")
    return desk


def test_the_post_mortem_reports_replies_within_the_hour_median_and_unanswered(record, client):
    figures = report_build(record["incident"]).replies
    assert figures.needed == 3 and figures.replied == 2
    assert figures.within_hour == 1 and figures.on_time == 1
    assert figures.median_minutes == 60.0
    assert figures.unanswered == 1 and figures.overdue == 1 and figures.dismissed == 1
    client.force_login(record["noa"])
    reference = record["incident"].reference
    page = client.get(f"/incidents/{reference}/postmortem/").content.decode()
    assert 'id="replies-within-hour"' in page and "60.0" in page
    markdown = client.get(f"/incidents/{reference}/postmortem.md")
    text = b"".join(markdown.streaming_content if markdown.streaming else [markdown.content])
    assert "Replied within the hour" in text.decode() and "60.0" in text.decode()


def test_the_figures_take_three_queries_however_many_comments(record, django_assert_num_queries):
    mentions = Mention.objects.all()
    with django_assert_num_queries(3):
        reply_figures(mentions, now=timezone.now())


def test_the_trends_page_reports_them_for_incidents_and_drills_apart(record, client):
    figures = trends(Incident.objects.all())
    assert figures["replies"].replied == 2 and figures["replies"].median_minutes == 60.0
    assert figures["drill_replies"].needed == 0
    client.force_login(record["noa"])
    page = client.get("/incidents/trends/").content.decode()
    assert 'id="replies"' in page and "60.0" in page
