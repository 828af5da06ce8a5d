from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from playbooks.models import Playbook
from playbooks.playbook_io import playbooks_export_yaml


class Command(BaseCommand):
    help = "Export playbooks as YAML (default: the published version of every playbook)."

    def add_arguments(self, parser):
        parser.add_argument("keys", nargs="*", help="playbook keys (default: all)")
        parser.add_argument(
            "--all-versions", action="store_true", help="every version, not only published"
        )
        parser.add_argument("-o", "--output", help="file to write (default: standard output)")

    def handle(self, *args, **o):
        qs = Playbook.objects.order_by("key", "version")
        if not o["all_versions"]:
            qs = qs.filter(status=Playbook.Status.PUBLISHED)
        if o["keys"]:
            missing = set(o["keys"]) - set(
                qs.filter(key__in=o["keys"]).values_list("key", flat=True)
            )
            if missing:
                kind = "playbook" if o["all_versions"] else "published playbook"
                raise CommandError(f"No {kind} with key(s): {', '.join(sorted(missing))}.")
            qs = qs.filter(key__in=o["keys"])
        text = playbooks_export_yaml(playbooks=qs)
        if o["output"]:
            Path(o["output"]).write_text(text, encoding="utf-8")
            self.stderr.write(f"Wrote {qs.count()} playbook(s) to {o['output']}")
        else:
            self.stdout.write(text, ending="")
