"""Status-page subscribers: double opt-in, one-click unsubscribe, limits, scope, headers."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.utils import timezone

from incidents import notify, sublinks, subscribers
from incidents import services as incident_services
from incidents.acklinks import link_token
from incidents.models import Notification, Subscription
from playbooks.models import Stakeholder, StakeholderGroup
from tests.statuspage.conftest import publish

pytestmark = pytest.mark.django_db

CHECK_INBOX = "Check your inbox"


@pytest.fixture
def site(settings, desk):
    settings.SITE_URL = "https://status.example.test"
    settings.ALLOWED_HOSTS = ["testserver", "status.example.test"]
    return desk


def _subscribe(client, email, *, language="en", incident="", ip="192.0.2.1"):
    return client.post(
        "/status/subscribe/",
        {"email": email, "language": language, "incident": incident},
        REMOTE_ADDR=ip,
    )


def _delivered_link(name: str) -> str:
    """Deliver the newest confirmation e-mail and return the link's path in it."""
    n = Notification.objects.filter(reason=subscribers.SUBSCRIBE_REASON).latest("pk")
    notify.notification_deliver(notification_id=n.pk)
    email = mail.outbox[-1]
    assert email.to == [n.to_email]
    match = re.search(r"https://status\.example\.test(/status/subscribe/[^/\s]+/)", email.body)
    assert match, email.body
    return match.group(1)


def _subscribed(client, email, **kwargs) -> Subscription:
    assert CHECK_INBOX in _subscribe(client, email, **kwargs).content.decode()
    link = _delivered_link(email)
    assert client.post(link).status_code == 200
    return (
        Subscription.objects.select_related("contact")
        .filter(contact__email__iexact=email)
        .latest("pk")
    )


def test_it_subscribes_only_once_the_emailed_link_is_confirmed(site):
    client = Client(enforce_csrf_checks=True)  # the cached page carries no CSRF token
    response = _subscribe(client, "reader@example.test", language="he")
    assert response.status_code == 200
    assert CHECK_INBOX in response.content.decode()
    assert not Stakeholder.objects.filter(email="reader@example.test").exists()
    link = _delivered_link("reader@example.test")
    # Opening the link (a person, or a mail scanner) only shows a button.
    page = client.get(link)
    assert page.status_code == 200 and 'method="post"' in page.content.decode()
    assert not Stakeholder.objects.filter(email="reader@example.test").exists()
    done = client.post(link)
    assert done.status_code == 200
    contact = Stakeholder.objects.get(email="reader@example.test")
    assert contact.group.kind == StakeholderGroup.Kind.SUBSCRIBERS
    assert contact.group.public is True
    assert contact.language == "he"
    assert contact.subscriptions.get().incident is None
    # Using the link again changes nothing: one contact, one subscription.
    client.post(link)
    assert Subscription.objects.filter(contact=contact).count() == 1


def test_it_subscribes_to_one_incident_and_keeps_one_contact_per_address(client, site):
    publish(site, "Tracking is down.")
    reference = site["incident"].reference
    one = _subscribed(client, "reader@example.test", incident=reference)
    assert one.incident == site["incident"]
    both = _subscribed(client, "Reader@Example.test")
    assert both.contact_id == one.contact_id
    assert Stakeholder.objects.filter(email__iexact="reader@example.test").count() == 1
    assert set(Subscription.objects.values_list("incident", flat=True)) == {None, one.incident_id}


def test_it_answers_the_same_whether_the_address_is_subscribed_or_not(client, site):
    _subscribed(client, "known@example.test")
    known = _subscribe(client, "known@example.test", ip="192.0.2.7")
    unknown = _subscribe(client, "new@example.test", ip="192.0.2.8")
    assert known.status_code == unknown.status_code == 200
    assert known.content == unknown.content


@pytest.mark.parametrize(
    "data",
    [
        {"email": "not an address", "language": "en"},
        {"email": "", "language": "en"},
        {"email": "a@example.test", "language": "xx"},
        {"email": "a" * 250 + "@example.test", "language": "en"},
        {"email": "a@example.test", "language": "en", "incident": "INC-2026-9999"},
    ],
)
def test_it_refuses_bad_input_with_a_message_and_writes_nothing(client, site, data):
    response = client.post("/status/subscribe/", data)
    assert response.status_code == 400
    assert 'class="notice"' in response.content.decode()
    assert not Notification.objects.filter(reason=subscribers.SUBSCRIBE_REASON).exists()


