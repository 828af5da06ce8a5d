from django.core.management.base import BaseCommand

from incidents.demo import demo_drill
from incidents.permissions import demo_groups
from playbooks.seed import demo_seed


class Command(BaseCommand):
    # Here, not in playbooks/: it seeds both apps, and playbooks imports nothing from incidents.
    help = "Load the starter library and demo data, with a finished drill; idempotent."

    def handle(self, *args, **options):
        login = demo_seed()
        demo_groups()
        demo_drill()
        self.stdout.write(f"Demo login: {login.username} / {login.password}")
