"""Celery tasks: each takes ids, calls one service, and is safe to run twice."""

from celery import shared_task

from incidents import escalation, notify


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
    from incidents.postmortem import action_item_reminders_send

    return f"action-item reminders sent: {action_item_reminders_send()}"
