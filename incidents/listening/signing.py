"""Webhook signatures: HMAC-SHA256 of ``<timestamp>.<raw body>`` with the source's secret.

The sender puts the Unix time (seconds) in ``X-CrisisDesk-Timestamp`` and
``sha256=<hex>`` in ``X-CrisisDesk-Signature``, the hex HMAC-SHA256 of the
timestamp, a full stop and the raw body bytes, keyed with the source's secret.
The timestamp is signed so an old request cannot be sent again with a new one.

1. Refuse a missing or malformed header, or a signature that does not verify
   (compared in constant time).
2. Refuse a timestamp more than ``TOLERANCE_SECONDS`` from now, either way.
3. Refuse a signature already accepted (a replay): ``signature_remember`` writes
   it in the transaction that writes the mentions, under a unique constraint, so
   two copies of one request at once write once. Past the tolerance, the
   timestamp check refuses it anyway, so old rows are pruned.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from django.db import connection
from django.utils.translation import gettext as _

from incidents.listening.models import SeenSignature, Source

TOLERANCE_SECONDS = 300
SIGNATURE_HEADER = "X-CrisisDesk-Signature"
TIMESTAMP_HEADER = "X-CrisisDesk-Timestamp"


class SignatureRefused(Exception):
    def __init__(self, message: str, *, replay: bool = False):
        super().__init__(message)
        self.replay = replay


def sign(*, secret: str, timestamp: int | str, body: bytes) -> str:
    """The header value a sender puts in X-CrisisDesk-Signature."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signature_verify(
    *, source: Source, body: bytes, signature: str, timestamp: str, now: datetime
) -> str:
    """Steps 1 and 2; returns the hex digest to remember."""
    if not signature or not timestamp:
        raise SignatureRefused(
            _("Both %(s)s and %(t)s headers are required.")
            % {"s": SIGNATURE_HEADER, "t": TIMESTAMP_HEADER}
        )
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureRefused(_("%(t)s must be Unix seconds.") % {"t": TIMESTAMP_HEADER})
    expected = sign(secret=source.secret, timestamp=timestamp, body=body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise SignatureRefused(_("The signature does not match the body and timestamp."))
    if abs(now.timestamp() - int(timestamp)) > TOLERANCE_SECONDS:
        raise SignatureRefused(
            _("The timestamp is more than %(n)s seconds from now.") % {"n": TOLERANCE_SECONDS}
        )
    return expected.removeprefix("sha256=")


def signature_remember(*, source: Source, digest: str, now: datetime) -> None:
    """Step 3: in the caller's transaction; a second use raises SignatureRefused(replay).

    One statement, no savepoint: the unique constraint decides, and a conflict
    inserts nothing (``ON CONFLICT DO NOTHING``, PostgreSQL and SQLite alike).
    """
    table = SeenSignature._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (source_id, digest, seen_at) VALUES (%s, %s, %s) "  # noqa: S608 - our own table name
            "ON CONFLICT DO NOTHING",
            [source.pk, digest, now],
        )
        inserted = cursor.rowcount
    if inserted != 1:
        raise SignatureRefused(_("This request was received before."), replay=True)


def signatures_prune(*, now: datetime) -> int:
    cutoff = now - timedelta(seconds=2 * TOLERANCE_SECONDS)
    deleted, _rows = SeenSignature.objects.filter(seen_at__lt=cutoff).delete()
    return deleted
