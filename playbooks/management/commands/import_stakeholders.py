from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from playbooks.models import StakeholderGroup
from playbooks.stakeholder_import import CsvImportError, stakeholders_import_csv


class Command(BaseCommand):
    help = "Import stakeholder contacts from CSV; nothing is written unless every row is valid."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--group", help="group slug for rows without a group column")

    def handle(self, *args, **o):
        group = None
        if o["group"]:
            group = StakeholderGroup.objects.filter(slug=o["group"]).first()
            if group is None:
                slugs = ", ".join(StakeholderGroup.objects.values_list("slug", flat=True))
                raise CommandError(f"No stakeholder group {o['group']!r}. Groups: {slugs}.")
        try:
            text = Path(o["file"]).read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise CommandError(f"{o['file']}: no such file.") from None
        except UnicodeDecodeError:
            raise CommandError(f"{o['file']}: not UTF-8 text; save it as CSV UTF-8.") from None
        try:
            report = stakeholders_import_csv(text=text, default_group=group)
        except CsvImportError as exc:
            raise CommandError(
                f"nothing imported, {len(exc.errors)} error(s):\n"
                + "\n".join(f"  {e}" for e in exc.errors)
            ) from None
        self.stdout.write(
            f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
            f"{report.duplicates_in_file} duplicate(s) in the file."
        )
