from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from incidents import services
from incidents.models import Incident


class Command(BaseCommand):
    help = "Acknowledge an incident (stops its escalation)."

    def add_arguments(self, parser):
        parser.add_argument("reference", help="e.g. INC-2026-0042")
        parser.add_argument("--by", required=True, help="username acknowledging")

    def handle(self, *args, **o):
        incident = Incident.objects.filter(reference=o["reference"]).first()
        if incident is None:
            raise CommandError(f"No incident {o['reference']!r}.")
        user = get_user_model().objects.filter(username=o["by"]).first()
        if user is None:
            raise CommandError(f"No user {o['by']!r}.")
        if services.incident_acknowledge(incident=incident, actor=user, via="command"):
            self.stdout.write(f"{incident.reference} acknowledged; escalation stopped.")
        else:
            self.stdout.write(
                f"{incident.reference} was not waiting for an acknowledgement "
                f"({incident.get_status_display()})."
            )
