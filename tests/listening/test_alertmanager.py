"""Prometheus Alertmanager's webhook: firing and resolved alerts, and label rules."""

from __future__ import annotations

import time

import pytest

from incidents.listening import services
from incidents.listening.models import ListeningRule, Mention
from incidents.models import Incident, TimelineEntry
from tests.listening.conftest import signed_post


def alertmanager(
    status: str, *, name="CheckoutDown", fingerprint="c0ffee", starts="2026-11-26T08:00:00Z"
):
    return {
        "version": "4",
        "groupKey": '{}:{alertname="%s"}' % name,
        "status": status,
        "receiver": "crisisdesk",
        "commonLabels": {"alertname": name},
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": name, "severity": "page", "instance": "shop-1"},
                "annotations": {"summary": "Checkout is down", "description": "5xx above 50%"},
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example.test/graph",
                "fingerprint": fingerprint,
            }
        ],
    }


@pytest.fixture
def prom(broker_calls, risk):
    ListeningRule.objects.create(
        risk=risk,
        name="Checkout down",
        alert_labels={"alertname": "CheckoutDown", "severity": "page"},
    )
    return services.source_create(name="Prometheus", slug="prom", kind="alertmanager")


def test_a_firing_alert_opens_an_incident_and_its_resolution_joins_it(client, prom):
    response = signed_post(client, prom, alertmanager("firing"))
    assert response.status_code == 202, response.content
    incident = Incident.objects.get()
    assert response.json()["fired"] == 1
    firing = Mention.objects.get()
    assert (firing.kind, firing.channel, firing.alert_status) == ("alert", "alert", "firing")
    assert firing.labels["severity"] == "page" and firing.author == "shop-1"
    assert firing.text == "CheckoutDown – Checkout is down – 5xx above 50%"
    assert firing.incident == incident

    # Alertmanager repeats a firing alert every group interval: no second row, no second incident.
    again = signed_post(client, prom, alertmanager("firing"), timestamp=int(time.time()) + 1)
    assert again.json()["duplicates"] == 1
    resolved = signed_post(client, prom, alertmanager("resolved"))
    assert resolved.json()["accepted"] == 1
    assert Incident.objects.count() == 1
    row = Mention.objects.get(alert_status="resolved")
    assert row.incident == incident
    assert TimelineEntry.objects.filter(incident=incident, data__alert_resolved=True).exists()


def test_an_alert_without_the_labels_opens_nothing(client, prom):
    signed_post(client, prom, alertmanager("firing", name="DiskFull", fingerprint="d1"))
    assert Mention.objects.count() == 1 and not Incident.objects.exists()


def test_a_body_that_is_not_alertmanager_is_refused(client, prom):
    response = signed_post(client, prom, {"id": "1", "text": "generic"})
    assert response.status_code == 400 and "alerts" in response.json()
    bad = alertmanager("firing")
    bad["alerts"][0]["status"] = "exploded"
    response = signed_post(client, prom, bad)
    assert response.status_code == 400 and "alerts[0]" in response.json()
    assert not Mention.objects.exists()
