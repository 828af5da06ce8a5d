"""On the real stack: a burst of signed mentions through HTTP opens one incident.

A live server takes the posts from several clients at once (PostgreSQL and Redis in
CI's second run), a real Celery worker runs beside it on the same database and
broker; the spike rule's threshold is crossed in the middle of the burst.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from incidents.listening import services
from incidents.listening.models import Detection, ListeningRule, Mention
from incidents.listening.signing import sign
from incidents.models import Incident, TimelineEntry
from tests.factories import PlaybookFactory, RiskFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

BURST = 40
CLIENTS = 8


def test_a_burst_through_the_webhook_opens_one_incident(live_server, worker_factory):
    from django.utils import timezone

    playbook = PlaybookFactory(
        key="storm", title="Storm", status="published", published_at=timezone.now()
    )
    risk = RiskFactory(title="Checkout storm", category="social_media_storm", playbook=playbook)
    ListeningRule.objects.create(
        risk=risk, name="Checkout spike", keywords=["checkout"], window_minutes=10,
        threshold_count=10,
    )  # fmt: skip
    source = services.source_create(name="Social", slug="social", kind="webhook")
    worker_factory()
    url = f"{live_server.url}/api/v1/intake/social/"
    lock = threading.Lock()

    def post(i: int) -> int:
        body = json.dumps(
            {"id": f"burst-{i}", "channel": "twitter", "text": f"Checkout broken #{i}"}
        ).encode()
        with lock:  # one signature per second and body: unique bodies, so no replay
            ts = str(int(time.time()))
        request = urllib.request.Request(
            url, data=body, method="POST",
            headers={
                "Content-Type": "application/json",
                "X-CrisisDesk-Timestamp": ts,
                "X-CrisisDesk-Signature": sign(secret=source.secret, timestamp=ts, body=body),
            },
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(post, range(BURST)))
    assert statuses == [202] * BURST
    assert Incident.objects.count() == 1
    incident = Incident.objects.get()
    assert incident.playbook == playbook
    assert Detection.objects.filter(opened=True).count() == 1
    assert Mention.objects.count() == BURST
    assert Mention.objects.filter(incident=incident).count() == BURST
    cited = TimelineEntry.objects.get(incident=incident, data__has_key="listening_rule_id")
    assert len(cited.data["mention_ids"]) >= 10
