"""Every change the status page shows writes a new cache version, whichever door made
it (the services, the admin), and a change it does not show writes none."""

from __future__ import annotations

import pytest

from incidents import services as incident_services
from incidents import statuscache
from incidents.models import Incident
from tests.statuspage.conftest import publish

pytestmark = pytest.mark.django_db


@pytest.fixture
def shown(client, desk, django_capture_on_commit_callbacks):
    """A published statement, the page cached: returns a reader of the page."""
    with django_capture_on_commit_callbacks(execute=True):
        publish(desk, "Tracking is down.")

    def read(path: str = "/status/") -> str:
        return client.get(path).content.decode()

    read()
    read(f"/status/{desk['incident'].reference}/")
    return read


def test_a_public_title_set_through_the_service_reaches_the_page_at_once(
    desk, shown, django_capture_on_commit_callbacks
):
    before = statuscache.status_version()
    with django_capture_on_commit_callbacks(execute=True):
        incident_services.incident_set_public_title(
            incident=desk["incident"], public_title="Tracking delayed", actor=None
        )
    assert statuscache.status_version() != before
    assert "Tracking delayed" in shown()
    assert "Tracking delayed" in shown(f"/status/{desk['incident'].reference}/")


def test_a_public_title_saved_in_the_admin_reaches_the_page_at_once(
    admin_client, desk, shown, django_capture_on_commit_callbacks
):
    incident = desk["incident"]
    url = f"/admin/incidents/incident/{incident.pk}/change/"
    page = admin_client.get(url).context
    form = page["adminform"].form
    data = {name: ("" if value is None else value) for name, value in form.initial.items()}
    data["public_title"] = "Saved in the admin"
    for inline in page["inline_admin_formsets"]:  # read-only inlines: none posted
        prefix = inline.formset.prefix
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Incident.objects.get(pk=incident.pk).public_title == "Saved in the admin"
    assert "Saved in the admin" in shown()


def test_a_change_of_category_renames_a_neutral_title_on_the_page(
    desk, shown, django_capture_on_commit_callbacks
):
    incident = Incident.objects.get(pk=desk["incident"].pk)
    incident.category = "data_breach"
    with django_capture_on_commit_callbacks(execute=True):
        incident.save()
    assert "Data security incident" in shown()


def test_a_change_the_page_does_not_show_keeps_the_version(
    desk, shown, django_capture_on_commit_callbacks
):
    before = statuscache.status_version()
    with django_capture_on_commit_callbacks(execute=True):
        incident_services.incident_change_severity(
            incident=desk["incident"], severity=1, actor=None
        )
        incident = Incident.objects.get(pk=desk["incident"].pk)
        incident.summary = "Internal notes only."
        incident.save()
    assert statuscache.status_version() == before


def test_a_rolled_back_title_change_keeps_the_cached_page(desk, shown):
    from django.db import transaction

    before = statuscache.status_version()
    with pytest.raises(RuntimeError), transaction.atomic():
        incident_services.incident_set_public_title(
            incident=desk["incident"], public_title="Never committed", actor=None
        )
        raise RuntimeError
    assert statuscache.status_version() == before
    assert "Never committed" not in shown()


def test_each_change_of_public_state_writes_a_new_version(
    desk, shown, django_capture_on_commit_callbacks
):
    incident = desk["incident"]
    steps = (
        (incident_services.incident_contain, "Contained, monitoring"),
        (incident_services.incident_resolve, "Resolved"),
        (incident_services.incident_reopen, "Investigating"),
    )
    for service, words in steps:
        before = statuscache.status_version()
        with django_capture_on_commit_callbacks(execute=True):
            service(incident=Incident.objects.get(pk=incident.pk), actor=None)
        assert statuscache.status_version() != before, service.__name__
        assert words in shown(), service.__name__
