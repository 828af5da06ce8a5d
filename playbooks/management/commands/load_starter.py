from django.core.management.base import BaseCommand

from playbooks.seed import starter_load


class Command(BaseCommand):
    help = "Load the starter roles, stakeholder groups and playbooks (safe to run again)."

    def handle(self, *args, **options):
        result = starter_load()
        for p in result.created:
            self.stdout.write(f"created {p.key} v{p.version} ({p.status})")
        for p in result.unchanged:
            self.stdout.write(f"unchanged {p.key} v{p.version}")
        self.stdout.write(
            f"{result.roles_created} role(s) and {result.groups_created} group(s) created."
        )