def test_it_will_not_subscribe_to_a_confidential_or_drill_incident(client, site):
    secret = incident_services.incident_open(title="Secret", confidential=True, playbook=None)
    drill = incident_services.incident_open(title="Drill", drill=True, playbook=None)
    for incident in (secret, drill):
        publish(site, f"About {incident.title}", incident=incident)
        hidden = _subscribe(client, "a@example.test", incident=incident.reference)
        made_up = _subscribe(client, "a@example.test", incident="INC-2026-9999")
        assert hidden.status_code == made_up.status_code == 400
        # Alike but for the reference the form echoes back.
        assert hidden.content.decode().replace(incident.reference, "REF") == (
            made_up.content.decode().replace("INC-2026-9999", "REF")
        )
        assert incident.title not in hidden.content.decode()
    assert not Notification.objects.filter(reason=subscribers.SUBSCRIBE_REASON).exists()


def test_it_refuses_a_forged_cut_expired_or_foreign_link(client, site):
    _subscribe(client, "reader@example.test")
    link = _delivered_link("reader@example.test")
    token = link.rstrip("/").rsplit("/", 1)[1]
    forged = sublinks.confirm_token(email="x@example.test", language="en", incident_id=None)
    forged = forged[:-3] + ("aaa" if not forged.endswith("aaa") else "bbb")
    unsubscribe = sublinks.unsubscribe_token(contact_id=1, email="reader@example.test")
    for bad in (forged, token[:-5], unsubscribe):
        for method in (client.get, client.post):
            response = method(f"/status/subscribe/{bad}/")
            assert response.status_code == 400
            assert "This link does not work" in response.content.decode()
    with time_machine.travel(timezone.now() + sublinks.CONFIRM_MAX_AGE + dt.timedelta(minutes=1)):
        assert client.post(link).status_code == 400
    assert not Stakeholder.objects.filter(email="reader@example.test").exists()
    assert client.post(link).status_code == 200  # the genuine link, in time, works


