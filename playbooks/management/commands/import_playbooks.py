from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from playbooks.playbook_io import PlaybookImportError, playbooks_import_yaml


class Command(BaseCommand):
    help = "Import playbooks from YAML files. A bad file is refused whole, with every error's line."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+")

    def handle(self, *args, **o):
        texts = []
        for name in o["files"]:
            try:
                texts.append((name, Path(name).read_text(encoding="utf-8-sig")))
            except FileNotFoundError:
                raise CommandError(f"{name}: no such file.") from None
            except UnicodeDecodeError:
                raise CommandError(f"{name}: not UTF-8 text.") from None
        with transaction.atomic():  # one bad file: none of them is imported
            for name, text in texts:
                try:
                    result = playbooks_import_yaml(text=text)
                except PlaybookImportError as exc:
                    raise CommandError(
                        f"{name}: nothing imported, {len(exc.errors)} error(s):\n"
                        + "\n".join(f"  {name}: {e}" for e in exc.errors)
                    ) from None
                for p in result.created:
                    self.stdout.write(f"{name}: created {p.key} v{p.version} ({p.status})")
                for p in result.unchanged:
                    self.stdout.write(f"{name}: unchanged {p.key} v{p.version}")
