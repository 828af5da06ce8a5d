from __future__ import annotations

import pytest

from incidents import comms
from incidents.models import Message
from incidents.permissions import ensure_groups
from tests.incidents.conftest import (  # noqa: F401 - fixtures shared with the incidents tests
    broker_calls,
    comms_desk,
    make_playbook,
    matrix,
    team,
)


@pytest.fixture(autouse=True)
def status_cache(settings, tmp_path):
    """A file cache of the test's own, as every web process of a desk shares one."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }
    return settings.CACHES["default"]["LOCATION"]


@pytest.fixture
def desk(broker_calls, comms_desk):  # noqa: F811
    """The comms desk, its customers a public audience."""
    ensure_groups()
    customers = comms_desk["customers"]
    customers.public = True
    customers.save()
    return comms_desk


def publish(
    desk,
    body: str,
    *,
    incident=None,
    corrects: Message | None = None,
    audience=None,
    translations: dict | None = None,
    subject: str = "",
    channel: str = "website",
    is_public: bool = True,
) -> Message:
    """Draft, write every language, approve and publish a website statement; or, with
    ``corrects``, its correction."""
    author, approver = desk["eszter"], desk["lawyer"]
    if corrects is not None:
        draft = comms.message_correct(original=corrects, author=author, body=body, subject=subject)
    else:
        draft = comms.message_draft(
            incident=incident or desk["incident"],
            author=author,
            audience=audience or desk["customers"],
            channel=channel,
            subject=subject,
            body=body,
            is_public=is_public,
        )
    variants = {
        code: {"subject": (translations or {}).get(code, {}).get("subject", subject),
               "body": (translations or {}).get(code, {}).get("body", f"[{code}] {body}")}
        for code in draft.translations
    }  # fmt: skip
    if variants:
        draft = comms.message_edit(
            message=draft, editor=author, subject=subject, body=body, translations=variants
        )
    comms.message_submit(message=draft, actor=author)
    comms.message_approve(message=draft, approver=approver)
    if draft.channel == "email":
        comms.message_send(message=draft, actor=author)
        draft.refresh_from_db()
        return draft
    return comms.message_publish(message=draft, actor=author, where="https://status.example.test")
