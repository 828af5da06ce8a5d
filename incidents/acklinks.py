"""The one-click acknowledge links in escalation e-mails.

A link carries a signed, expiring token naming the Message-ID of the e-mail it
was sent in; the notification row says whom it was for and whether it was used.
"""

from __future__ import annotations

from datetime import timedelta

from django.core import signing

ACK_SALT = "crisisdesk.incidents.ack"
ACK_MAX_AGE = timedelta(hours=24)


def ack_token(message_id: str) -> str:
    return signing.dumps({"m": message_id}, salt=ACK_SALT, compress=True)


def ack_token_read(token: str) -> str:
    """The Message-ID a link was made for; raises signing.SignatureExpired / BadSignature."""
    data = signing.loads(token, salt=ACK_SALT, max_age=ACK_MAX_AGE)
    return data["m"]
