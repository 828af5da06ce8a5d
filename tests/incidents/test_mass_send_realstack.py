"""A message to 3,000 contacts on real parts (worker, beat, broker, aiosmtpd): every
contact receives it exactly once whatever breaks, a resend (if any) with the same
Message-ID, counted and reported."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from incidents import comms, escalation, services
from incidents.models import Notification
from playbooks.models import Stakeholder
from tests.incidents.conftest import FACTS, FACTS_BY_LANGUAGE
from tests.incidents.test_engine_faults import flush_broker
from tests.realstack import SmtpSink, eventually

pytestmark = pytest.mark.services
CONTACTS = 3000
LANGS = ("en", "he", "el", "")


def send_to(desk, n: int, email=lambda i: f"c{i}@example.test"):
    # Acknowledged, so no escalation e-mail mixes with the message.
    services.incident_acknowledge(incident=desk["incident"], actor=desk["noa"])
    customers = desk["customers"]
    Stakeholder.objects.filter(group=customers).delete()
    Stakeholder.objects.bulk_create(
        Stakeholder(group=customers, name=f"Contact {i}", email=email(i), language=LANGS[i % 4])
        for i in range(n)
    )
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
        message=message, editor=desk["eszter"], subject=message.subject, body=message.body + "!"
    )
    comms.message_submit(message=message, actor=desk["eszter"])
    comms.message_approve(message=message, approver=desk["lawyer"])

    def send():
        assert comms.message_send(message=message, actor=desk["eszter"]) == n
        return message

    return send


def exactly_once(smtp: SmtpSink, message, expected: int) -> int:
    """Every contact expected received it, each under one Message-ID, the one its outbox
    row holds (so under its dedupe key); returns the resends (same Message-ID)."""
    rows = dict(
        Notification.objects.filter(comms_message=message).values_list("message_id", "dedupe_key")
    )
    ids_by_rcpt = defaultdict(set)
    for r in smtp.received:
        ids_by_rcpt[r.rcpt_tos[0]].add(r.message["Message-ID"])
    assert len(ids_by_rcpt) == expected
    assert all(len(ids) == 1 for ids in ids_by_rcpt.values())
    keys = Counter(rows[r.message["Message-ID"]] for r in smtp.received)
    assert len(keys) == expected
    return sum(keys.values()) - len(keys)


def test_a_killed_worker_and_a_flushed_broker_lose_and_double_nobody(
    comms_desk, worker_factory, beat_factory, smtp_server
):
    smtp = SmtpSink(hold_replies=True).start()
    try:
        send = send_to(comms_desk, CONTACTS)
        victim = worker_factory(smtp=smtp, name="victim")
        beat_factory()
        message = send()
        # The victim is provably mid-chunk: the server holds its reply to an e-mail.
        assert smtp.data_arrived.wait(60)
        victim.kill()
        # What the server holds when the worker died: each of its pool processes may
        # have an e-mail here, the last bytes of one perhaps still in the buffers.
        smtp.settle()
        in_flight = len(smtp.received)
        smtp.release.set()
        worker_factory(smtp=smtp, name="replacement")
        # Mid-send, the broker loses every chunk it holds.
        assert eventually(lambda: len(smtp.received) >= CONTACTS // 3, timeout=120)
        flush_broker()
        assert eventually(
            lambda: len({r.rcpt_tos[0] for r in smtp.received}) >= CONTACTS, timeout=300
        )
        assert eventually(
            lambda: message.deliveries.filter(status="sent").count() == CONTACTS, timeout=60
        )
        smtp.assert_nothing_more(
            len(smtp.received), after=smtp.received[-1].at + escalation.MASS_STALLED_AFTER.seconds
        )
        resends = exactly_once(smtp, message, CONTACTS)
        # Only an e-mail the server had accepted when the worker died may come twice.
        assert resends <= in_flight
        print(f"resends_same_message_id={resends} (in flight at the kill: {in_flight})")
    finally:
        smtp.release.set()
        smtp.stop()


class RefusingSink(SmtpSink):
    """Refuses ``bad*`` recipients with 550 (counting each try) and drops the connection,
    without a reply, the first time it gets the e-mail of ``drop*``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.refused: Counter = Counter()
        self.dropped: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.startswith("bad"):
            self.refused[address] += 1
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        to = envelope.rcpt_tos[0]
        if to.startswith("drop") and to not in self.dropped:
            self.dropped.add(to)
            server.transport.close()  # gone before it replied: the sender must retry
            return "421 closing"
        return await super().handle_DATA(server, session, envelope)


def test_refused_recipients_are_recorded_not_retried_and_a_dropped_connection_is(
    comms_desk, worker_factory, beat_factory
):
    bad = set(range(7, CONTACTS, 97))  # 31 contacts the server does not know

    def email(i):
        if i in bad:
            return f"bad{i}@example.test"
        return f"drop{i}@example.test" if i == 1500 else f"c{i}@example.test"

    smtp = RefusingSink().start()
    try:
        send = send_to(comms_desk, CONTACTS, email)
        worker_factory(smtp=smtp)
        beat_factory()
        message = send()
        good = CONTACTS - len(bad)
        assert eventually(lambda: len(smtp.received) >= good, timeout=300)
        assert eventually(
            lambda: message.deliveries.filter(status__in=("sent", "failed")).count() == CONTACTS,
            timeout=60,
        )
        smtp.assert_nothing_more(good)
        exactly_once(smtp, message, good)
        assert smtp.dropped == {"drop1500@example.test"}
        failed = message.deliveries.filter(status="failed")
        assert {n.to_email for n in failed} == {f"bad{i}@example.test" for i in bad}
        assert all("550" in n.last_error and n.attempts == 1 for n in failed)
        assert set(smtp.refused.values()) == {1}  # never retried
        dropped = message.deliveries.get(to_email="drop1500@example.test")
        assert dropped.status == "sent" and dropped.attempts == 2
    finally:
        smtp.stop()
