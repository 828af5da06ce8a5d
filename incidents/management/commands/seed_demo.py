from django.core.management import call_command
from django.core.management.base import BaseCommand

from incidents.demo import demo_drill, demo_exercise, demo_public_incident
from incidents.permissions import demo_groups
from playbooks.seed import demo_seed


class Command(BaseCommand):
    # It lives in incidents/ because the demo desk spans both apps (a finished
    # drill, the team's groups); playbooks/ never imports incidents/.
    help = (
        "Load the starter library and demo data, with a finished drill, a public "
        "incident, a planned exercise and a triaged inbox; idempotent."
    )

    def handle(self, *args, **options):
        login = demo_seed()
        demo_groups()
        demo_drill()
        demo_public_incident()
        demo_exercise()
        # Listening's inbox, by the command's name: incidents never imports listening.
        call_command("seed_inbox_demo")
        self.stdout.write(f"Demo login: {login.username} / {login.password}")
