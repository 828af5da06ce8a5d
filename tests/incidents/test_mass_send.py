"""A message to a large audience: the outbox written in batches (resumable), delivered
in chunks over one SMTP connection, permanent and transient failures told apart."""

from __future__ import annotations

import datetime as dt
import smtplib

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from crisisdesk import ratelimit
from incidents import comms, escalation, notify, services
from incidents.models import DeliveryAttempt, Incident, Notification, SendRun
from playbooks.models import Stakeholder
from tests.incidents.conftest import FACTS, written_in_every_language

pytestmark = pytest.mark.django_db
LANGS = ("en", "he", "el", "")


class CountingBackend(BaseEmailBackend):
    """Counts connections; refuses ``bad*`` recipients with 550 and drops the connection
    once on ``drop*``."""

    opened = 0
    dropped: set = set()

    def open(self):
        CountingBackend.opened += 1
        return True

    def close(self):
        pass

    def send_messages(self, messages):
        for m in messages:
            to = m.to[0]
            if to.startswith("bad"):
                raise smtplib.SMTPRecipientsRefused({to: (550, b"5.1.1 no such user")})
            if to.startswith("drop") and to not in CountingBackend.dropped:
                CountingBackend.dropped.add(to)
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            mail.outbox.append(m)
        return len(messages)


@pytest.fixture
def approved(comms_desk, broker_calls, settings, monkeypatch):
    """An approved message to 7 contacts, written 3 contacts per batch."""
    monkeypatch.setattr(comms, "FANOUT_BATCH", 3)
    settings.EMAIL_BACKEND = "tests.incidents.test_mass_send.CountingBackend"
    CountingBackend.opened, CountingBackend.dropped = 0, set()
    desk = comms_desk
    services.incident_acknowledge(incident=desk["incident"], actor=desk["noa"])
    customers = desk["customers"]
    Stakeholder.objects.filter(group=customers).delete()
    Stakeholder.objects.bulk_create(
        Stakeholder(group=customers, name=f"Contact {i}", email=f"c{i}@example.test", language=lang)
        for i, lang in enumerate(LANGS * 2)
    )
    Stakeholder.objects.filter(group=customers).last().delete()  # 7 contacts
    message = comms.message_draft(
        incident=desk["incident"],
        author=desk["eszter"],
        audience=customers,
        channel="email",
        template=desk["template"],
        facts=FACTS,
    )
    message = written_in_every_language(message)
    comms.message_edit(
        message=message, editor=desk["eszter"], subject=message.subject, body=message.body + "!"
    )
    comms.message_submit(message=message, actor=desk["eszter"])
    comms.message_approve(message=message, approver=desk["lawyer"])
    return message


