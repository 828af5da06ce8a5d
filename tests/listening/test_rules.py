"""Rules that raise the alarm: a spike opens one incident, later ones join it."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from incidents import services as incident_services
from incidents.listening import services
from incidents.listening.models import Detection, ListeningRule, Mention, RuleHit
from incidents.models import Incident, TimelineEntry

START = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)


def record(source, i, text="The checkout broken again!", channel="twitter", **extra):
    mention, created, fired = services.mention_record(
        source=source, external_id=f"m-{i}", channel=channel, author=f"@u{i}", text=text, **extra
    )
    return mention, fired


@pytest.fixture
def desk(broker_calls, webhook, spike_rule):
    return webhook, spike_rule


def test_it_opens_one_incident_when_the_window_crosses_the_threshold(desk, risk):
    source, rule = desk
    with time_machine.travel(START, tick=False) as clock:
        for i in range(4):
            _mention, fired = record(source, i)
            assert fired == []
            clock.shift(dt.timedelta(minutes=2))
        assert not Incident.objects.exists()
        crossing, fired = record(source, 4, text="PÉNZTÁR nem működik")
    assert len(fired) == 1 and fired[0].opened
    incident = Incident.objects.get()
    assert incident.playbook == risk.playbook
    assert incident.category == "social_media_storm"
    assert incident.detected_at == START
    assert set(Mention.objects.filter(incident=incident).values_list("external_id", flat=True)) == {
        f"m-{i}" for i in range(5)
    }
    entry = TimelineEntry.objects.get(incident=incident, data__listening_rule_id=rule.pk)
    assert "Checkout complaints" in entry.text and "5 matching mentions" in entry.text
    assert entry.data["mention_ids"] == list(
        Mention.objects.order_by("received_at", "pk").values_list("pk", flat=True)
    )
    assert "@u0" in entry.text and "PÉNZTÁR" in entry.text


def test_mentions_spread_wider_than_the_window_do_not_fire(desk):
    source, _rule = desk
    with time_machine.travel(START, tick=False) as clock:
        for i in range(8):
            record(source, i)
            clock.shift(dt.timedelta(minutes=3))
    # Never more than 4 within 10 minutes.
    assert not Incident.objects.exists()
    assert RuleHit.objects.count() == 8


def test_it_matches_keywords_in_every_language_and_filters_channels(desk):
    source, rule = desk
    rule.channels = ["twitter", "facebook"]
    rule.save()
    texts = ["ΚΛΟΠΉ δεδομένων", "זו הונאה", "Pénztár hiba", "checkout BROKEN", "unrelated"]
    for i, text in enumerate(texts):
        record(source, i, text=text)
    record(source, 9, text="checkout broken", channel="news")
    assert RuleHit.objects.count() == 4
    assert not Incident.objects.exists()


def test_later_mentions_join_the_open_incident_and_a_new_window_adds_to_it(desk):
    source, rule = desk
    with time_machine.travel(START, tick=False) as clock:
        for i in range(5):
            record(source, i)
        incident = Incident.objects.get()
        clock.shift(dt.timedelta(minutes=1))
        late, fired = record(source, 5)
        assert fired == [] and late.incident == incident
        clock.shift(dt.timedelta(minutes=15))
        for i in range(10, 15):
            record(source, i)
    assert Incident.objects.count() == 1
    detections = list(Detection.objects.order_by("at"))
    assert [d.opened for d in detections] == [True, False]
    assert {d.incident for d in detections} == {incident}
    assert (
        TimelineEntry.objects.filter(incident=incident, data__has_key="listening_rule_id").count()
        == 2
    )
    assert Mention.objects.filter(incident=incident).count() == 11


def test_a_closed_incident_is_not_reused(desk):
    source, _rule = desk
    with time_machine.travel(START, tick=False) as clock:
        for i in range(5):
            record(source, i)
        first = Incident.objects.get()
        incident_services.incident_resolve(incident=first, actor=None)
        incident_services.incident_close(incident=first, actor=None)
        clock.shift(dt.timedelta(minutes=11))
        for i in range(10, 15):
            record(source, i)
    assert Incident.objects.count() == 2


def test_two_rules_of_one_risk_open_one_incident(desk, risk):
    source, _rule = desk
    ListeningRule.objects.create(
        risk=risk, name="Anything negative", window_minutes=10, negative_percent=50, min_mentions=3
    )
    for i in range(5):
        record(source, i, text="checkout broken, terrible scam")
    assert Incident.objects.count() == 1
    assert Detection.objects.count() == 2


def test_a_negative_share_above_the_limit_fires(broker_calls, webhook, risk):
    ListeningRule.objects.create(
        risk=risk, name="Mood", keywords=["acme"], negative_percent=60, min_mentions=4
    )
    texts = ["acme is great", "acme terrible", "acme awful", "acme is a scam"]
    for i, text in enumerate(texts[:3]):
        record(webhook, i, text=text)
    assert not Incident.objects.exists()  # 3 mentions: below min_mentions
    record(webhook, 3, text=texts[3])  # 3 of 4 negative: 75% > 60%
    assert Incident.objects.count() == 1


def test_a_firing_alert_with_matching_labels_fires_at_once(broker_calls, risk):
    source = services.source_create(name="Prometheus", slug="prom", kind="alertmanager")
    ListeningRule.objects.create(
        risk=risk, name="Checkout down", alert_labels={"alertname": "CheckoutDown"}
    )
    common = {"kind": "alert", "channel": "alert", "text": "CheckoutDown"}
    services.mention_record(
        source=source, external_id="a", alert_status="resolved",
        labels={"alertname": "CheckoutDown"}, **common,
    )  # fmt: skip
    services.mention_record(
        source=source, external_id="b", alert_status="firing",
        labels={"alertname": "DiskFull"}, **common,
    )  # fmt: skip
    assert not Incident.objects.exists()
    services.mention_record(
        source=source, external_id="c", alert_status="firing",
        labels={"alertname": "CheckoutDown", "severity": "page"}, **common,
    )  # fmt: skip
    assert Incident.objects.count() == 1


def test_evaluation_counts_with_one_query_per_rule_not_a_rescan(
    desk, django_assert_max_num_queries
):
    source, rule = desk
    for i in range(3):
        record(source, i)
    rules = [rule]
    # Existence check, insert (savepoints), one hit insert, one window count.
    with django_assert_max_num_queries(9):
        services.mention_record(
            source=source, external_id="x", channel="twitter", text="checkout broken", rules=rules
        )


def test_each_process_keeps_the_rules_a_few_seconds_and_reads_them_again_after_a_change(
    desk, risk, monkeypatch, django_assert_num_queries
):
    from incidents.listening import rules as listening_rules

    source, rule = desk
    clock = [1000.0]
    monkeypatch.setattr(listening_rules.time, "monotonic", lambda: clock[0])
    assert [r.pk for r in listening_rules.enabled_rules()] == [rule.pk]
    with django_assert_num_queries(0):  # kept: no query
        assert [r.pk for r in listening_rules.enabled_rules()] == [rule.pk]
    # A rule saved in this process counts from the next mention on.
    quiet = ListeningRule.objects.create(
        risk=risk, name="Refunds", keywords=["refund"], window_minutes=10, threshold_count=50
    )
    assert {r.pk for r in listening_rules.enabled_rules()} == {rule.pk, quiet.pk}
    mention, _fired = record(source, 1, text="Where is my refund?")
    assert RuleHit.objects.filter(mention=mention, rule=quiet).exists()
    # Another process's change (no signal here) is seen once the kept rules are older
    # than RULES_TTL_SECONDS.
    ListeningRule.objects.filter(pk=quiet.pk).update(enabled=False)
    assert {r.pk for r in listening_rules.enabled_rules()} == {rule.pk, quiet.pk}
    clock[0] += listening_rules.RULES_TTL_SECONDS + 0.1
    assert [r.pk for r in listening_rules.enabled_rules()] == [rule.pk]
    mention, _fired = record(source, 2, text="Where is my refund?")
    assert not RuleHit.objects.filter(mention=mention).exists()
    # Deleted here: gone at once.
    rule.delete()
    assert listening_rules.enabled_rules() == []


@pytest.fixture
def race_desk(broker_calls, transactional_db, webhook, spike_rule):
    return webhook, spike_rule


def test_two_bursts_at_once_open_one_incident(race_desk):
    """On PostgreSQL the risk's row lock orders the two firings; on SQLite writers queue."""
    source, _rule = race_desk
    for i in range(3):
        record(source, i)
    barrier = threading.Barrier(2)
    errors = []

    def burst(prefix):
        try:
            barrier.wait(timeout=10)
            for i in range(4):
                services.mention_record(
                    source=source, external_id=f"{prefix}-{i}", channel="twitter",
                    text="checkout broken",
                )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=burst, args=(p,)) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert Incident.objects.count() == 1
    assert Detection.objects.filter(opened=True).count() == 1
    assert Mention.objects.filter(incident__isnull=True).count() == 0
    assert timezone.now()
