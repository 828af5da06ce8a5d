"""Paging no longer grants a lasting object permission on a confidential incident:
the selector reads the pages themselves (visible while the incident is not closed).
Withdraw the grants paging left behind: a view permission on an incident held by
someone who neither holds a role on it nor opened it can only have come from a page.
Nothing to undo on the way back: the permissions are not restored."""

from django.db import migrations


def withdraw(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    UserObjectPermission = apps.get_model("guardian", "UserObjectPermission")
    Incident = apps.get_model("incidents", "Incident")
    RoleAssignment = apps.get_model("incidents", "RoleAssignment")
    content_type = ContentType.objects.filter(app_label="incidents", model="incident").first()
    if content_type is None:
        return
    grants = UserObjectPermission.objects.filter(
        content_type=content_type, permission__codename="view_incident"
    )
    stale = []
    for grant in grants.iterator():
        incident_id = int(grant.object_pk)
        on_it = (
            RoleAssignment.objects.filter(
                incident_id=incident_id, user_id=grant.user_id, relieved_at__isnull=True
            ).exists()
            or Incident.objects.filter(pk=incident_id, opened_by_id=grant.user_id).exists()
        )
        if not on_it:
            stale.append(grant.pk)
    UserObjectPermission.objects.filter(pk__in=stale).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0007_notification_cancelled_acknowledged_only_by_acknowledging"),
        ("guardian", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(withdraw, migrations.RunPython.noop)]
