"""Celery tasks: each takes ids, calls one service, and is safe to run twice.

Nothing in the app imports this module: work is queued by task name through
incidents/dispatch.py, and Celery finds these by autodiscovery.
"""

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

from incidents import comms, escalation, notify, postmortem, watchdog

# The worker's own dead man's switch (incidents/watchdog.py): beat is what it watches,
# so it cannot be a beat task.
_watchdog: watchdog.Watchdog | None = None


@worker_ready.connect
def start_watchdog(**kwargs) -> None:
    global _watchdog
    if _watchdog is None:
        _watchdog = watchdog.Watchdog(interval=settings.CRISISDESK_WATCHDOG_SECONDS)
        _watchdog.start()


@worker_shutdown.connect
def stop_watchdog(**kwargs) -> None:
    if _watchdog is not None:
        _watchdog.stop()


@shared_task
def fire_timer(timer_id: int | list[int]) -> str:
    """One timer, or the timers falling due together (incidents/timers.py, send_timers)."""
    if isinstance(timer_id, int):
        return escalation.timer_fire_due(timer_id=timer_id)
    return escalation.timers_fire_due(timer_ids=timer_id)


@shared_task
def deliver_notification(notification_id: int) -> str:
    return notify.notification_deliver(notification_id=notification_id)


@shared_task
def deliver_chunk(notification_ids: list[int]) -> str:
    return notify.chunk_deliver(ids=notification_ids)


@shared_task
def message_fanout(message_id: int) -> str:
    return comms.message_fanout(message_id=message_id)


@shared_task
def sweep() -> str:
    return escalation.sweep()


@shared_task
def send_action_item_reminders() -> str:
    return f"action-item reminders sent: {postmortem.action_item_reminders_send()}"
