"""A message in each stakeholder's language, never mixed.

The customers read English (the group's default), Hebrew, Greek and Hungarian;
the playbook's "Notice" exists in English, Hebrew and Greek only.
"""

from __future__ import annotations

import re
from email.header import decode_header, make_header

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from incidents import comms, notify, postmortem
from incidents.models import Notification, TimelineEntry
from tests.incidents.conftest import FACTS, FACTS_BY_LANGUAGE

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(broker_calls, comms_desk):
    return comms_desk


def draft(desk, **kwargs):
    return comms.message_draft(
        incident=desk["incident"],
        author=desk["eszter"],
        audience=desk["customers"],
        channel="email",
        template=desk["template"],
        facts=FACTS,
        **kwargs,
    )


def specific(message, editor):
    """The main text made specific, so the boilerplate rule stays out of these tests."""
    return comms.message_edit(
        message=message, editor=editor, subject=message.subject, body=message.body + " Sorry."
    )


def test_the_audience_needs_its_default_and_its_contacts_languages(desk):
    assert comms.audience_languages(desk["customers"]) == ["en", "el", "he", "hu"]


def test_facts_typed_in_english_are_never_pasted_into_another_language(desk):
    message = draft(desk)
    # A variant for each needed language that has the template: no Hungarian template.
    assert set(message.translations) == {"he", "el"}
    for code, variant in message.translations.items():
        assert "card data" not in variant["body"] and "blocking" not in variant["body"]
        assert "[[not translated: what_happened]]" in variant["body"]
    assert comms.untranslated_facts(message) == {
        "el": ["what_happened", "what_we_do"],
        "he": ["what_happened", "what_we_do"],
    }
    comms.message_submit(message=specific(message, desk["eszter"]), actor=desk["eszter"])
    with pytest.raises(ValidationError, match=r"Facts not translated: Greek .*; Hebrew"):
        comms.message_approve(message=message, approver=desk["lawyer"])
    message.refresh_from_db()
    assert message.status == "draft" or message.status == "in_review"


def test_facts_written_per_language_fill_each_variant_in_its_own_words(desk):
    message = draft(desk, facts_by_language=FACTS_BY_LANGUAGE)
    assert comms.untranslated_facts(message) == {}
    assert FACTS_BY_LANGUAGE["he"]["what_happened"] in message.translations["he"]["body"]
    assert FACTS_BY_LANGUAGE["el"]["what_we_do"] in message.translations["el"]["body"]
    message = specific(message, desk["eszter"])
    comms.message_submit(message=message, actor=desk["eszter"])
    assert comms.message_approve(message=message, approver=desk["lawyer"]).status == "approved"


def test_an_edit_of_any_variant_needs_approval_again(desk):
    message = specific(draft(desk, facts_by_language=FACTS_BY_LANGUAGE), desk["eszter"])
    comms.message_submit(message=message, actor=desk["eszter"])
    edited = comms.message_edit(
        message=message,
        editor=desk["eszter"],
        subject=message.subject,
        body=message.body,
        translations={"el": {"subject": "Ενημέρωση", "body": "Νέο κείμενο."}},
    )
    assert edited.status == "draft"
    assert edited.translations["el"]["body"] == "Νέο κείμενο."
    assert edited.translations["he"] == message.translations["he"]  # untouched
    revision = edited.revisions.last()
    assert revision.translations["el"]["body"] != "Νέο κείμενο."  # the words before, kept
    entry = desk["incident"].timeline.filter(kind="message").last()
    assert entry.data["languages"] == ["el"]


def test_bad_variant_edits_are_refused_with_field_messages_and_change_nothing(desk):
    message = draft(desk)
    before = dict(message.translations)
    with pytest.raises(ValidationError) as refused:
        comms.message_edit(
            message=message,
            editor=desk["eszter"],
            subject=message.subject,
            body=message.body,
            translations={
                "hu": {"body": "Nincs ilyen változat."},
                "he": {"body": " "},
                "el": {"subject": "x" * 401, "body": "ok"},
            },
        )
    assert set(refused.value.message_dict) == {
        "translations.hu",
        "translations.he.body",
        "translations.el.subject",
    }
    message.refresh_from_db()
    assert message.translations == before and not message.revisions.exists()


def test_a_language_dropped_on_purpose_gets_the_default_and_nothing_is_mixed(desk, mailoutbox):
    message = specific(
        draft(desk, facts_by_language={"el": FACTS_BY_LANGUAGE["el"]}), desk["eszter"]
    )
    with pytest.raises(ValidationError, match="cannot be dropped"):
        comms.message_language_drop(message=message, language="en", actor=desk["eszter"])
    comms.message_language_drop(message=message, language="he", actor=desk["eszter"])
    message.refresh_from_db()
    assert set(message.translations) == {"el"} and message.dropped_languages == ["he"]
    dropped = desk["incident"].timeline.filter(kind="message").last()
    assert "dropped Hebrew" in dropped.text and dropped.data["fallback"] == "en"

    comms.message_submit(message=message, actor=desk["eszter"])
    comms.message_approve(message=message, approver=desk["lawyer"])
    comms.message_send(message=message, actor=desk["eszter"])
    got = {
        n.to_email: n
        for n in Notification.objects.filter(comms_message=message).select_related("contact")
    }
    assert {email: n.language for email, n in got.items()} == {
        "anna@example.test": "en",
        "yossi@example.test": "en",  # Hebrew dropped: the group's default
        "eleni.c@example.test": "el",
        "peter@example.test": "en",  # no Hungarian template: the group's default
    }
    # Whole texts, never a mix: the Greek reader gets Greek facts, the others English ones.
    assert FACTS_BY_LANGUAGE["el"]["what_happened"] in got["eleni.c@example.test"].body_text
    assert "card data" not in got["eleni.c@example.test"].body_text
    assert got["peter@example.test"].body_text == message.body.replace("{recipient_name}", "Péter")
    sent = desk["incident"].timeline.filter(kind="message").last()
    assert sent.data["languages"] == {"en": 3, "el": 1}
    assert sent.data["fallbacks"] == {"he": "en", "hu": "en"}

    # The post-mortem says which language each contact got.
    report = postmortem.report_build(desk["incident"])
    row = report.messages[0].rows[0].message
    told = {t.language: t for t in row.told}
    assert told["en"].count == 3 and told["el"].contacts == ["Ελένη"]
    assert sorted(told["en"].contacts) == sorted(["Anna", "Péter", "יוסי"])
    assert told["en"].instead_of == ["Hebrew", "Hungarian"]


