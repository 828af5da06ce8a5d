from django.core.management.base import BaseCommand

from incidents.demo import demo_drill
from incidents.permissions import demo_groups
from playbooks.seed import demo_seed


class Command(BaseCommand):
    # It lives in incidents/ because the demo desk spans both apps (a finished
    # drill, the team's groups); playbooks/ never imports incidents/.
    help = "Load the starter library and demo data, with a finished drill; idempotent."

    def handle(self, *args, **options):
        login = demo_seed()
        demo_groups()
        demo_drill()
        self.stdout.write(f"Demo login: {login.username} / {login.password}")
