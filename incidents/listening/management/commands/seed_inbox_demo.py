from django.core.management.base import BaseCommand

from incidents.listening.demo import demo_inbox


class Command(BaseCommand):
    help = "Add the demo inbox (an open storm's comments, triaged and answered); idempotent."

    def handle(self, *args, **options):
        demo_inbox()
