"""Atom feeds, conditional GETs and the status page's cache across processes."""

from __future__ import annotations

import datetime as dt
import socket

import feedparser
import pytest
import time_machine
from django.core.cache.backends.filebased import FileBasedCache
from django.utils import timezone

from incidents import services as incident_services
from incidents import statuscache
from incidents.models import Message
from tests.conftest import need
from tests.statuspage.conftest import publish

pytestmark = pytest.mark.django_db


def _published(desk, body, capture, **kwargs) -> Message:
    """Publish and run what waits for the commit (the cache's new version among it)."""
    with capture(execute=True):
        return publish(desk, body, **kwargs)


def _feed(client, path="/status/feed.atom", **headers):
    response = client.get(path, **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/atom+xml")
    parsed = feedparser.parse(response.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    return parsed


def test_it_writes_valid_atom_whose_entry_ids_stay_across_a_correction(
    client, desk, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    reference = desk["incident"].reference
    original = _published(desk, "Tracking is down since 06:00.", capture, subject="Tracking")
    feed = _feed(client)
    assert feed.feed.id.startswith("tag:")
    assert feed.feed.author == "Example Ltd"  # RFC 4287: an author for the entries
    assert feed.feed.link == "http://127.0.0.1:8000/status/" or feed.feed.link.endswith("/status/")
    (entry,) = feed.entries
    assert entry.id.startswith("tag:") and reference in entry.id
    assert entry.title == f"{reference}: Tracking"
    assert entry.link.endswith(f"/status/{reference}/#statement-{original.pk}")
    assert "Tracking is down since 06:00." in entry.summary
    first_updated = entry.updated_parsed

    with time_machine.travel(timezone.now() + dt.timedelta(minutes=3)):
        _published(
            desk, "Tracking is down since 08:00.", capture, corrects=original, subject="Tracking"
        )
    (corrected,) = _feed(client).entries
    assert corrected.id == entry.id  # the same entry, updated
    assert corrected.updated_parsed > first_updated
    assert corrected.published_parsed == entry.published_parsed
    assert "corrected" in corrected.title
    assert "Tracking is down since 08:00." in corrected.summary
    assert "<del>" in corrected.summary and "since 06:00" in corrected.summary

    incident_feed = _feed(client, f"/status/{reference}/feed.atom")
    assert [e.id for e in incident_feed.entries] == [entry.id]
    assert incident_feed.feed.id != feed.feed.id


def test_it_writes_the_feed_in_the_readers_language(
    client, desk, django_capture_on_commit_callbacks
):
    _published(
        desk,
        "Card payments fail.",
        django_capture_on_commit_callbacks,
        translations={"he": {"body": "התשלומים בכרטיס נכשלים."}},
    )
    feed = _feed(client, HTTP_ACCEPT_LANGUAGE="he")
    assert feed.feed.language == "he"
    assert "התשלומים בכרטיס נכשלים." in feed.entries[0].summary
    assert "Card payments fail." in _feed(client, "/status/feed.atom?lang=en").entries[0].summary


def test_an_empty_feed_is_valid_atom(client, desk):
    feed = _feed(client)
    assert feed.entries == []
    assert feed.feed.updated_parsed is not None


@pytest.mark.parametrize("path", ["/status/", "/status/feed.atom", "/status/{ref}/"])
def test_it_answers_a_conditional_get_with_304_until_something_changes(
    client, desk, django_capture_on_commit_callbacks, path
):
    capture = django_capture_on_commit_callbacks
    _published(desk, "First.", capture)
    path = path.format(ref=desk["incident"].reference)
    first = client.get(path)
    etag, modified = first["ETag"], first["Last-Modified"]
    assert etag and modified
    assert client.get(path, HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert client.get(path, HTTP_IF_MODIFIED_SINCE=modified).status_code == 304
    # Another language is another representation.
    assert client.get(path + "?lang=he", HTTP_IF_NONE_MATCH=etag).status_code == 200
    _published(desk, "Second.", capture)  # within the same second, likely
    after = client.get(path, HTTP_IF_NONE_MATCH=etag)
    assert after.status_code == 200
    assert after["ETag"] != etag
    assert "Second." in after.content.decode()
    # A client that sends only If-Modified-Since sees the change too.
    assert client.get(path, HTTP_IF_MODIFIED_SINCE=modified).status_code == 200


def test_it_serves_the_page_from_the_cache_and_renews_it_on_publish_and_correction(
    client, desk, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    original = _published(desk, "Tracking is down.", capture)
    assert "Tracking is down." in client.get("/status/").content.decode()
    # A statement written behind the services' back (no new version) is not seen: the
    # page comes from the cache.
    Message.objects.create(
        incident=desk["incident"],
        audience=desk["customers"],
        channel="website",
        body="Written behind the services' back.",
        status=Message.Status.PUBLISHED,
        author=desk["eszter"],
        approver=desk["lawyer"],
        sent_at=timezone.now(),
    )
    assert "behind the services" not in client.get("/status/").content.decode()

    _published(desk, "Another statement.", capture)
    assert "Another statement." in client.get("/status/").content.decode()
    _published(desk, "Tracking is down, corrected.", capture, corrects=original)
    html = client.get("/status/").content.decode()
    assert "Tracking is down, corrected." in html and "<del" in html
    with capture(execute=True):
        incident_services.incident_resolve(incident=desk["incident"], actor=None)
    assert "Resolved" in client.get("/status/").content.decode()


def test_a_rolled_back_publish_keeps_the_cached_page(
    client, desk, django_capture_on_commit_callbacks
):
    _published(desk, "Kept.", django_capture_on_commit_callbacks)
    version = statuscache.status_version()
    with django_capture_on_commit_callbacks(execute=False):  # never committed
        publish(desk, "Rolled back.")
    assert statuscache.status_version() == version


def _two_processes(monkeypatch, first, second):
    """Run code as if in two web processes, each with its own cache client."""

    def use(client):
        monkeypatch.setattr(statuscache, "cache", client)

    return lambda: use(first), lambda: use(second)


def _check_not_stale_across(client, desk, capture, monkeypatch, make_client):
    as_a, as_b = _two_processes(monkeypatch, make_client(), make_client())
    _published(desk, "Seen by both.", capture)
    as_a()
    assert "Seen by both." in client.get("/status/").content.decode()
    as_b()
    assert "Seen by both." in client.get("/status/").content.decode()
    # Process B publishes a correction; process A's next answer has it.
    original = desk["incident"].messages.get(body="Seen by both.")
    _published(desk, "Corrected in B.", capture, corrects=original)
    as_a()
    html = client.get("/status/").content.decode()
    assert "Corrected in B." in html
    etag_a = client.get("/status/")["ETag"]
    as_b()
    assert client.get("/status/")["ETag"] == etag_a


def test_it_is_never_stale_across_processes_sharing_the_file_cache(
    client, desk, django_capture_on_commit_callbacks, monkeypatch, status_cache
):
    _check_not_stale_across(
        client,
        desk,
        django_capture_on_commit_callbacks,
        monkeypatch,
        lambda: FileBasedCache(status_cache, {}),
    )


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


def test_it_is_never_stale_across_processes_sharing_redis(
    client, desk, django_capture_on_commit_callbacks, monkeypatch
):
    need(_redis_up(), "Redis is not running on 127.0.0.1:6379")
    from django.core.cache.backends.redis import RedisCache

    prefix = f"status-test-{timezone.now().timestamp()}"

    def make():
        return RedisCache("redis://127.0.0.1:6379/2", {"KEY_PREFIX": prefix})

    try:
        _check_not_stale_across(client, desk, django_capture_on_commit_callbacks, monkeypatch, make)
    finally:
        make().clear()
