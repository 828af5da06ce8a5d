"""Countdowns: computed on the server from timers and incident fields, red once missed."""

from __future__ import annotations

import datetime as dt

import pytest
from django.template import Context, Template
from django.utils import timezone

from incidents import services
from incidents.models import Incident, Timer
from incidents.templatetags.warroom_tags import span_text
from incidents.warroom import statement_due

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "seconds,text",
    [(5, "5 s"), (-5, "5 s"), (65, "1 min 05 s"), (3720, "1 h 02 min"), (90000, "1 d 1 h")],
)
def test_it_writes_spans_as_people_read_them(seconds, text):
    assert span_text(seconds) == text


def test_it_counts_down_and_says_by_how_much_a_deadline_was_missed():
    now = timezone.now()
    template = Template("{% load warroom_tags %}{% countdown deadline %}")
    ahead = template.render(Context({"now": now, "deadline": now + dt.timedelta(minutes=12)}))
    assert 'class="countdown"' in ahead and "in 12 min 00 s" in ahead and "data-deadline=" in ahead
    missed = template.render(Context({"now": now, "deadline": now - dt.timedelta(seconds=90)}))
    assert 'class="countdown overdue"' in missed and "overdue by 1 min 30 s" in missed
    assert template.render(Context({"deadline": None})) == "—"


def test_the_statement_deadline_comes_from_its_timer_then_the_incident(broker_calls, make_playbook):
    incident = services.incident_open(title="Leak", playbook=make_playbook())
    timer = Timer.objects.get(incident=incident, kind=Timer.Kind.FIRST_STATEMENT)
    incident.statement_timer_at = timer.due_at
    assert statement_due(incident) == timer.due_at
    bare = Incident.objects.get(pk=incident.pk)  # not annotated: from the incident's own fields
    assert statement_due(bare) == bare.opened_at + dt.timedelta(
        minutes=bare.first_statement_minutes
    )
    bare.first_statement_at = timezone.now()
    assert statement_due(bare) is None  # the statement is out: no countdown
    services.incident_resolve(incident=incident, actor=None)
    incident.refresh_from_db()
    assert statement_due(incident) is None  # over: nothing is due any more


def test_a_draft_playbook_is_refused_with_a_field_error(client, desk, responder):
    from tests.factories import PlaybookFactory

    draft = PlaybookFactory()
    client.force_login(responder)
    response = client.post("/incidents/new/", {"playbook": draft.pk, "title": "X", "severity": "2"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not Incident.objects.filter(title="X").exists()
