from django.core.management.base import BaseCommand

from playbooks.seed import demo_seed


class Command(BaseCommand):
    help = "Load the starter library and demo data, with a finished drill; idempotent."

    def handle(self, *args, **options):
        from incidents.demo import demo_drill
        from incidents.permissions import demo_groups

        login = demo_seed()
        demo_groups()
        demo_drill()
        self.stdout.write(f"Demo login: {login.username} / {login.password}")
