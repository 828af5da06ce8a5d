"""Outbox delivery: claims, stable Message-ID, transient retries and permanent failures."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import smtplib
import socket

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from incidents import escalation, notify, services
from incidents.models import Incident, Notification, Timer

pytestmark = pytest.mark.django_db


class FlakyBackend(BaseEmailBackend):
    """An e-mail backend that raises the error it is given, then delivers."""

    errors: list[Exception] = []

    def send_messages(self, messages):
        if FlakyBackend.errors:
            raise FlakyBackend.errors.pop(0)
        mail.outbox.extend(messages)
        return len(messages)


@pytest.fixture
def queued(team, make_playbook, broker_calls, settings, monkeypatch):
    settings.EMAIL_BACKEND = "tests.incidents.test_delivery.FlakyBackend"
    FlakyBackend.errors = []
    monkeypatch.setattr(notify, "deliver_now", lambda ids: None)  # deliver by hand below
    incident = services.incident_open(title="Outage", playbook=make_playbook())
    level1 = Timer.objects.get(incident=incident, kind="escalation", level=1)
    with time_machine.travel(level1.due_at, tick=False):
        escalation.timer_fire(timer_id=level1.pk)
    # Fired in the (travelled-to) future; deliver from the real present.
    Notification.objects.update(next_attempt_at=timezone.now(), created_at=timezone.now())
    return Notification.objects.get(incident=incident, reason="escalation")


def test_it_retries_a_transient_failure_with_back_off_and_records_each_attempt(
    queued, broker_calls
):
    FlakyBackend.errors = [ConnectionRefusedError(111, "Connection refused")]
    result = notify.notification_deliver(notification_id=queued.pk)
    assert "will retry" in result
    queued.refresh_from_db()
    assert queued.status == "queued" and queued.attempts == 1
    assert "Connection refused" in queued.last_error
    assert queued.next_attempt_at > queued.created_at
    assert ("deliver", queued.pk, queued.next_attempt_at) in broker_calls

    # Not due yet: a duplicate task does nothing.
    assert "not queued or not due" in notify.notification_deliver(notification_id=queued.pk)
    with time_machine.travel(queued.next_attempt_at, tick=False):
        assert notify.notification_deliver(notification_id=queued.pk).endswith("sent")
    queued.refresh_from_db()
    assert queued.status == "sent" and queued.attempts == 2
    assert [a.ok for a in queued.delivery_attempts.order_by("at")] == [False, True]
    assert len(mail.outbox) == 1 and mail.outbox[0].extra_headers["Message-ID"] == queued.message_id


def test_it_records_a_permanently_refused_address_and_the_escalation_goes_on(queued):
    FlakyBackend.errors = [
        smtplib.SMTPRecipientsRefused({queued.to_email: (550, b"5.1.1 No such user")})
    ]
    result = notify.notification_deliver(notification_id=queued.pk)
    assert "failed permanently" in result
    queued.refresh_from_db()
    assert queued.status == "failed" and "No such user" in queued.last_error
    assert queued.incident.timeline.filter(kind="delivery").exists()
    assert Timer.objects.filter(incident=queued.incident, level=2, state="pending").exists()


def test_a_worker_stalled_past_its_lease_before_the_hand_off_sends_nothing(queued, monkeypatch):
    """Between its claim and the hand-off the worker stalls (opening the connection
    hangs, say) past its lease: the sweep takes the row back, another worker sends it.
    The first checks its lease before handing the e-mail over, and does not."""
    other = []
    with time_machine.travel(timezone.now(), tick=True) as clock:

        def stalled_open(self):
            if not other:
                other.append("stalled")
                clock.shift(notify.lease() + dt.timedelta(seconds=1))
                escalation.sweep()
                other.append(notify.notification_deliver(notification_id=queued.pk))
            return True

        monkeypatch.setattr(FlakyBackend, "open", stalled_open)
        first = notify.notification_deliver(notification_id=queued.pk)
    assert other[1].endswith(": sent")
    assert first.endswith("not sent, its lease ran out before the hand-off")
    assert [m.extra_headers["Message-ID"] for m in mail.outbox] == [queued.message_id]
    queued.refresh_from_db()
    assert queued.status == "sent" and queued.attempts == 2


def test_a_worker_slowed_near_its_lease_renews_it_before_the_hand_off(queued, monkeypatch):
    """A slow open leaves less of the lease than one exchange may take: the worker
    renews its claim first, so a sweep during the exchange would not take it back."""
    leases = []
    with time_machine.travel(timezone.now(), tick=True) as clock:

        def slow_open(self):
            clock.shift(notify.lease() - dt.timedelta(seconds=2))
            return True

        def send(self, messages):
            row = Notification.objects.get(pk=queued.pk)
            leases.append(row.lease_until - timezone.now())
            mail.outbox.extend(messages)
            return len(messages)

        monkeypatch.setattr(FlakyBackend, "open", slow_open)
        monkeypatch.setattr(FlakyBackend, "send_messages", send)
        assert notify.notification_deliver(notification_id=queued.pk).endswith(": sent")
    (left,) = leases
    assert left > notify.exchange()
    assert len(mail.outbox) == 1


def test_it_treats_a_4xx_refusal_as_transient(queued):
    FlakyBackend.errors = [smtplib.SMTPRecipientsRefused({queued.to_email: (451, b"try later")})]
    assert "will retry" in notify.notification_deliver(notification_id=queued.pk)


def test_the_sweep_requeues_a_delivery_whose_process_died_mid_send(queued, broker_calls):
    # A worker claimed it and died: it stays "sending" until its lease runs out.
    Notification.objects.filter(pk=queued.pk).update(
        status="sending", lease_until=timezone.now() + notify.lease(), attempts=1
    )
    escalation.sweep()
    assert Notification.objects.get(pk=queued.pk).status == "sending"
    with time_machine.travel(timezone.now() + notify.lease() + notify.lease(), tick=False):
        escalation.sweep()
        queued.refresh_from_db()
        assert queued.status == "queued"
        assert notify.notification_deliver(notification_id=queued.pk).endswith("sent")
    assert mail.outbox[-1].extra_headers["Message-ID"] == queued.message_id


@pytest.mark.parametrize(
    "title",
    [
        "Δεδομένα πελατών εκτέθηκαν στο διαδίκτυο",
        "נתוני לקוחות נחשפו באתר החברה",
        "Szolgáltatáskiesés: a fizetés nem működik a webáruházban, "
        "a mobilalkalmazásban és a pénztáraknál sem, országszerte",
    ],
)
def test_it_encodes_the_subject_so_a_parser_reads_back_exactly_the_same_text(
    title, team, make_playbook, broker_calls, settings, monkeypatch, tmp_path
):
    settings.EMAIL_BACKEND = "crisisdesk.mail.EmlFileBackend"
    monkeypatch.setattr(notify, "deliver_now", lambda ids: None)
    incident = services.incident_open(title=title, playbook=make_playbook())
    level1 = Timer.objects.get(incident=incident, kind="escalation", level=1)
    with time_machine.travel(level1.due_at, tick=False):
        escalation.timer_fire(timer_id=level1.pk)
    n = Notification.objects.get(incident=incident, reason="escalation")
    with time_machine.travel(level1.due_at, tick=False):
        assert notify.notification_deliver(notification_id=n.pk).endswith("sent")
    assert title in n.subject and len(n.subject) > 40
    (eml,) = (tmp_path / "mail").glob("*.eml")
    parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == n.subject
    headers = eml.read_bytes().split(b"\r\n\r\n")[0].decode("ascii")
    assert all(len(line) <= 78 for line in headers.split("\r\n"))


def test_acknowledging_cancels_escalation_pages_still_in_the_outbox(queued, broker_calls):
    """Queued, or waiting for a retry: the acknowledgement cancels them, nothing is sent."""
    FlakyBackend.errors = [ConnectionRefusedError(111, "Connection refused")]
    assert "will retry" in notify.notification_deliver(notification_id=queued.pk)
    incident = queued.incident
    level2 = Timer.objects.get(incident=incident, kind="escalation", level=2)
    with time_machine.travel(level2.due_at, tick=False):
        escalation.timer_fire(timer_id=level2.pk)
    Notification.objects.update(next_attempt_at=timezone.now())
    waiting_retry, fresh = queued, Notification.objects.get(incident=incident, timer=level2)
    assert fresh.status == "queued"

    services.incident_acknowledge(incident=incident, actor=fresh.recipient)
    for n in (waiting_retry, fresh):
        n.refresh_from_db()
        assert n.status == "cancelled" and "acknowledged" in n.cancel_reason
        with time_machine.travel(n.next_attempt_at + dt.timedelta(minutes=1), tick=False):
            assert "not queued" in notify.notification_deliver(notification_id=n.pk)
    assert mail.outbox == []
    escalation.sweep()
    assert Notification.objects.filter(status="cancelled").count() == 2


@pytest.mark.parametrize("how", ["contain", "resolve"])
def test_containing_or_resolving_cancels_escalation_pages_too(queued, team, how):
    getattr(services, f"incident_{how}")(incident=queued.incident, actor=team["people"]["noa"])
    queued.refresh_from_db()
    assert queued.status == "cancelled" and queued.cancel_reason


def test_delivery_rechecks_the_incident_right_before_sending(queued, team):
    """A page claimed after the acknowledgement (e.g. the lease ran out) is cancelled, not sent."""
    incident = queued.incident
    Incident.objects.filter(pk=incident.pk).update(
        status="acknowledged"
    )  # as if committed meanwhile
    assert "cancelled" in notify.notification_deliver(notification_id=queued.pk)
    queued.refresh_from_db()
    assert queued.status == "cancelled" and mail.outbox == []
    # A page of an earlier escalation round is not wanted either.
    n2 = Notification.objects.create(
        incident=incident, timer=queued.timer, recipient=queued.recipient, to_email="x@example.test",
        reason="escalation", dedupe_key="old-round", message_id="<old-round@example.test>",
        subject="s", body_text="b",
    )  # fmt: skip
    Incident.objects.filter(pk=incident.pk).update(status="open", escalation_round=2)
    assert "cancelled" in notify.notification_deliver(notification_id=n2.pk)
    assert mail.outbox == []


def test_a_cancelled_page_shows_its_reason_in_the_admin_and_the_api(queued, team, admin_client):
    services.incident_acknowledge(incident=queued.incident, actor=team["people"]["eszter"])
    page = admin_client.get(f"/admin/incidents/notification/{queued.pk}/change/").content.decode()
    assert "Cancelled" in page and "Eszter Kovács acknowledged the incident first." in page
    listing = admin_client.get("/admin/incidents/notification/?status=cancelled").content.decode()
    assert "acknowledged the incident first" in listing
    row = admin_client.get(f"/api/v1/notifications/{queued.pk}/").json()
    assert row["status"] == "cancelled" and "acknowledged" in row["cancel_reason"]


class SmtpLikeBackend(BaseEmailBackend):
    """Opens a connection if none is open and closes what it opened, like Django's SMTP
    backend, and records the outbox's statuses at the moment the connection is closed."""

    statuses_at_close: list[list[str]] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connection = None

    def open(self):
        if self.connection:
            return False
        self.connection = object()
        return True

    def close(self):
        SmtpLikeBackend.statuses_at_close.append(
            list(Notification.objects.filter(reason="escalation").values_list("status", flat=True))
        )
        self.connection = None

    def send_messages(self, messages):
        new = self.open()
        mail.outbox.extend(messages)
        if new:
            self.close()  # QUIT: waits for the server
        return len(messages)


