"""Celery tasks: each takes ids, calls one service, and is safe to run twice.

Nothing in the app imports this module: work is queued by task name through
incidents/dispatch.py, and Celery finds these by autodiscovery.
"""

from celery import shared_task

from incidents import escalation, notify, postmortem


@shared_task
def fire_timer(timer_id: int) -> str:
    return escalation.timer_fire(timer_id=timer_id)


@shared_task
def deliver_notification(notification_id: int) -> str:
    return notify.notification_deliver(notification_id=notification_id)


@shared_task
def sweep() -> str:
    return escalation.sweep()


@shared_task
def send_action_item_reminders() -> str:
    return f"action-item reminders sent: {postmortem.action_item_reminders_send()}"
