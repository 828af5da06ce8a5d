import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crisisdesk.settings")

app = Celery("crisisdesk")
# Every CELERY_* setting in crisisdesk/settings.py configures the app, including
# the beat schedule, which lives in code so every scheduler runs the same one.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
