from django.core.management.base import BaseCommand

from playbooks.seed import demo_seed


class Command(BaseCommand):
    help = "Load the starter library and demo data (team, rotations, risks, contacts); idempotent."

    def handle(self, *args, **options):
        login = demo_seed()
        self.stdout.write(f"Demo login: {login.username} / {login.password}")
