"""Status-page subscribers: double opt-in, one-click unsubscribe, rate limits.

1. ``subscription_request`` (the form on /status/): counts the request against the
   address's and the client's limits (settings ``CRISISDESK_SUBSCRIBE_PER_ADDRESS``
   and ``CRISISDESK_SUBSCRIBE_PER_CLIENT``, per hour, counted atomically in the
   database: ``RateCount``), then
   e-mails a signed, expiring confirmation link through the outbox. It answers the
   same whether the address is subscribed already or not, and stores nothing else.
2. ``subscription_confirm`` (the link, confirmed by a button so that mail scanners
   opening links subscribe nobody): the address becomes a contact of the
   *subscribers* stakeholder group (one per address) with its language, and a
   ``Subscription`` says what it wants: every update, or one incident's.
3. ``subscription_cancel`` (the unsubscribe link in every e-mail to a subscriber,
   and its RFC 8058 one-click POST): the contact and its subscriptions go.

Sending is the communications timeline's: a message to the subscribers audience
reaches each subscriber whose scope covers its incident (``comms.message_send``),
with ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` headers (``notify``).
"""

from __future__ import annotations

import hashlib
import time
import uuid

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import reverse
from django.utils.translation import gettext_lazy

from incidents import dispatch, sublinks
from incidents.models import Incident, Notification, RateCount, Subscription
from incidents.notify import absolute, render_email
from incidents.selectors import public_incidents
from playbooks.models import Stakeholder, StakeholderGroup

SUBSCRIBERS_SLUG = "status-subscribers"
SUBSCRIBE_REASON = "subscribe"
WINDOW_SECONDS = 60 * 60


class RateLimited(Exception):
    """Too many subscription requests from this address or this client this hour."""


def subscribers_group() -> StakeholderGroup:
    """The one *subscribers* audience, made on first use (public: its statements are
    on the status page, where its members asked for them)."""
    group, _created = StakeholderGroup.objects.get_or_create(
        slug=SUBSCRIBERS_SLUG,
        defaults={
            "name": str(gettext_lazy("Status-page subscribers")),
            "kind": StakeholderGroup.Kind.SUBSCRIBERS,
            "public": True,
            "priority": 3,
            "default_language": settings.LANGUAGE_CODE,
            "description": str(
                gettext_lazy("People who subscribed to updates on the public status page.")
            ),
        },
    )
    return group


def _within(key: str, limit: int) -> bool:
    """Count one request under ``key`` for this hour; False once ``limit`` were counted.

    In the database (``RateCount``), not the cache: the file cache has no atomic
    increment, so two processes reading the same count would both pass. The claim is
    one ``UPDATE ... SET n = n + 1 WHERE n < limit``: atomic on SQLite and PostgreSQL
    alike, it can never count past the limit, and exactly one row changed means this
    request is within it.
    """
    window = int(time.time()) // WINDOW_SECONDS
    digest = hashlib.sha256(key.encode()).hexdigest()
    RateCount.objects.filter(window__lt=window).delete()  # past windows: never read again
    RateCount.objects.bulk_create(
        [RateCount(key=digest, window=window, n=0)], ignore_conflicts=True
    )
    claimed = RateCount.objects.filter(key=digest, window=window, n__lt=limit).update(n=F("n") + 1)
    return claimed == 1


def _address_key(email: str) -> str:
    # Hashed (again in _within): no table holds an address in clear.
    return "status:rl:addr:" + hashlib.sha256(email.lower().encode()).hexdigest()


@transaction.atomic
def subscription_request(
    *, email: str, language: str, incident: Incident | None, client: str
) -> Notification:
    """E-mail a confirmation link, if neither the address nor the client is over its
    hourly limit (else ``RateLimited``, nothing sent)."""
    email = email.strip()
    client_ok = _within(f"status:rl:client:{client}", settings.CRISISDESK_SUBSCRIBE_PER_CLIENT)
    if not client_ok or not _within(_address_key(email), settings.CRISISDESK_SUBSCRIBE_PER_ADDRESS):
        raise RateLimited
    token = sublinks.confirm_token(
        email=email, language=language, incident_id=incident.pk if incident else None
    )
    subject, text, html = render_email(
        "subscribe_confirm",
        {
            "company": settings.COMPANY_NAME,
            "incident": incident,
            "confirm_url": absolute(reverse("status:confirm", args=[token])),
            "hours": int(sublinks.CONFIRM_MAX_AGE.total_seconds() // 3600),
        },
        language=language,
    )
    notification = Notification.objects.create(
        to_email=email,
        reason=SUBSCRIBE_REASON,
        dedupe_key=f"subscribe:{uuid.uuid4().hex}",
        message_id=Notification.new_message_id(),
        subject=subject[:400],
        body_text=text,
        body_html=html,
        language=language,
    )
    dispatch.deliver_on_commit([notification.pk])
    return notification


def subscription_confirm(
    *, email: str, language: str, incident_id: int | None
) -> Subscription | None:
    """Subscribe the address of a confirmation link; None when the incident it names
    has nothing public (any more): such a link is spent like a forged one."""
    incident = None
    if incident_id is not None:
        incident = public_incidents().filter(pk=incident_id).first()
        if incident is None:
            return None
    try:
        return _subscribe(email=email, language=language, incident=incident)
    except IntegrityError:  # the same link used twice at once: the other one won
        return _subscribe(email=email, language=language, incident=incident)


@transaction.atomic
def _subscribe(*, email: str, language: str, incident: Incident | None) -> Subscription:
    group = subscribers_group()
    contact = group.contacts.filter(email__iexact=email).first()
    if contact is None:
        contact = Stakeholder.objects.create(
            group=group, name=email[:200], email=email, language=language
        )
    elif contact.language != language:
        contact.language = language
        contact.save(update_fields=["language"])
    subscription, _created = Subscription.objects.get_or_create(contact=contact, incident=incident)
    return subscription


@transaction.atomic
def subscription_cancel(*, contact_id: int, email: str) -> None:
    """Unsubscribe: the subscriber's contact and every subscription of it go. Safe to
    repeat; a link whose subscriber is gone changes nothing."""
    Stakeholder.objects.filter(
        pk=contact_id, email__iexact=email, group__kind=StakeholderGroup.Kind.SUBSCRIBERS
    ).delete()


@transaction.atomic
def subscription_delete(*, subscription: Subscription) -> None:
    """Unsubscribe one scope (a crisis manager, through the API); the subscriber's
    contact, and with it the address, goes with its last subscription."""
    contact_id = subscription.contact_id
    subscription.delete()
    if not Subscription.objects.filter(contact_id=contact_id).exists():
        Stakeholder.objects.filter(
            pk=contact_id, group__kind=StakeholderGroup.Kind.SUBSCRIBERS
        ).delete()
