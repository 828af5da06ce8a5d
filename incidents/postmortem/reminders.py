"""Overdue action items: their owners are e-mailed each morning through the outbox."""

from __future__ import annotations

from datetime import date

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from incidents import dispatch, notify
from incidents.models import (
    ActionItem,
    Notification,
)
from incidents.postmortem.render import postmortem_path
from playbooks.people import person_locale


def action_items_overdue(*, today: date) -> QuerySet[ActionItem]:
    return ActionItem.objects.filter(
        status__in=ActionItem.OPEN_STATUSES, due_on__lt=today, owner__isnull=False
    ).select_related("owner", "postmortem__incident")


def action_item_reminders_send(*, today: date | None = None) -> int:
    """E-mail each owner of an overdue action item, once a day, through the outbox."""
    today = today or timezone.localdate()
    created: list[int] = []
    for item in action_items_overdue(today=today):
        owner = item.owner
        if not owner.is_active or not owner.email:
            continue
        incident = item.postmortem.incident
        if not notify.drill_reachable(incident, [owner]):
            continue  # a drill's follow-up e-mails stay inside the drill (notify.drill_people_ids)
        key = f"action_overdue:{item.pk}:{today}"
        if Notification.objects.filter(dedupe_key=key).exists():
            continue
        language, zone = person_locale(owner)
        subject, text, html = notify.render_email(
            "action_overdue",
            {
                "item": item,
                "incident": incident,
                "today": today,
                "recipient": owner,
                "subject_prefix": notify.subject_prefix(incident),
                "report_url": notify.absolute(postmortem_path(incident)),
            },
            language=language,
            zone=zone,
        )
        try:
            with transaction.atomic():
                note = Notification.objects.create(
                    incident=incident,
                    recipient=owner,
                    to_email=owner.email,
                    reason="action_overdue",
                    dedupe_key=key,
                    message_id=Notification.new_message_id(),
                    subject=subject[:400],
                    body_text=text,
                    body_html=html,
                )
                ActionItem.objects.filter(pk=item.pk).update(last_reminded_on=today)
        except IntegrityError:
            continue  # another run reminded this owner today
        created.append(note.pk)
    dispatch.deliver_on_commit(created)
    return len(created)