def test_a_dropped_language_comes_back_from_its_template(desk):
    message = draft(desk)
    comms.message_language_drop(message=message, language="he", actor=desk["eszter"])
    comms.message_language_add(message=message, language="he", actor=desk["eszter"])
    message.refresh_from_db()
    assert message.dropped_languages == []
    assert message.translations["he"]["body"].startswith("{recipient_name} שלום")
    with pytest.raises(ValidationError):
        comms.message_language_add(message=message, language="he", actor=desk["eszter"])
    with pytest.raises(ValidationError):
        comms.message_language_add(message=message, language="xx", actor=desk["eszter"])


def test_a_message_written_from_scratch_has_every_language_to_write(desk):
    message = comms.message_draft(
        incident=desk["incident"],
        author=desk["eszter"],
        audience=desk["customers"],
        channel="website",
        language="en",
        body="We are investigating a problem with card payments.",
    )
    assert comms.untranslated_facts(message) == {
        "el": ["message"],
        "he": ["message"],
        "hu": ["message"],
    }
    comms.message_submit(message=message, actor=desk["eszter"])
    with pytest.raises(ValidationError, match="Facts not translated"):
        comms.message_approve(message=message, approver=desk["lawyer"])
    assert not TimelineEntry.objects.filter(
        incident=desk["incident"], text__contains="approved"
    ).exists()


def test_a_correction_reaches_the_languages_the_original_did(desk):
    message = specific(draft(desk, facts_by_language=FACTS_BY_LANGUAGE), desk["eszter"])
    comms.message_language_drop(message=message, language="el", actor=desk["eszter"])
    comms.message_submit(message=message, actor=desk["eszter"])
    comms.message_approve(message=message, approver=desk["lawyer"])
    comms.message_send(message=message, actor=desk["eszter"])
    message.refresh_from_db()
    correction = comms.message_correct(
        original=message, author=desk["eszter"], body="A correction: 1,100 customers, not 1,200."
    )
    # Greek was dropped from the original, and it had no Hungarian (those readers got
    # English): only Hebrew is to be written, with the original's Hebrew subject.
    assert set(correction.translations) == {"he"}
    assert correction.dropped_languages == ["el"]
    assert correction.translations["he"]["subject"] == message.translations["he"]["subject"]
    assert "[[not translated: message]]" in correction.translations["he"]["body"]


LATIN_WORD = re.compile(r"[A-Za-z]{3,}")
HEBREW = re.compile(r"[\u0590-\u05FF]")
GREEK = re.compile(r"[\u0370-\u03FF\u1F00-\u1FFF]")


def languages_in(text: str) -> set[str]:
    """The scripts of a text's words, leaving out what every language carries: addresses,
    links, the incident's reference and the company's name."""
    words = [w for w in text.split() if "@" not in w and "/" not in w and not re.search(r"\d", w)]
    text = " ".join(words).replace("Example Ltd", "")
    found = set()
    if HEBREW.search(text):
        found.add("he")
    if GREEK.search(text):
        found.add("el")
    if LATIN_WORD.search(text):
        found.add("latin")
    return found


def test_no_contact_receives_text_from_two_languages_and_greek_headers_are_encoded(desk):
    message = specific(draft(desk, facts_by_language=FACTS_BY_LANGUAGE), desk["eszter"])
    comms.message_submit(message=message, actor=desk["eszter"])
    comms.message_approve(message=message, approver=desk["lawyer"])
    comms.message_send(message=message, actor=desk["eszter"])
    expected = {"en": {"latin"}, "he": {"he"}, "el": {"el"}}
    for n in Notification.objects.filter(comms_message=message):
        assert languages_in(n.subject + " " + n.body_text) == expected[n.language], (
            n.to_email,
            n.body_text,
        )
    greek = Notification.objects.get(comms_message=message, to_email="eleni.c@example.test")
    mail.outbox.clear()
    notify.notification_deliver(notification_id=greek.pk)
    raw = mail.outbox[0].message().as_bytes()
    header = re.search(rb"^Subject: (.+?)\n(?! )", raw, re.M | re.S).group(1)
    assert header.startswith(b"=?utf-8?"), header  # RFC 2047, not raw UTF-8
    assert str(make_header(decode_header(header.decode()))) == greek.subject
    assert "ενημέρωση" in greek.subject
    body = mail.outbox[0].message().get_payload(decode=True) or b""
    if not body:  # multipart: the plain part
        body = mail.outbox[0].message().get_payload()[0].get_payload(decode=True)
    assert FACTS_BY_LANGUAGE["el"]["what_happened"] in body.decode("utf-8")
