"""The war room's communications: every action through the pages, as a crisis team does it.

Drafting from this incident's templates only, editing every language side by
side, submitting, approving as a second person, returning with a comment,
sending through the outbox after commit, publishing, scheduling, correcting, and
actions overtaken by someone else.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import mail
from django.utils import timezone

from incidents import comms, notify, services
from incidents.models import Message, MessageRevision, Notification, TimelineEntry, Timer
from playbooks.models import MessageTemplate
from tests.factories import PlaybookFactory, StakeholderGroupFactory
from tests.incidents.conftest import FACTS, FACTS_BY_LANGUAGE, written_in_every_language
from tests.warroom.conftest import member

pytestmark = pytest.mark.django_db


@pytest.fixture
def writer(desk):
    return member("writer", "Communications", first_name="Wanda", last_name="Writer")


@pytest.fixture
def counsel(desk):
    return member("counsel", "Legal", first_name="Carl", last_name="Counsel")


def _url(incident, message=None, action=None) -> str:
    base = f"/incidents/{incident.reference}/messages/"
    if message is None:
        return base + "new/"
    base += f"{message.pk}/"
    return base + (f"do/{action}/" if action else "")


def _flash(response) -> str:
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


def _draft(desk, author, **kwargs) -> Message:
    kwargs.setdefault("template", desk["template"])
    kwargs.setdefault("facts", FACTS)
    kwargs.setdefault("facts_by_language", FACTS_BY_LANGUAGE if kwargs["facts"] == FACTS else {})
    return comms.message_draft(
        incident=desk["incident"],
        author=author,
        audience=desk["customers"],
        channel="email",
        **kwargs,
    )


def _in_review(desk, author) -> Message:
    message = _draft(desk, author)
    comms.message_edit(
        message=message, editor=author, subject=message.subject, body=message.body + " Sorry."
    )
    return comms.message_submit(message=message, actor=author)


def _approved(desk, author, approver, **kwargs) -> Message:
    if kwargs:
        message = comms.message_draft(
            incident=desk["incident"], author=author, audience=desk["customers"], **kwargs
        )
        message = written_in_every_language(message)
        comms.message_submit(message=message, actor=author)
    else:
        message = _in_review(desk, author)
    return comms.message_approve(message=message, approver=approver)


def _edit_data(message: Message, **changes) -> dict:
    data = {"subject": message.subject, "body": message.body}
    for code, variant in message.translations.items():
        data[f"subject_{code}"] = variant["subject"]
        data[f"body_{code}"] = variant["body"]
    data.update(changes)
    return data


# ------------------------------------------------------------------ compose and edit


def test_it_drafts_from_this_incidents_playbook_templates_only(client, desk, writer):
    incident = desk["incident"]
    other = PlaybookFactory(title="Another playbook")
    stranger = MessageTemplate.objects.create(
        playbook=other,
        name="Customer e-mail",
        audience=desk["customers"],
        channel="email",
        language="en",
        body="Elsewhere.",
    )
    client.force_login(writer)
    page = client.get(f"/incidents/{incident.reference}/").content.decode()
    panel = page.split('id="comms"')[1]
    own = MessageTemplate.objects.filter(playbook=incident.playbook)
    for template in own:
        assert f'name="template" value="{template.pk}"' in panel
    assert f'value="{stranger.pk}"' not in panel
    # One row per template name, its languages as the choices.
    assert panel.count('class="compose-name"><bdi>Notice</bdi>') == 1

    refused = client.post(_url(incident), {"template": stranger.pk})
    assert refused.status_code == 200
    assert "Choose one of this incident&#x27;s playbook templates." in refused.content.decode()
    assert not Message.objects.filter(incident=incident).exists()

    response = client.post(_url(incident), {"template": desk["template"].pk})
    message = Message.objects.get(incident=incident)
    assert response.status_code == 302 and response["Location"] == _url(incident, message)
    assert message.author == writer and message.template == desk["template"]
    assert (message.audience, message.channel, message.language) == (
        desk["customers"],
        "email",
        "en",
    )
    assert set(message.translations) == {"he", "el"}

    html = client.get(response["Location"]).content.decode()
    for code in ("en", "he", "el"):
        assert f'id="variant-{code}"' in html
    # Every language editable, the Hebrew right to left; missing facts flagged by field.
    assert 'name="body_he"' in html and 'name="body_el"' in html
    assert re.search(
        r'<textarea[^>]*name="body_he"[^>]*dir="rtl"|dir="rtl"[^>]*name="body_he"', html
    )
    assert 'id="id_body_missing"' in html and 'id="id_body_he_missing"' in html
    assert 'aria-describedby="id_body_he_missing"' in html
    assert "Fill in: what_happened, what_we_do" in html


def test_it_edits_every_language_and_refuses_bad_input_with_field_messages(client, desk, writer):
    incident = desk["incident"]
    message = _draft(desk, writer, facts={})
    client.force_login(writer)
    before = (message.subject, message.body, dict(message.translations))

    empty = client.post(_url(incident, message), _edit_data(message, body_he="  "))
    assert empty.status_code == 200
    html = empty.content.decode()
    assert "A message needs a body." in html.split('id="variant-he"')[1].split("</fieldset>")[0]
    long = client.post(_url(incident, message), _edit_data(message, subject="x" * 401))
    assert "at most 400 characters" in long.content.decode()
    message.refresh_from_db()
    assert (message.subject, message.body, message.translations) == before
    assert not MessageRevision.objects.filter(message=message).exists()

    hebrew = "לקוחות יקרים, כרטיסי האשראי של 1,200 לקוחות נחשפו. אנחנו חוסמים אותם."
    response = client.post(
        _url(incident, message),
        _edit_data(
            message,
            body=message.body.replace("[[missing: what_happened]]", "it broke"),
            body_he=hebrew,
        ),
    )
    assert response.status_code == 302
    message.refresh_from_db()
    assert message.translations["he"]["body"] == hebrew
    assert message.translations["he"]["filled"]  # the template as filled stays, for comparison
    assert "it broke" in message.body and message.status == "draft"
    assert MessageRevision.objects.filter(message=message, editor=writer).count() == 1
    # The markers left are still flagged, in the languages that have them.
    html = client.get(_url(incident, message)).content.decode()
    assert 'id="id_body_he_missing"' not in html and 'id="id_body_el_missing"' in html


def test_it_saves_and_submits_for_approval(client, desk, writer):
    incident = desk["incident"]
    message = _draft(desk, writer)
    client.force_login(writer)
    response = client.post(
        _url(incident, message),
        {**_edit_data(message, body=message.body + " We apologise."), "then": "submit"},
        follow=True,
    )
    message.refresh_from_db()
    assert message.status == "in_review" and message.submitted_at is not None
    assert "Submitted for approval." in _flash(response)
    # The writer may not approve: no approve button for them.
    panel = client.get(f"/incidents/{incident.reference}/").content.decode().split('id="comms"')[1]
    awaiting = panel.split('id="comms-awaiting"')[1].split("</ul>")[0]
    assert f'id="comms-message-{message.pk}"' in awaiting
    assert "/do/approve/" not in awaiting and "/do/return/" not in awaiting


def test_a_second_person_approves_from_the_incident_page(client, desk, writer, counsel):
    incident = desk["incident"]
    message = _in_review(desk, writer)
    client.force_login(counsel)
    panel = client.get(f"/incidents/{incident.reference}/").content.decode().split('id="comms"')[1]
    assert (
        _url(incident, message, "approve") in panel and _url(incident, message, "return") in panel
    )
    response = client.post(_url(incident, message, "approve"), {"back": "incident"})
    assert response.status_code == 302
    assert response["Location"] == f"/incidents/{incident.reference}/#comms"
    message.refresh_from_db()
    assert message.status == "approved" and message.approver == counsel


def test_nobody_approves_their_own_message_through_the_pages(client, desk, manager):
    incident = desk["incident"]
    message = _in_review(desk, manager)
    client.force_login(manager)
    panel = client.get(f"/incidents/{incident.reference}/").content.decode().split('id="comms"')[1]
    row = panel.split(f'id="comms-message-{message.pk}"')[1].split("</li>")[0]
    assert "/do/approve/" not in row  # may approve, but not their own
    response = client.post(_url(incident, message, "approve"), {"approve_own": "on"})
    assert response.status_code == 200
    assert "Nobody approves their own message" in response.content.decode()
    message.refresh_from_db()
    assert message.status == "in_review"


def test_a_boilerplate_or_incomplete_message_is_refused_with_the_reason(
    client, desk, writer, counsel
):
    incident = desk["incident"]
    boilerplate = _draft(desk, writer)
    comms.message_submit(message=boilerplate, actor=writer)
    client.force_login(counsel)
    refused = client.post(_url(incident, boilerplate, "approve"), {})
    assert refused.status_code == 200 and "reads as boilerplate" in refused.content.decode()
    assert 'name="accept_boilerplate"' in refused.content.decode()
    ok = client.post(_url(incident, boilerplate, "approve"), {"accept_boilerplate": "on"})
    assert ok.status_code == 302
    boilerplate.refresh_from_db()
    assert boilerplate.status == "approved" and boilerplate.boilerplate_approved

    incomplete = _draft(desk, writer, facts={})
    comms.message_submit(message=incomplete, actor=writer)
    refused = client.post(_url(incident, incomplete, "approve"), {})
    assert "Fill in the missing facts first: what_happened" in refused.content.decode()
    incomplete.refresh_from_db()
    assert incomplete.status == "in_review"


def test_it_returns_a_message_with_a_comment_the_author_sees(client, desk, writer, counsel):
    incident = desk["incident"]
    message = _in_review(desk, writer)
    client.force_login(counsel)
    empty = client.post(_url(incident, message, "return"), {"comment": "   "})
    assert empty.status_code == 200
    assert "Say what should change: a return needs a comment." in empty.content.decode()
    message.refresh_from_db()
    assert message.status == "in_review"

    response = client.post(
        _url(incident, message, "return"),
        {"comment": "Say how many customers, and when it started.", "back": "incident"},
    )
    assert response.status_code == 302
    message.refresh_from_db()
    assert message.status == "draft"
    entry = TimelineEntry.objects.filter(incident=incident, kind="message").last()
    assert entry.actor == counsel and entry.data["returned"] is True
    assert entry.data["comment"] == "Say how many customers, and when it started."
    assert "returned" in entry.text and "Say how many customers" in entry.text

    client.force_login(writer)
    for path in (f"/incidents/{incident.reference}/", _url(incident, message)):
        html = client.get(path).content.decode()
        assert "Returned by Carl Counsel" in html, path
        assert "Say how many customers, and when it started." in html, path
    # Submitted again and then changed: the old comment no longer speaks to it.
    comms.message_submit(message=message, actor=writer)
    comms.message_edit(message=message, editor=writer, subject="s", body="Newer words.")
    assert "Returned by" not in client.get(_url(incident, message)).content.decode()


def test_it_sends_an_approved_message_through_the_outbox_after_commit(
    client, desk, writer, counsel, broker_calls, django_capture_on_commit_callbacks
):
    incident = desk["incident"]
    message = _approved(desk, writer, counsel)
    client.force_login(writer)
    page = client.get(_url(incident, message)).content.decode()
    assert "To 4 contacts of Customers" in page and _url(incident, message, "send") in page
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(_url(incident, message, "send"), follow=True)
    assert callbacks, "delivery is queued on commit"
    assert "Sent: 4 e-mails are in the outbox" in _flash(response)
    message.refresh_from_db()
    assert message.status == "sent" and message.sent_by == writer
    # One chunk (a task sending its e-mails over one SMTP connection) for the four.
    queued = [pk for kind, ids, _eta in broker_calls if kind == "chunk" for pk in ids]
    outbox = Notification.objects.filter(comms_message=message)
    assert sorted(queued) == sorted(outbox.values_list("pk", flat=True)) and len(queued) == 4
    for pk in queued:
        notify.notification_deliver(notification_id=pk)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(
        ["anna@example.test", "yossi@example.test", "eleni.c@example.test", "peter@example.test"]
    )
    incident.refresh_from_db()
    assert incident.first_statement_at == message.sent_at
    # Sent once: the page offers no second send, a replayed POST says what happened.
    again = client.post(_url(incident, message, "send"), follow=True)
    assert "is now “Sent”" in _flash(again) and outbox.count() == 4


def test_it_records_where_a_message_was_published(client, desk, writer, counsel):
    incident = desk["incident"]
    message = _approved(desk, writer, counsel, channel="website", body="We are on it.")
    client.force_login(writer)
    assert (
        _url(incident, message, "send") not in client.get(_url(incident, message)).content.decode()
    )
    empty = client.post(_url(incident, message, "publish"), {"where": ""})
    assert "Say where it was published" in empty.content.decode()
    message.refresh_from_db()
    assert message.status == "approved"
    client.post(_url(incident, message, "publish"), {"where": "https://status.example.test/1"})
    message.refresh_from_db()
    assert message.status == "published" and message.published_where.endswith("/1")


def test_it_schedules_an_e_mail_for_a_time_in_the_future(client, desk, writer, counsel):
    incident = desk["incident"]
    message = _approved(desk, writer, counsel)
    client.force_login(writer)
    past = timezone.localtime() - dt.timedelta(minutes=5)
    refused = client.post(_url(incident, message, "schedule"), {"at": f"{past:%Y-%m-%dT%H:%M}"})
    assert "Choose a time in the future." in refused.content.decode()
    nonsense = client.post(_url(incident, message, "schedule"), {"at": "tomorrow-ish"})
    assert "Enter a date and time" in nonsense.content.decode()
    assert not Timer.objects.filter(message=message).exists()

    at = (timezone.localtime() + dt.timedelta(hours=2)).replace(second=0, microsecond=0)
    response = client.post(_url(incident, message, "schedule"), {"at": f"{at:%Y-%m-%dT%H:%M}"})
    assert response.status_code == 302
    timer = Timer.objects.get(message=message, state="pending")
    assert timer.kind == "message_send" and timer.due_at == at
    message.refresh_from_db()
    assert message.scheduled_for == at and message.status == "approved"


def test_it_corrects_a_sent_message_and_shows_the_correction_beside_it(
    client, desk, writer, counsel, broker_calls
):
    incident = desk["incident"]
    original = _approved(desk, writer, counsel)
    comms.message_send(message=original, actor=writer)
    client.force_login(writer)
    page = client.get(_url(incident, original)).content.decode()
    assert 'name="body"' in page and _url(incident, original, "correct") in page
    assert 'id="edit-form"' not in page  # what went out is never edited
    empty = client.post(_url(incident, original, "correct"), {"subject": "", "body": ""})
    assert "Write the correction." in empty.content.decode()
    response = client.post(
        _url(incident, original, "correct"),
        {"subject": "Correction", "body": "1,100 customers, not 1,200."},
    )
    correction = Message.objects.get(corrects=original)
    assert response["Location"] == _url(incident, correction)
    assert correction.status == "draft" and correction.audience == original.audience
    original.refresh_from_db()
    assert original.status == "sent" and original.body != correction.body

    panel = client.get(f"/incidents/{incident.reference}/").content.decode().split('id="comms"')[1]
    row = panel.split(f'id="comms-message-{original.pk}"')[1].split("</li>\n")[0]
    assert "Corrected by" in row and _url(incident, correction) in row
    assert "Corrects" in client.get(_url(incident, correction)).content.decode()


# ------------------------------------------------------------------ overtaken


def test_approving_what_someone_just_returned_says_who_did_what(client, desk, writer, counsel):
    incident = desk["incident"]
    message = _in_review(desk, writer)
    other = member("other-legal", "Legal", first_name="Olga", last_name="Other")
    comms.message_return(message=message, reviewer=other, comment="Wrong number.")
    client.force_login(counsel)
    response = client.post(_url(incident, message, "approve"), {"back": "incident"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/incidents/{incident.reference}/#comms"
    flash = _flash(response)
    assert f"message #{message.pk} is now “Draft”" in flash
    assert "Olga Other returned" in flash and "Wrong number." in flash
    message.refresh_from_db()
    assert message.status == "draft" and message.approver is None


def test_approving_what_someone_just_approved_or_sent_says_so(
    client, desk, writer, counsel, broker_calls
):
    incident = desk["incident"]
    message = _in_review(desk, writer)
    other = member("other-legal", "Legal", first_name="Olga", last_name="Other")
    comms.message_approve(message=message, approver=other)
    client.force_login(counsel)
    flash = _flash(client.post(_url(incident, message, "approve"), follow=True))
    assert "is now “Approved”" in flash and "Olga Other approved" in flash
    message.refresh_from_db()
    assert message.approver == other

    comms.message_send(message=message, actor=other)
    flash = _flash(client.post(_url(incident, message, "return"), {"comment": "x"}, follow=True))
    assert "is now “Sent”" in flash and "Olga Other sent" in flash


def test_editing_what_was_approved_meanwhile_keeps_the_words_typed(client, desk, writer, counsel):
    incident = desk["incident"]
    message = _in_review(desk, writer)
    client.force_login(writer)
    data = _edit_data(message, body="My new words, never saved.")
    comms.message_approve(message=message, approver=counsel)
    response = client.post(_url(incident, message), data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "is now “Approved”" in html and "Carl Counsel approved" in html
    assert 'id="unsaved"' in html and "My new words, never saved." in html
    message.refresh_from_db()
    assert message.body != "My new words, never saved." and message.status == "approved"


# ------------------------------------------------------------------ links


def test_whoever_may_read_messages_gets_the_communications_links(client, desk):
    incident = desk["incident"]
    executive = member("dana", "Executives")
    client.force_login(executive)
    html = client.get(f"/incidents/{incident.reference}/").content.decode()
    timeline = f"/incidents/{incident.reference}/communications/"
    assert f'href="{timeline}"' in html and 'id="comms"' in html
    # Reading, not drafting: no compose, no approve.
    assert _url(incident) not in html
    page = client.get(timeline)
    assert page.status_code == 200
    assert f'href="/incidents/{incident.reference}/"' in page.content.decode()


def test_the_panel_shows_each_audiences_cadence_and_the_statement_target(
    client, desk, writer, counsel, broker_calls
):
    incident = desk["incident"]
    client.force_login(writer)
    targets = client.get(f"/incidents/{incident.reference}/").content.decode()
    targets = targets.split('id="comms-targets"')[1].split("</ul>")[0]
    assert f"within {incident.first_statement_minutes} minutes of opening" in targets
    assert "Customers" in targets and "every 60 minutes" in targets and "none yet" in targets
    message = _approved(desk, writer, counsel)
    comms.message_send(message=message, actor=writer)
    targets = client.get(f"/incidents/{incident.reference}/").content.decode()
    targets = targets.split('id="comms-targets"')[1].split("</ul>")[0]
    assert "none yet" not in targets and _url(incident, message) in targets
    assert 'href="#countdowns"' in targets  # the countdowns stay under Deadlines


def test_a_message_of_another_incident_is_not_found_here(client, desk, writer):
    incident = desk["incident"]
    other_group = StakeholderGroupFactory(slug="press", name="Press")
    elsewhere = services.incident_open(title="Elsewhere", playbook=incident.playbook)
    message = comms.message_draft(
        incident=elsewhere, author=writer, audience=other_group, channel="website", body="x"
    )
    client.force_login(writer)
    assert client.get(_url(incident, message)).status_code == 404
    assert client.post(_url(incident, message, "submit")).status_code == 404
    assert client.get(_url(elsewhere, message)).status_code == 200


# ------------------------------------------------------------------ languages


def test_a_message_written_without_a_template_starts_every_language(client, desk, writer):
    incident = desk["incident"]
    client.force_login(writer)
    page = client.get(_url(incident)).content.decode()
    assert 'id="scratch-form"' in page
    empty = client.post(
        _url(incident),
        {"scratch-audience": desk["customers"].pk, "scratch-channel": "website",
         "scratch-language": "en", "scratch-subject": "", "scratch-body": " "},
    )  # fmt: skip
    assert empty.status_code == 200 and "Write the message." in empty.content.decode()
    assert not Message.objects.exists()
    made = client.post(
        _url(incident),
        {"scratch-audience": desk["customers"].pk, "scratch-channel": "website",
         "scratch-language": "en", "scratch-subject": "", "scratch-body": "We are on it."},
    )  # fmt: skip
    message = Message.objects.get()
    assert made["Location"] == _url(incident, message)
    assert message.template is None and set(message.translations) == {"el", "he", "hu"}
    html = client.get(_url(incident, message)).content.decode()
    assert 'id="untranslated"' in html and "Not translated into Hungarian" in html
    readers = html.split('id="readers"')[1].split("</section>")[0]
    assert 'data-language="hu" data-gets="hu"' in readers


def test_a_language_is_dropped_and_added_back_from_the_message_page(client, desk, writer):
    incident = desk["incident"]
    message = _draft(desk, writer)
    client.force_login(writer)
    html = client.get(_url(incident, message)).content.decode()
    assert 'form="drop-he"' in html and 'id="drop-he"' in html
    assert 'form="drop-en"' not in html  # the main text and default stay
    client.post(_url(incident, message, "drop-language"), {"language": "he"})
    message.refresh_from_db()
    assert message.dropped_languages == ["he"] and "he" not in message.translations
    readers = client.get(_url(incident, message)).content.decode().split('id="readers"')[1]
    assert 'data-language="he" data-gets="en"' in readers and "dropped on purpose" in readers
    bad = client.post(_url(incident, message, "add-language"), {"language": "xx"})
    assert bad.status_code == 200 and "Select a valid choice" in bad.content.decode()
    client.post(_url(incident, message, "add-language"), {"language": "he"})
    message.refresh_from_db()
    assert "he" in message.translations and message.dropped_languages == []
