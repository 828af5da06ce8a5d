"""The roll-call links in activation e-mails: *joining* or *can't*.

When a role is handed to someone (``services.role_assign``, also on opening),
they are e-mailed with two links. Each carries a signed, expiring token naming
the Message-ID of the e-mail and the answer (signed like the acknowledge links,
``acklinks.link_token``); the notification row says whose role assignment it
answers for. A GET only shows a confirmation page (mail scanners open links);
the POST answers, once: answering burns the assignment's roll call
(``services.role_answer_by_link``), so the other link, and the same links in a
chase e-mail, are dead after it.

A link is honoured only while its holder still holds that role (the assignment
is current), has not answered, the incident is active, and the holder may see
the incident (``incidents_visible_to``). Anything else (forged, cut, expired,
used, relieved, hidden) is *dead* and tells nothing of the incident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.core import signing

from incidents.acklinks import DEAD, DONE, LIVE, holder_may_see, link_token, link_token_read
from incidents.models import Incident, Notification, RoleAssignment

ROLL_CALL_SALT = "crisisdesk.incidents.rollcall"
ROLL_CALL_MAX_AGE = timedelta(hours=24)
ANSWERS = (RoleAssignment.Answer.JOINING, RoleAssignment.Answer.CANT)

__all__ = ["DEAD", "DONE", "LIVE", "RollCallLink", "rollcall_link_read", "rollcall_token"]


@dataclass(frozen=True)
class RollCallLink:
    """What a roll-call link may tell whoever holds it: the notification (so the incident
    and the role) for a live or just-used link; nothing for a dead one."""

    state: str
    notification: Notification | None = None
    answer: str = ""
    # After a "can't": who the role was offered to (None: nobody left to ask).
    passed_to: object | None = None

    @property
    def incident(self) -> Incident | None:
        return self.notification.incident if self.notification is not None else None

    @property
    def assignment(self) -> RoleAssignment | None:
        return self.notification.role_assignment if self.notification is not None else None


DEAD_LINK = RollCallLink(DEAD)


def rollcall_token(message_id: str, answer: str) -> str:
    return link_token({"m": message_id, "a": str(answer)}, salt=ROLL_CALL_SALT)


def rollcall_link_read(token: str) -> RollCallLink:
    """What the link says now, without using it (the confirmation page of a GET)."""
    try:
        data = link_token_read(token, salt=ROLL_CALL_SALT, max_age=ROLL_CALL_MAX_AGE)
    except signing.BadSignature:  # forged, cut or expired (SignatureExpired is one)
        return DEAD_LINK
    answer = data.get("a")
    if answer not in ANSWERS:
        return DEAD_LINK
    notification = (
        Notification.objects.select_related(
            "incident", "recipient", "role_assignment", "role_assignment__role"
        )
        .filter(
            message_id=data.get("m"),
            incident__isnull=False,
            recipient__isnull=False,
            role_assignment__isnull=False,
        )
        .first()
    )
    if notification is None:
        return DEAD_LINK
    assignment = notification.role_assignment
    if (
        assignment.user_id != notification.recipient_id
        or assignment.relieved_at is not None
        or assignment.answer != RoleAssignment.Answer.PENDING
        or not notification.incident.is_active
        or not holder_may_see(notification)
    ):
        return DEAD_LINK
    return RollCallLink(LIVE, notification, answer)