def test_it_limits_requests_per_address_and_per_client(client, site, settings):
    settings.CRISISDESK_SUBSCRIBE_PER_ADDRESS = 2
    settings.CRISISDESK_SUBSCRIBE_PER_CLIENT = 3
    codes = [
        _subscribe(client, "same@example.test", ip=f"192.0.2.{i}").status_code for i in range(3)
    ]
    assert codes == [200, 200, 429]
    codes = [
        _subscribe(client, f"r{i}@example.test", ip="198.51.100.9").status_code for i in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    assert "Too many" in _subscribe(client, "r9@example.test", ip="198.51.100.9").content.decode()
    assert Notification.objects.filter(reason=subscribers.SUBSCRIBE_REASON).count() == 5
    # An hour later the address may ask again.
    with time_machine.travel(timezone.now() + dt.timedelta(hours=1, minutes=1)):
        assert _subscribe(client, "same@example.test", ip="203.0.113.1").status_code == 200


def _send_to_subscribers(site, body, *, incident=None):
    return publish(
        site,
        body,
        incident=incident,
        audience=subscribers.subscribers_group(),
        channel="email",
        subject="Update",
    )


def test_messages_to_subscribers_respect_scope_and_carry_one_click_unsubscribe(client, site):
    publish(site, "Tracking is down.")
    other = incident_services.incident_open(title="Warehouse flooded", playbook=None)
    publish(site, "The warehouse is flooded.", incident=other)
    everything = _subscribed(client, "all@example.test")
    this_one = _subscribed(client, "this@example.test", incident=site["incident"].reference)
    _subscribed(client, "other@example.test", incident=other.reference)
    mail.outbox.clear()

    message = _send_to_subscribers(site, "Tracking is back.")
    notifications = Notification.objects.filter(comms_message=message)
    assert {n.to_email for n in notifications} == {"all@example.test", "this@example.test"}
    for n in notifications:
        notify.notification_deliver(notification_id=n.pk)
    assert len(mail.outbox) == 2
    for email in mail.outbox:
        headers = email.message()
        url = headers["List-Unsubscribe"]
        assert url.startswith("<https://status.example.test/status/unsubscribe/")
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert url.strip("<>") in email.body  # the link in the body too
    # RFC 8058: the mail program POSTs List-Unsubscribe=One-Click, with no cookie or token.
    mailer = Client(enforce_csrf_checks=True)
    email_this = next(e for e in mail.outbox if e.to == ["this@example.test"])
    path = (
        email_this.message()["List-Unsubscribe"]
        .strip("<>")
        .removeprefix("https://status.example.test")
    )
    assert mailer.get(path).status_code == 200  # a button: nothing changes on GET
    assert Stakeholder.objects.filter(pk=this_one.contact_id).exists()
    response = mailer.post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert not Stakeholder.objects.filter(pk=this_one.contact_id).exists()
    assert mailer.post(path).status_code == 200  # again: still unsubscribed, no error
    assert Stakeholder.objects.filter(pk=everything.contact_id).exists()
    # The next message reaches only who is left.
    again = _send_to_subscribers(site, "All clear.")
    assert [n.to_email for n in Notification.objects.filter(comms_message=again)] == [
        "all@example.test"
    ]


def test_an_unsubscribe_before_delivery_cancels_the_email(client, site):
    publish(site, "Tracking is down.")
    sub = _subscribed(client, "late@example.test")
    message = _send_to_subscribers(site, "Tracking is back.")
    n = Notification.objects.get(comms_message=message)
    subscribers.subscription_cancel(contact_id=sub.contact_id, email="late@example.test")
    mail.outbox.clear()
    assert "cancelled" in notify.notification_deliver(notification_id=n.pk)
    assert mail.outbox == []


def test_other_emails_carry_no_unsubscribe_header(client, site):
    message = publish(site, "To customers by e-mail.", channel="email", subject="Hello")
    n = Notification.objects.filter(comms_message=message).first()
    notify.notification_deliver(notification_id=n.pk)
    assert "List-Unsubscribe" not in mail.outbox[-1].message()


def test_a_forged_unsubscribe_link_changes_nothing(client, site):
    sub = _subscribed(client, "stay@example.test")
    forged = sublinks.unsubscribe_token(contact_id=sub.contact_id, email="stay@example.test")
    forged = forged[:-2] + ("zz" if not forged.endswith("zz") else "yy")
    assert client.post(f"/status/unsubscribe/{forged}/").status_code == 400
    # A genuine link naming another address does not remove this subscriber either.
    other = sublinks.unsubscribe_token(contact_id=sub.contact_id, email="else@example.test")
    assert client.post(f"/status/unsubscribe/{other}/").status_code == 200
    assert Stakeholder.objects.filter(pk=sub.contact_id).exists()


def test_an_unsubscribe_link_is_the_same_at_any_second_and_old_timed_links_still_work(client, site):
    # The footer is written when the message is sent and the List-Unsubscribe header when
    # it is delivered: the two must be one link however far apart they are written.
    sub = _subscribed(client, "same@example.test")
    first = sublinks.unsubscribe_token(contact_id=sub.contact_id, email="same@example.test")
    with time_machine.travel(timezone.now() + dt.timedelta(days=400)):
        later = sublinks.unsubscribe_token(contact_id=sub.contact_id, email="same@example.test")
    assert first == later
    assert sublinks.unsubscribe_token_read(first) == (sub.contact_id, "same@example.test")
    # A link signed with a time (before links were made timeless) still unsubscribes.
    timed = link_token(
        {"c": sub.contact_id, "e": "same@example.test"}, salt=sublinks.UNSUBSCRIBE_SALT
    )
    assert timed != first
    assert client.post(f"/status/unsubscribe/{timed}/").status_code == 200
    assert not Stakeholder.objects.filter(pk=sub.contact_id).exists()


def test_the_admin_lists_subscriptions_read_only(admin_client, client, site):
    _subscribed(client, "listed@example.test")
    page = admin_client.get("/admin/incidents/subscription/")
    assert page.status_code == 200
    assert "listed@example.test" in page.content.decode()
    assert admin_client.get("/admin/incidents/subscription/add/").status_code == 403


def test_it_limits_each_client_behind_a_trusted_proxy_by_its_own_address(client, site, settings):
    settings.CRISISDESK_SUBSCRIBE_PER_CLIENT = 2
    settings.CRISISDESK_TRUSTED_PROXIES = ["127.0.0.1/32"]

    def through_proxy(email, forwarded):
        return client.post(
            "/status/subscribe/",
            {"email": email, "language": "en", "incident": ""},
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_FORWARDED_FOR=forwarded,
        ).status_code

    # Two clients through the same proxy: each has its own limit.
    assert [through_proxy(f"a{i}@example.test", "203.0.113.1") for i in range(3)] == [
        200,
        200,
        429,
    ]
    assert through_proxy("b@example.test", "203.0.113.2") == 200
    # A forged left-most hop does not give a client a fresh limit.
    assert through_proxy("c@example.test", "198.51.100.1, 203.0.113.1") == 429


def test_a_subscriber_is_greeted_neutrally_never_by_their_address(client, site):
    publish(site, "Tracking is down.")
    _subscribed(client, "greet.me@example.test")
    message = publish(
        site,
        "Dear {recipient_name}, tracking is back.",
        audience=subscribers.subscribers_group(),
        channel="email",
        subject="For {recipient_name}: update",
        translations={
            code: {
                "subject": "For {recipient_name}: update",
                "body": "Dear {recipient_name}, tracking is back.",
            }
            for code in ("hu", "he", "el", "en")
        },
    )
    (sent,) = Notification.objects.filter(comms_message=message)
    assert sent.to_email == "greet.me@example.test"
    assert "greet.me" not in sent.subject and "greet.me" not in sent.body_text.split("-- ")[0]
    assert sent.subject == "For subscriber: update"
    assert sent.body_text.startswith("Dear subscriber, tracking is back.")