def test_the_outbox_is_written_in_batches_each_contact_once_in_their_language(
    approved, comms_desk, broker_calls, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert comms.message_send(message=approved, actor=comms_desk["eszter"]) == 7
    run = SendRun.objects.get(message=approved)
    # The send wrote the first batch only, and handed the rest to a worker.
    assert (run.total, run.written, run.finished_at) == (7, 3, None)
    assert approved.deliveries.count() == 3
    assert ("fanout", approved.pk, None) in broker_calls
    first_chunk = [c for c in broker_calls if c[0] == "chunk"]
    assert len(first_chunk) == 1 and len(first_chunk[0][1]) == 3

    with django_capture_on_commit_callbacks(execute=True):
        assert "3 batches" not in comms.message_fanout(message_id=approved.pk)
        comms.message_fanout(message_id=approved.pk)  # again: nothing more
    run.refresh_from_db()
    assert (run.written, run.after_contact) == (7, run.until_contact) and run.finished_at
    rows = list(approved.deliveries.select_related("contact"))
    assert len(rows) == 7 == len({r.contact_id for r in rows})
    for r in rows:
        assert (
            r.body_text.startswith({"he": "[he] ", "el": "[el] ", "en": "Dear "}[r.language])
            and r.contact.name in r.body_text
        )
        assert r.language == (r.contact.language or "en")
    chunked = sorted(pk for c in broker_calls if c[0] == "chunk" for pk in c[1])
    assert chunked == sorted(r.pk for r in rows)


def test_a_fan_out_that_died_mid_batch_resumes_and_writes_nobody_twice(
    approved, comms_desk, monkeypatch
):
    comms.message_send(message=approved, actor=comms_desk["eszter"])
    real = Notification.objects.bulk_create

    def dies(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("worker killed")

    monkeypatch.setattr(Notification.objects, "bulk_create", dies)
    with pytest.raises(RuntimeError):
        comms.message_fanout(message_id=approved.pk)
    assert approved.deliveries.count() == 3  # the dying batch rolled back
    monkeypatch.setattr(Notification.objects, "bulk_create", real)
    comms.message_fanout(message_id=approved.pk)
    assert approved.deliveries.count() == 7
    assert SendRun.objects.get(message=approved).written == 7


def test_a_chunk_goes_over_one_connection_and_tells_permanent_from_transient(
    approved, comms_desk, broker_calls, monkeypatch
):
    turns = []
    monkeypatch.setattr(ratelimit, "wait_turn", lambda: turns.append(1))
    comms.message_send(message=approved, actor=comms_desk["eszter"])
    comms.message_fanout(message_id=approved.pk)
    rows = list(approved.deliveries.order_by("pk"))
    Notification.objects.filter(pk=rows[1].pk).update(to_email="bad@example.test")
    Notification.objects.filter(pk=rows[3].pk).update(to_email="drop@example.test")
    result = notify.chunk_deliver(ids=[r.pk for r in rows])
    assert result.endswith("sent 5, failed 1, retry 1, cancelled 0"), result
    # One connection, and one more after the server dropped it.
    assert CountingBackend.opened == 2
    assert len(turns) == 7  # each e-mail handed to the server waited for its rate slot
    assert len(mail.outbox) == 5
    assert {m.extra_headers["Message-ID"] for m in mail.outbox} == {
        r.message_id for r in rows if r.pk not in (rows[1].pk, rows[3].pk)
    }
    bad, drop = Notification.objects.get(pk=rows[1].pk), Notification.objects.get(pk=rows[3].pk)
    assert bad.status == "failed" and "550" in bad.last_error
    assert drop.status == "queued" and drop.attempts == 1
    assert drop.next_attempt_at > timezone.now()
    assert ("deliver", drop.pk, drop.next_attempt_at) in broker_calls
    assert DeliveryAttempt.objects.filter(notification__in=rows, ok=True).count() == 5
    # A redelivered chunk sends nothing again.
    assert "nothing queued" in notify.chunk_deliver(ids=[r.pk for r in rows])
    assert len(mail.outbox) == 5
    # The retry goes out with the same Message-ID.
    Notification.objects.filter(pk=drop.pk).update(next_attempt_at=timezone.now())
    assert notify.notification_deliver(notification_id=drop.pk).endswith("sent")
    assert mail.outbox[-1].extra_headers["Message-ID"] == drop.message_id


def test_a_chunks_undeliverable_addresses_make_one_timeline_entry_not_one_each(
    approved, comms_desk, broker_calls, monkeypatch
):
    monkeypatch.setattr(ratelimit, "wait_turn", lambda: None)
    comms.message_send(message=approved, actor=comms_desk["eszter"])
    comms.message_fanout(message_id=approved.pk)
    rows = list(approved.deliveries.order_by("pk"))
    dead = rows[:5]
    for i, row in enumerate(dead):
        Notification.objects.filter(pk=row.pk).update(to_email=f"bad{i}@example.test")
    before = approved.incident.timeline.filter(kind="delivery").count()
    result = notify.chunk_deliver(ids=[r.pk for r in rows])
    assert f"sent {len(rows) - 5}, failed 5" in result, result
    entries = list(approved.incident.timeline.filter(kind="delivery")[before:])
    assert len(entries) == 1
    entry = entries[0]
    assert entry.data["failed"] == 5 and entry.data["message_id"] == approved.pk
    assert sorted(entry.data["notification_ids"]) == sorted(r.pk for r in dead)
    # The first few are named with their error; every one is failed on its own row.
    assert "5 e-mails of message" in entry.text and "bad0@example.test" in entry.text
    assert "550" in entry.text and "bad4@example.test" not in entry.text
    assert Notification.objects.filter(pk__in=[r.pk for r in dead], status="failed").count() == 5


def test_the_sweep_waits_for_a_moving_send_and_resends_a_stalled_one(
    approved, comms_desk, broker_calls, django_capture_on_commit_callbacks
):
    comms.message_send(message=approved, actor=comms_desk["eszter"])
    now = timezone.now()
    ours = set(approved.deliveries.values_list("pk", flat=True))
    broker_calls.clear()
    with django_capture_on_commit_callbacks(execute=True):
        escalation.sweep(now=now + dt.timedelta(seconds=10))
    # Queued rows of a send that is moving are left to their chunks.
    assert not [c for c in broker_calls if c[0] in ("chunk", "fanout")]
    assert not [c for c in broker_calls if c[0] == "deliver" and c[1] in ours]

    later = now + escalation.MASS_STALLED_AFTER + dt.timedelta(seconds=1)
    with django_capture_on_commit_callbacks(execute=True):
        escalation.sweep(now=later)
    assert ("fanout", approved.pk, None) in broker_calls
    chunks = [c[1] for c in broker_calls if c[0] == "chunk"]
    assert sorted(pk for c in chunks for pk in c) == sorted(
        approved.deliveries.values_list("pk", flat=True)
    )
    # Not again at once.
    broker_calls.clear()
    with django_capture_on_commit_callbacks(execute=True):
        escalation.sweep(now=later + dt.timedelta(seconds=1))
    assert not [c for c in broker_calls if c[0] in ("chunk", "fanout")]


def test_the_progress_is_counted_by_state_in_the_api_the_war_room_and_the_post_mortem(
    approved, comms_desk, client
):
    from django.urls import reverse

    from incidents import postmortem
    from incidents.permissions import ensure_groups
    from incidents.selectors import message_delivery
    from tests.incidents.conftest import api, member

    ensure_groups()
    comms.message_send(message=approved, actor=comms_desk["eszter"])
    manager = member("manager", "Crisis managers")
    responder = member("responder", "Responders")
    progress = message_delivery(user=manager, message=approved)
    assert progress["running"] and (progress["written"], progress["queued"]) == (3, 3)
    comms.message_fanout(message_id=approved.pk)
    rows = list(approved.deliveries.order_by("pk"))
    Notification.objects.filter(pk=rows[1].pk).update(to_email="bad@example.test")
    Notification.objects.filter(pk=rows[3].pk).update(to_email="drop@example.test")
    notify.chunk_deliver(ids=[r.pk for r in rows])

    progress = message_delivery(user=manager, message=approved)
    assert {k: progress[k] for k in ("contacts", "written", "queued", "sending")} == {
        "contacts": 7,
        "written": 7,
        "queued": 0,
        "sending": 0,
    }
    assert (progress["sent"], progress["failed"], progress["retrying"]) == (5, 1, 1)
    assert progress["running"]  # one retry to go
    assert message_delivery(user=None, message=approved) is None

    answer = api(manager).get(f"/api/v1/messages/{approved.pk}/")
    assert answer.status_code == 200
    assert answer.json()["delivery"] | {"started_at": None} == {
        **{k: progress[k] for k in progress if k not in ("started_at", "written_at")},
        "started_at": None,
        "written_at": answer.json()["delivery"]["written_at"],
    }
    assert "delivery" not in api(manager).get("/api/v1/messages/").json()["results"][0]
    # A message of an incident this person may not see answers like a made-up one.
    assert api(responder).get(f"/api/v1/messages/{approved.pk}/").json()["delivery"]
    Incident.objects.filter(pk=approved.incident_id).update(confidential=True)
    assert message_delivery(user=responder, message=approved) is None
    hidden = api(responder).get(f"/api/v1/messages/{approved.pk}/")
    made_up = api(responder).get("/api/v1/messages/999999/")
    assert hidden.status_code == made_up.status_code == 404 and hidden.json() == made_up.json()

    page_url = reverse("warroom:message", args=[approved.incident.reference, approved.pk])
    client.force_login(manager)
    page = client.get(page_url).content.decode()
    assert 'id="delivery-failed">1<' in page and 'id="delivery-retrying">1<' in page
    assert 'hx-select="#delivery" hx-trigger="every 5s"' in page  # polls while it runs

    drop = Notification.objects.get(pk=rows[3].pk)
    Notification.objects.filter(pk=drop.pk).update(next_attempt_at=timezone.now())
    notify.notification_deliver(notification_id=drop.pk)
    page = client.get(page_url).content.decode()
    assert 'id="delivery-sent">6<' in page and 'hx-select="#delivery"' not in page

    report = postmortem.report_build(approved.incident)
    (sent,) = [row.message for g in report.messages for row in g.rows]
    assert sent.failed_permanently == 1
    assert "1 contact could not be reached" in postmortem.report_markdown(report)
    assert "1 contact could not be reached" in postmortem.report_html(report)


def test_readyz_counts_a_long_send_that_moves_as_waiting_and_one_that_stopped_as_stuck(
    approved, comms_desk, settings
):
    from incidents import health

    comms.message_send(message=approved, actor=comms_desk["eszter"])
    limit = dt.timedelta(seconds=settings.CRISISDESK_OUTBOX_STUCK_SECONDS)
    later = timezone.now() + limit + dt.timedelta(seconds=5)
    mine = Notification.objects.filter(comms_message=approved)
    SendRun.objects.filter(message=approved).update(progress_at=later - dt.timedelta(seconds=1))
    assert (
        not Notification.objects.filter(health.outbox_stuck_filter(later))
        .filter(pk__in=mine)
        .exists()
    )
    SendRun.objects.filter(message=approved).update(progress_at=later - 2 * limit)
    assert (
        Notification.objects.filter(health.outbox_stuck_filter(later)).filter(pk__in=mine).count()
        == mine.count()
        == 3
    )


def test_a_chunk_cut_off_past_its_lease_sends_nothing_another_worker_took(
    approved, comms_desk, broker_calls, monkeypatch, django_capture_on_commit_callbacks
):
    """A worker host falls off the network mid-chunk for longer than its lease: the
    sweep takes its rows back and another worker sends them. When the first comes
    back it neither re-sends, renews, re-queues nor fails any of them."""
    monkeypatch.setattr(ratelimit, "wait_turn", lambda: None)
    comms.message_send(message=approved, actor=comms_desk["eszter"])
    comms.message_fanout(message_id=approved.pk)
    rows = list(approved.deliveries.order_by("pk"))
    ids = [r.pk for r in rows]
    real_send = CountingBackend.send_messages
    cut, other = [], []

    with time_machine.travel(timezone.now(), tick=True) as clock:

        def cut_off(self, messages):
            if messages[0].to[0] == rows[1].to_email and not cut:
                cut.append(True)
                # The link is down past the lease: the sweep re-queues the rows still
                # `sending` (all but the first, sent), another worker sends them all.
                clock.shift(notify.lease() + dt.timedelta(seconds=1))
                with django_capture_on_commit_callbacks(execute=True):
                    escalation.sweep()
                other.append(notify.chunk_deliver(ids=ids))
                raise smtplib.SMTPServerDisconnected("timed out")  # the cut host's send
            return real_send(self, messages)

        monkeypatch.setattr(CountingBackend, "send_messages", cut_off)
        first = notify.chunk_deliver(ids=ids)

    assert other == ["chunk of 7: sent 6, failed 0, retry 0, cancelled 0"]
    # The sweep sent the rows back to the broker at once, the send still moving.
    requeued = [pk for kind, chunk, _eta in broker_calls if kind == "chunk" for pk in chunk]
    assert set(ids[1:]) <= set(requeued)
    assert first == "chunk of 7: sent 1, failed 0, retry 1, cancelled 0, left to the sweep 5"
    ids_sent = [m.extra_headers["Message-ID"] for m in mail.outbox]
    assert sorted(ids_sent) == sorted(r.message_id for r in rows)  # each exactly once
    assert set(approved.deliveries.values_list("status", flat=True)) == {"sent"}
    # The cut host's failed attempt is recorded, and changed nothing.
    assert DeliveryAttempt.objects.filter(notification_id=ids[1], ok=False).count() == 1


def test_a_chunk_stalled_past_its_lease_before_a_hand_off_sends_nothing_another_worker_took(
    approved, comms_desk, broker_calls, monkeypatch, django_capture_on_commit_callbacks
):
    """The worker stalls between its claim and handing a row to the SMTP server (its
    network gone while it waited its turn, say) for longer than its lease: the sweep
    takes the rows back and another worker sends them. The first checks its lease
    before the hand-off, finds the rows gone, and sends none of them a second time."""
    comms.message_send(message=approved, actor=comms_desk["eszter"])
    comms.message_fanout(message_id=approved.pk)
    rows = list(approved.deliveries.order_by("pk"))
    ids = [r.pk for r in rows]
    turns, other = [], []

    with time_machine.travel(timezone.now(), tick=True) as clock:

        def stalled_turn():
            turns.append(True)
            if len(turns) == 2:  # the first worker's second row
                clock.shift(notify.lease() + dt.timedelta(seconds=1))
                with django_capture_on_commit_callbacks(execute=True):
                    escalation.sweep()
                other.append(notify.chunk_deliver(ids=ids))

        monkeypatch.setattr(ratelimit, "wait_turn", stalled_turn)
        first = notify.chunk_deliver(ids=ids)

    assert other == ["chunk of 7: sent 6, failed 0, retry 0, cancelled 0"]
    assert first == "chunk of 7: sent 1, failed 0, retry 0, cancelled 0, left to the sweep 6"
    ids_sent = [m.extra_headers["Message-ID"] for m in mail.outbox]
    assert sorted(ids_sent) == sorted(r.message_id for r in rows)  # each exactly once
    assert set(approved.deliveries.values_list("status", flat=True)) == {"sent"}
