"""Every war-room page reads in a fixed number of queries, whatever the number of rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from incidents import services
from incidents.models import RoleAssignment, Task
from tests.incidents.conftest import FACTS, FACTS_BY_LANGUAGE, written_in_every_language

pytestmark = pytest.mark.django_db


def _grow(incident, n, actor):
    Task.objects.bulk_create(
        Task(
            incident=incident, position=100 + i, phase="assess", title=f"Extra {i}", assignee=actor
        )
        for i in range(n)
    )
    for i in range(n):
        services.note_add(incident=incident, actor=actor, text=f"note {i}")


def _queries(client, path) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path)
    assert response.status_code == 200, path
    return len(ctx.captured_queries)


@pytest.mark.parametrize("suffix", ["", "timeline/"])
def test_the_incident_page_reads_in_fixed_queries(client, desk, manager, suffix):
    small = desk["incident"]
    big = services.incident_open(title="Big one", playbook=small.playbook)
    _grow(small, 5, manager)
    _grow(big, 50, manager)
    client.force_login(manager)
    _queries(client, "/")  # warm the session and permission caches
    assert _queries(client, f"/incidents/{small.reference}/{suffix}") == _queries(
        client, f"/incidents/{big.reference}/{suffix}"
    )


def test_the_dashboard_and_list_read_in_fixed_queries(client, desk, manager):
    playbook = desk["incident"].playbook
    client.force_login(manager)
    _queries(client, "/")
    for _ in range(4):
        services.incident_open(title="Small batch", playbook=playbook)
    few = (_queries(client, "/"), _queries(client, "/incidents/"))
    for _ in range(45):
        services.incident_open(title="Big batch", playbook=playbook)
    many = (_queries(client, "/"), _queries(client, "/incidents/"))
    assert few == many


def test_the_role_board_reads_in_fixed_queries_whatever_the_roll_call(client, desk, manager):
    """Answered, chased and handed-on holders (each with the one it was offered to) add no query."""
    small = desk["incident"]
    big = services.incident_open(title="Big one", playbook=small.playbook)
    for assignment in big.assignments.filter(relieved_at__isnull=True).select_related("role"):
        services.role_answer(incident=big, assignment=assignment, answer="cant")
        RoleAssignment.objects.filter(pk=assignment.pk).update(offered_to=manager)
        services.role_assign(incident=big, role=assignment.role, user=manager, actor=manager)
    chased = big.assignments.filter(relieved_at__isnull=True).first()
    chased.chased_at = chased.assumed_at
    chased.save(update_fields=["chased_at"])
    client.force_login(manager)
    _queries(client, "/")
    assert big.assignments.count() > small.assignments.count()
    assert _queries(client, f"/incidents/{small.reference}/") == _queries(
        client, f"/incidents/{big.reference}/"
    )


def _messages(incident, n, author, approver):
    """n messages in every state, with corrections, on an incident."""
    from incidents import comms
    from incidents.models import Message
    from playbooks.models import StakeholderGroup

    audience = StakeholderGroup.objects.get(slug="customers")
    template = incident.playbook.templates.filter(language="en").first()
    for i in range(n):
        message = comms.message_draft(
            incident=incident,
            author=author,
            audience=audience,
            channel="email",
            template=template,
            facts=FACTS,
            facts_by_language=FACTS_BY_LANGUAGE,
        )
        if i % 4 == 0:
            continue  # a draft
        comms.message_edit(message=message, editor=author, subject=f"s{i}", body=f"Words {i}.")
        comms.message_submit(message=message, actor=author)
        if i % 4 == 1:
            continue  # in review
        if i % 4 == 2:
            comms.message_return(message=message, reviewer=approver, comment=f"Fix {i}.")
            continue
        comms.message_approve(message=message, approver=approver)
        website = comms.message_draft(
            incident=incident, author=author, audience=audience, channel="website", body=f"W{i}"
        )
        website = written_in_every_language(website)
        comms.message_submit(message=website, actor=author)
        comms.message_approve(message=website, approver=approver)
        comms.message_publish(message=website, actor=author, where="https://example.test")
        comms.message_correct(original=Message.objects.get(pk=website.pk), author=author, body="C")


def test_the_incident_page_reads_in_fixed_queries_whatever_its_messages(client, desk, manager):
    """The communications panel too: drafts, reviews, returns, sent ones and corrections."""
    from tests.warroom.conftest import member

    writer = member("writer", "Communications")
    small = desk["incident"]
    big = services.incident_open(title="Big one", playbook=small.playbook)
    _messages(small, 4, writer, manager)
    _messages(big, 24, writer, manager)
    client.force_login(manager)
    _queries(client, "/")
    assert _queries(client, f"/incidents/{small.reference}/") == _queries(
        client, f"/incidents/{big.reference}/"
    )


def test_a_message_page_reads_in_fixed_queries(client, desk, manager):
    from incidents.models import Message
    from tests.warroom.conftest import member

    writer = member("writer", "Communications")
    incident = desk["incident"]
    _messages(incident, 8, writer, manager)
    client.force_login(writer)
    _queries(client, "/")
    published = Message.objects.filter(incident=incident, status="published").order_by("pk")
    draft = Message.objects.filter(incident=incident, status="draft", corrects=None).order_by("pk")
    for rows in (published, draft):
        first, last = rows.first(), rows.last()
        assert first != last
        assert _queries(client, f"/incidents/{incident.reference}/messages/{first.pk}/") == (
            _queries(client, f"/incidents/{incident.reference}/messages/{last.pk}/")
        )
