"""Incident.first_paged_at: the acknowledge target is measured from the first page.

Incidents recorded before it get it from their timeline, by the rule the
escalation handler follows from now on: the first page of the round that was
acknowledged (the first acknowledgement; acknowledged_at keeps it), or of the
latest round when nobody acknowledged. Nobody paged: left empty, and the
target is measured from opening as before.
"""

from django.db import migrations, models


def backfill(apps, schema_editor):
    Incident = apps.get_model("incidents", "Incident")
    TimelineEntry = apps.get_model("incidents", "TimelineEntry")
    ids = Incident.objects.filter(
        timeline__kind="escalation", first_paged_at__isnull=True
    ).values_list("pk", flat=True)
    for incident_id in set(ids):
        first_page = None
        entries = (
            TimelineEntry.objects.filter(
                incident_id=incident_id, kind__in=("escalation", "reopened", "acknowledged")
            )
            .order_by("at", "pk")
            .values_list("kind", "at")
        )
        for kind, at in entries:
            if kind == "acknowledged":
                break
            if kind == "reopened":
                first_page = None
            elif first_page is None:
                first_page = at
        if first_page is not None:
            Incident.objects.filter(pk=incident_id).update(first_paged_at=first_page)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0008_withdraw_paging_grants"),
    ]

    operations = [
        migrations.AddField(
            model_name="historicalincident",
            name="first_paged_at",
            field=models.DateTimeField(
                blank=True, editable=False, null=True, verbose_name="first page"
            ),
        ),
        migrations.AddField(
            model_name="incident",
            name="first_paged_at",
            field=models.DateTimeField(
                blank=True, editable=False, null=True, verbose_name="first page"
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
