"""E-mail helpers: a message whose subject survives any language, and an .eml backend.

``Email`` is Django's ``EmailMultiAlternatives`` with the Subject header encoded
knowing its own name. Django encodes a non-ASCII subject without it, so the
first encoded word does not fit after ``Subject: ``, the header is folded right
after the colon, and a parser (``email.policy.default``) reads the subject back
with a leading space (seen with Greek and Hebrew incident titles).

The backend keeps every message as an .eml file a person can open.

The local desk has no SMTP server; on-call e-mails still need to be read, so each
message is written to ``EMAIL_FILE_PATH`` as ``<UTC time>-<n>.eml`` (RFC 5322 bytes,
exactly what an SMTP server would have received). Any mail program opens them.
"""

from __future__ import annotations

import itertools
import os
import threading
from datetime import UTC, datetime
from email.header import Header
from pathlib import Path

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend

# An ASCII word longer than this cannot be folded as it is: encode it instead.
_LONGEST_PLAIN_WORD = 60


class Email(EmailMultiAlternatives):
    """An e-mail whose Subject a parser reads back exactly as it was written."""

    def message(self, *args, **kwargs):
        msg = super().message(*args, **kwargs)
        subject = str(self.subject)
        plain = subject.isascii() and all(
            len(word) <= _LONGEST_PLAIN_WORD for word in subject.split()
        )
        # Folded at the right places, with "Subject: " counted in the first line.
        header = Header(subject, "us-ascii" if plain else "utf-8", header_name="Subject")
        msg.replace_header("Subject", header)
        return msg


_counter = itertools.count()
_lock = threading.Lock()


class EmlFileBackend(BaseEmailBackend):
    def __init__(self, *args, file_path: str | os.PathLike | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.folder = Path(file_path or settings.EMAIL_FILE_PATH)

    def send_messages(self, email_messages) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        sent = 0
        for message in email_messages:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
            with _lock:
                n = next(_counter)
            name = f"{stamp}-{os.getpid()}-{n}.eml"
            tmp = self.folder / f".{name}.tmp"
            tmp.write_bytes(message.message().as_bytes(linesep="\r\n"))
            tmp.rename(self.folder / name)  # atomic: a reader never sees half a message
            sent += 1
        return sent
