"""The signed links of status-page subscriptions (incidents/subscribers.py).

A confirmation link carries the whole request (address, language, scope), signed
and expiring (``CONFIRM_MAX_AGE``): nothing is stored until it is used, so an
address someone else typed in is never kept. An unsubscribe link names the
subscriber (contact id and address) and does not expire: it must work from any
old e-mail. It carries no time either, so it is the same link every time it is
written: the footer of an e-mail (written when the message is sent) and its
List-Unsubscribe header (written when it is delivered, maybe a second later) agree,
and a resend is the same e-mail. Links signed with a time by earlier versions are
still read. A forged or cut link of either kind reads as nothing.
"""

from __future__ import annotations

from datetime import timedelta

from django.core import signing
from django.urls import reverse

from incidents.acklinks import link_token, link_token_read

CONFIRM_SALT = "crisisdesk.status.subscribe"
UNSUBSCRIBE_SALT = "crisisdesk.status.unsubscribe"
CONFIRM_MAX_AGE = timedelta(hours=48)
# How long an unsubscribe link signed with a time (earlier versions) is honoured.
UNSUBSCRIBE_MAX_AGE = timedelta(days=3650)


def confirm_token(*, email: str, language: str, incident_id: int | None) -> str:
    return link_token({"e": email, "l": language, "i": incident_id}, salt=CONFIRM_SALT)


def confirm_token_read(token: str) -> dict | None:
    """{"e": address, "l": language, "i": incident id or None}, or None for a forged,
    cut or expired link."""
    try:
        data = link_token_read(token, salt=CONFIRM_SALT, max_age=CONFIRM_MAX_AGE)
    except signing.BadSignature:  # SignatureExpired is one
        return None
    if not isinstance(data.get("e"), str) or not isinstance(data.get("l"), str):
        return None
    if data.get("i") is not None and not isinstance(data["i"], int):
        return None
    return data


def unsubscribe_token(*, contact_id: int, email: str) -> str:
    signer = signing.Signer(salt=UNSUBSCRIBE_SALT)
    return signer.sign_object({"c": contact_id, "e": email}, compress=True)


def unsubscribe_token_read(token: str) -> tuple[int, str] | None:
    try:
        if token.count(":") == 2:  # payload:time:signature, from before links were timeless
            data = link_token_read(token, salt=UNSUBSCRIBE_SALT, max_age=UNSUBSCRIBE_MAX_AGE)
        else:
            data = signing.Signer(salt=UNSUBSCRIBE_SALT).unsign_object(token)
    except (signing.BadSignature, ValueError):  # forged, cut, or not a token at all
        return None
    if not isinstance(data, dict):
        return None
    if not isinstance(data.get("c"), int) or not isinstance(data.get("e"), str):
        return None
    return data["c"], data["e"]


def unsubscribe_path(*, contact_id: int, email: str) -> str:
    return reverse(
        "status:unsubscribe", args=[unsubscribe_token(contact_id=contact_id, email=email)]
    )
