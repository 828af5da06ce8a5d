from celery import shared_task

from playbooks import services


@shared_task
def send_review_reminders() -> str:
    return f"review reminders sent to {services.review_reminders_send()} people"
