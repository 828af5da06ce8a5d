"""The one-click acknowledge links in escalation e-mails.

A link carries a signed, expiring token naming the Message-ID of the e-mail it
was sent in; the notification row says whom it was for (its holder) and whether
it was used. A link is honoured only while its holder may still see the incident
(``incidents_visible_to``): a forged, cut, expired, unknown or used link, or one
whose holder may no longer see the incident, is *dead* and tells nothing of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.core import signing

from incidents.models import Incident, Notification
from incidents.selectors import incidents_visible_to

ACK_SALT = "crisisdesk.incidents.ack"
ACK_MAX_AGE = timedelta(hours=24)

LIVE = "live"  # unused, waiting for an acknowledgement, its holder may see the incident
DONE = "done"  # this request acknowledged through it
TAKEN = "taken"  # nothing left to do: someone else acknowledged first (who and when only)
DEAD = "dead"  # says nothing at all


@dataclass(frozen=True)
class AckLink:
    """What a link may tell whoever holds it: the notification (so the incident) only
    for a link that is live, just used, or TAKEN (which shows only the reference and
    who acknowledged when); nothing for a dead one."""

    state: str
    notification: Notification | None = None

    @property
    def incident(self) -> Incident | None:
        return self.notification.incident if self.notification is not None else None


DEAD_LINK = AckLink(DEAD)


def link_token(payload: dict, *, salt: str) -> str:
    """A signed, compressed token for an e-mail link (each kind of link has its salt)."""
    return signing.dumps(payload, salt=salt, compress=True)


def link_token_read(token: str, *, salt: str, max_age: timedelta = ACK_MAX_AGE) -> dict:
    """What a link token carries; raises signing.SignatureExpired / BadSignature."""
    data = signing.loads(token, salt=salt, max_age=max_age)
    if not isinstance(data, dict):
        raise signing.BadSignature("not a link token")
    return data


def ack_token(message_id: str) -> str:
    return link_token({"m": message_id}, salt=ACK_SALT)


def ack_token_read(token: str) -> str:
    """The Message-ID a link was made for; raises signing.SignatureExpired / BadSignature."""
    return link_token_read(token, salt=ACK_SALT)["m"]


def ack_link_read(token: str) -> AckLink:
    """What the link says now, without using it (the confirmation page of a GET)."""
    try:
        message_id = ack_token_read(token)
    except signing.BadSignature:  # forged, cut or expired (SignatureExpired is one)
        return DEAD_LINK
    notification = (
        Notification.objects.select_related("incident", "recipient", "incident__acknowledged_by")
        .filter(message_id=message_id, incident__isnull=False, recipient__isnull=False)
        .first()
    )
    if notification is None or not holder_may_see(notification):
        return DEAD_LINK
    if notification.ack_token_used_at is None and notification.incident.status == (
        Incident.Status.OPEN
    ):
        return AckLink(LIVE, notification)
    return ack_link_spent(notification)


def holder_may_see(notification: Notification) -> bool:
    return incidents_visible_to(notification.recipient).filter(pk=notification.incident_id).exists()


def ack_link_spent(notification: Notification) -> AckLink:
    """A link whose holder may still see the incident, with nothing left to do.

    The one place that decides what such a link may say. Unused, the incident no
    longer waiting (a colleague acknowledged first, or took it in hand): TAKEN, which
    says who acknowledged and when, and nothing else. Used by its holder: nothing,
    like any dead link. (A link the e-mail side marks used because a colleague
    acknowledged first belongs here too, and may then say the same as TAKEN.)
    """
    if notification.ack_token_used_at is not None:
        return DEAD_LINK
    return AckLink(TAKEN, notification)
