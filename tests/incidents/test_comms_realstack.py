"""A message to a 200-contact group on real parts: each e-mail received once, in the right language."""

from __future__ import annotations

from collections import Counter

import pytest

from incidents import comms, escalation, services
from playbooks.models import Stakeholder
from tests.incidents.conftest import FACTS, FACTS_BY_LANGUAGE

pytestmark = pytest.mark.services
LANGS = ("en", "he", "el")


def test_it_sends_to_200_contacts_exactly_once_each_in_their_language(
    comms_desk, worker_factory, smtp_server
):
    desk = comms_desk
    # Acknowledged, so no escalation e-mail mixes with the 200.
    services.incident_acknowledge(incident=desk["incident"], actor=desk["noa"])
    customers = desk["customers"]
    Stakeholder.objects.filter(group=customers).delete()
    Stakeholder.objects.bulk_create(
        Stakeholder(
            group=customers, name=f"Contact {i}", email=f"c{i}@example.test", language=LANGS[i % 3]
        )
        for i in range(200)
    )
    worker_factory(smtp=smtp_server, concurrency=2)
    message = comms.message_draft(
        incident=desk["incident"],
        author=desk["eszter"],
        audience=customers,
        channel="email",
        template=desk["template"],
        facts=FACTS,
        facts_by_language=FACTS_BY_LANGUAGE,
    )
    comms.message_edit(
        message=message,
        editor=desk["eszter"],
        subject=message.subject,
        body=message.body + " Sorry.",
    )
    comms.message_submit(message=message, actor=desk["eszter"])
    comms.message_approve(message=message, approver=desk["lawyer"])
    assert comms.message_send(message=message, actor=desk["eszter"]) == 200

    received = smtp_server.wait_for(200, timeout=120)
    assert len(received) == 200
    # No beat runs here: a duplicate could come only from a redelivered task.
    smtp_server.assert_nothing_more(200, sweep_seconds=escalation.SWEEP_SECONDS)
    counts = Counter(r.rcpt_tos[0] for r in smtp_server.received if r.rcpt_tos[0].startswith("c"))
    assert len(counts) == 200 and set(counts.values()) == {1}

    for r in smtp_server.received:
        i = int(r.rcpt_tos[0].removeprefix("c").split("@")[0])
        body = r.message.get_content()
        if LANGS[i % 3] == "he":
            assert body.startswith(f"Contact {i} שלום,") and "עדכון" in r.message["Subject"]
            assert FACTS_BY_LANGUAGE["he"]["what_happened"] in body and "card data" not in body
        elif LANGS[i % 3] == "el":
            assert (
                body.startswith(f"Αγαπητέ/ή Contact {i},") and "ενημέρωση" in r.message["Subject"]
            )
            assert FACTS_BY_LANGUAGE["el"]["what_happened"] in body and "card data" not in body
        else:
            assert body.startswith(f"Dear Contact {i},") and "Kártyaadatok" in r.message["Subject"]
    message.refresh_from_db()
    assert message.deliveries.filter(status="sent").count() == 200
