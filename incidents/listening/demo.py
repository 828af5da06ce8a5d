"""The demo desk's inbox: an open social-media storm with comments in four languages, some
needing a reply (one overdue soon), one answered and published, one thanked, one
dismissed and one not triaged yet, so a new user sees the inbox working; idempotent."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from incidents import comms
from incidents import services as incident_services
from incidents.listening import inbox, services
from incidents.listening.models import Mention, Source
from incidents.models import Incident
from playbooks.models import MessageTemplate, Playbook

INBOX_TITLE = "Angry posts about double-charged cards at checkout"
SOURCE_SLUG = "social-demo"

# (id, minutes ago, channel, language, author, text, what the team did)
COMMENTS = [
    ("demo-1", 12, "twitter", "en", "@sam_buys",
     "Charged TWICE for one order and nobody answers the phone. Ridiculous.", "assigned"),
    ("demo-2", 48, "facebook", "hu", "Kovács Anna",
     "Kétszer vonták le a pénzt a kártyámról! Mikor kapom vissza?", "needs_reply"),
    ("demo-3", 70, "review", "he", "Yael R.",
     "חייבו אותי פעמיים על אותה הזמנה. מאוכזבת מאוד.", "replied"),
    ("demo-4", 30, "instagram", "el", "@eleni.shops",
     "Μου επέστρεψαν τα χρήματα αμέσως, ευχαριστώ για τη γρήγορη βοήθεια!", "thanked"),
    ("demo-5", 25, "forum", "en", "checkout_watcher",
     "Is anyone else seeing two charges? Mine shows both as pending.", "new"),
    ("demo-6", 40, "news", "en", "Local Gazette",
     "Acme Hardware (no relation) opens a new branch downtown.", "dismissed"),
]  # fmt: skip


@transaction.atomic
def demo_inbox() -> Incident | None:
    if Mention.objects.filter(source__slug=SOURCE_SLUG).exists():
        return None
    users = get_user_model().objects
    manager = users.filter(username="noa").first()
    writer = users.filter(username="eszter").first()
    playbook = Playbook.objects.filter(key="social-media-storm", status="published").first()
    if None in (manager, writer, playbook):
        return None
    now = timezone.now()
    incident = incident_services.incident_open(
        title=INBOX_TITLE,
        summary=_("Some card payments were taken twice at checkout; refunds are under way."),
        severity=2,
        playbook=playbook,
        actor=manager,
        now=now - dt.timedelta(minutes=75),
    )
    incident_services.incident_acknowledge(incident=incident, actor=manager, via="demo")
    source = Source.objects.filter(slug=SOURCE_SLUG).first() or services.source_create(
        name=_("Social listening (demo)"), slug=SOURCE_SLUG, kind=Source.Kind.WEBHOOK
    )
    template = MessageTemplate.objects.filter(
        playbook=playbook, channel="reply", language="en"
    ).first()
    for external_id, ago, channel, language, author, text, done in COMMENTS:
        at = now - dt.timedelta(minutes=ago)
        mention, _created, _fired = services.mention_record(
            source=source, external_id=external_id, channel=channel, language=language,
            author=author, text=text, now=at,
        )  # fmt: skip
        Mention.objects.filter(pk=mention.pk).update(incident=incident)
        mention.refresh_from_db()
        if done in ("assigned", "needs_reply", "replied"):
            mention = inbox.mention_needs_reply(mention=mention, actor=manager)
        if done == "assigned":
            inbox.mention_assign(mention=mention, actor=manager, assignee=writer)
        elif done == "replied":
            reply = inbox.reply_draft(mention=mention, author=writer, template=template)
            reply = comms.message_edit(
                message=reply,
                editor=writer,
                subject="",
                body="יעל, אנחנו מצטערים על החיוב הכפול. ההחזר יוצא היום; "
                "כתבי לנו בפרטי אם לא יופיע תוך שלושה ימים.",
            )
            comms.message_submit(message=reply, actor=writer)
            comms.message_approve(message=reply, approver=manager)
            inbox.reply_publish(
                mention=mention, actor=writer, url="https://reviews.example/acme/yael-r#reply"
            )
        elif done == "thanked":
            inbox.mention_no_reply(
                mention=mention, actor=writer, reason=Mention.NoReplyReason.THANKED
            )
        elif done == "dismissed":
            inbox.mention_dismiss(
                mention=mention, actor=writer, reason=_("About another company of the same name.")
            )
    return incident
