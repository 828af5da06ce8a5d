"""On PostgreSQL, the database itself refuses to change or delete a timeline entry.

The model layer already refuses (TimelineEntry.save/delete and its queryset);
the trigger also stops raw SQL, a shell session or a future code path.
"""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION crisisdesk_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'append-only: rows of % are never updated or deleted', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION, params=None)
    schema_editor.execute(
        "CREATE TRIGGER incidents_timelineentry_append_only "
        "BEFORE UPDATE OR DELETE ON incidents_timelineentry "
        "FOR EACH ROW EXECUTE FUNCTION crisisdesk_append_only();"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "DROP TRIGGER IF EXISTS incidents_timelineentry_append_only ON incidents_timelineentry;"
    )


class Migration(migrations.Migration):
    dependencies = [("incidents", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
