from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from incidents import services
from playbooks.models import Playbook


class Command(BaseCommand):
    help = "Open an incident and start its playbook (escalation timers, tasks, roles)."

    def add_arguments(self, parser):
        parser.add_argument("title")
        parser.add_argument("--playbook", help="playbook key; its published version runs")
        parser.add_argument("--severity", type=int, default=2, choices=(1, 2, 3, 4))
        parser.add_argument("--category", help="defaults to the playbook's scenario")
        parser.add_argument("--summary", default="")
        parser.add_argument("--confidential", action="store_true")
        parser.add_argument("--drill", action="store_true")
        parser.add_argument("--by", help="username of the person opening it")

    def handle(self, *args, **o):
        playbook = None
        if o["playbook"]:
            playbook = Playbook.objects.filter(key=o["playbook"], status="published").first()
            if playbook is None:
                keys = ", ".join(
                    Playbook.objects.filter(status="published").values_list("key", flat=True)
                )
                raise CommandError(
                    f"No published playbook with key {o['playbook']!r}. "
                    f"Published: {keys or 'none'}."
                )
        actor = None
        if o["by"]:
            actor = get_user_model().objects.filter(username=o["by"]).first()
            if actor is None:
                raise CommandError(f"No user {o['by']!r}.")
        try:
            incident = services.incident_open(
                title=o["title"],
                severity=o["severity"],
                playbook=playbook,
                category=o["category"],
                summary=o["summary"],
                confidential=o["confidential"],
                drill=o["drill"],
                actor=actor,
            )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.message_dict.items())
            ) from exc
        self.stdout.write(f"Opened {incident.reference}: {incident.title}")
        for timer in incident.timers.order_by("due_at"):
            self.stdout.write(
                f"  {timer.get_kind_display()} at {timer.due_at:%Y-%m-%d %H:%M:%S} UTC"
            )
