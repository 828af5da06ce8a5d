"""An e-mail backend that keeps every message as an .eml file a person can open.

The local desk has no SMTP server; on-call e-mails still need to be read, so each
message is written to ``EMAIL_FILE_PATH`` as ``<UTC time>-<n>.eml`` (RFC 5322 bytes,
exactly what an SMTP server would have received). Any mail program opens them.
"""

from __future__ import annotations

import itertools
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend

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