def test_it_marks_the_row_sent_before_closing_the_connection(queued, settings):
    """Nothing between the server's acceptance and the commit, not even the QUIT."""
    settings.EMAIL_BACKEND = "tests.incidents.test_delivery.SmtpLikeBackend"
    SmtpLikeBackend.statuses_at_close = []
    assert notify.notification_deliver(notification_id=queued.pk).endswith("sent")
    assert SmtpLikeBackend.statuses_at_close == [["sent"]]


def test_a_failed_smtp_exchange_is_reset_so_nothing_unsent_is_delivered_later():
    """A send that timed out (the network went) may leave data in the kernel's buffer;
    the connection is reset, not closed, so that data never reaches the server when the
    network comes back (tests/incidents/test_many_hosts.py saw the second copy)."""
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()

    class Smtp:  # what Django's SMTP backend holds: smtplib.SMTP with its socket
        sock, file = client, None

    class Backend:
        connection = Smtp()
        closed = False

        def close(self):
            Backend.closed = True

    backend = Backend()
    client.sendall(b"DATA\r\n")
    notify._abort(backend)
    assert backend.connection.sock is None and Backend.closed
    assert peer.recv(100) == b"DATA\r\n"
    with pytest.raises(ConnectionResetError):  # a reset, not an orderly end (b"")
        peer.recv(100)
    peer.close()
    server.close()
