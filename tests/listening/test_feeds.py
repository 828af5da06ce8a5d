"""Feeds against a loopback HTTP server: conditional GET, bad and hostile feeds."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from incidents.listening import feeds, services
from incidents.listening.models import Mention, Source
from incidents.listening.tasks import poll_due
from incidents.models import Incident

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Google Alert - Acme</title><link>https://example.test/</link>
<description>alerts</description>
{items}
</channel></rss>"""
ITEM = """<item><title>{title}</title><link>https://news.example.test/{n}</link>
<guid>tag:example.test,2026:{n}</guid><description>&lt;b&gt;{body}&lt;/b&gt;</description>
<pubDate>Thu, 26 Nov 2026 08:0{n}:00 GMT</pubDate></item>"""


def rss(count: int, title: str = "Acme checkout broken", start: int = 0) -> bytes:
    items = "".join(
        ITEM.format(n=n, title=f"{title} {n}", body="Ügyfelek panaszkodnak")
        for n in range(start, start + count)
    )
    return RSS.format(items=items).encode()


class Handler(BaseHTTPRequestHandler):
    routes: dict = {}
    seen: list = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        Handler.seen.append((self.path, dict(self.headers)))
        route = Handler.routes[self.path]
        route(self)


def send(handler, body: bytes, *, status=200, headers=None):
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def server():
    Handler.routes, Handler.seen = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def feed(server, path: str, **kwargs) -> Source:
    return services.source_create(
        name=path,
        slug=path.strip("/").replace(".", "-").replace("/", "-") or "root",
        kind="feed",
        channel="news",
        feed_url=f"http://127.0.0.1:{server.server_port}{path}",
        **kwargs,
    )


def poll(source: Source) -> Source:
    feeds.feed_poll(source_id=source.pk, force=True)
    return Source.objects.get(pk=source.pk)


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(feeds, "TIMEOUT_SECONDS", 1.0)


def test_it_reads_entries_and_honours_the_etag(db, server):
    def route(handler):
        if handler.headers.get("If-None-Match") == '"v1"':
            handler.send_response(304)
            handler.end_headers()
            return
        send(
            handler,
            rss(3),
            headers={"ETag": '"v1"', "Last-Modified": "Thu, 26 Nov 2026 08:00:00 GMT"},
        )

    Handler.routes["/feed.xml"] = route
    source = poll(feed(server, "/feed.xml"))
    assert source.healthy and source.etag == '"v1"'
    assert source.last_modified == "Thu, 26 Nov 2026 08:00:00 GMT"
    rows = list(Mention.objects.order_by("external_id"))
    assert [m.external_id for m in rows] == [f"tag:example.test,2026:{n}" for n in range(3)]
    assert rows[0].text == "Acme checkout broken 0\nÜgyfelek panaszkodnak"
    assert rows[0].url == "https://news.example.test/0" and rows[0].channel == "news"
    assert rows[0].published_at == dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC)

    source = poll(source)
    assert Handler.seen[-1][1].get("If-None-Match") == '"v1"'
    assert Handler.seen[-1][1].get("If-Modified-Since") == "Thu, 26 Nov 2026 08:00:00 GMT"
    assert source.healthy and Mention.objects.count() == 3


def test_entries_read_twice_are_written_once_and_capped_per_poll(db, server, monkeypatch):
    monkeypatch.setattr(feeds, "MAX_ENTRIES_PER_POLL", 5)
    Handler.routes["/many.xml"] = lambda h: send(h, rss(8))
    source = feed(server, "/many.xml")
    poll(source)
    assert Mention.objects.count() == 5
    poll(source)
    assert Mention.objects.count() == 5


def test_entries_without_an_id_are_told_apart_by_their_link(db, server):
    no_guid = "".join(
        f"<item><title>Review {n}</title><link>https://reviews.example.test/{n}</link>"
        f"<description>Slow refund</description></item>"
        for n in range(2)
    )
    Handler.routes["/noid.xml"] = lambda h: send(h, RSS.format(items=no_guid).encode())
    source = feed(server, "/noid.xml")
    poll(source)
    poll(source)
    assert sorted(Mention.objects.values_list("external_id", flat=True)) == [
        f"https://reviews.example.test/{n}" for n in range(2)
    ]


def test_a_spike_in_a_feed_opens_an_incident(broker_calls, server, spike_rule):
    Handler.routes["/alerts.xml"] = lambda h: send(h, rss(6))
    poll(feed(server, "/alerts.xml"))
    assert Incident.objects.count() == 1
    assert Mention.objects.filter(incident__isnull=False).count() == 6


def test_malformed_xml_marks_the_feed_unhealthy_and_backs_off(db, server):
    Handler.routes["/bad.xml"] = lambda h: send(h, b"<rss><channel><item><title>x</titl")
    source = feed(server, "/bad.xml", poll_minutes=10)
    before = timezone.now()
    source = poll(source)
    assert not source.healthy and "Not a readable feed" in source.last_error
    assert source.failures == 1
    assert source.next_poll_at >= before + dt.timedelta(minutes=20)
    source = poll(source)
    assert source.failures == 2
    assert source.next_poll_at >= before + dt.timedelta(minutes=40)
    assert not Mention.objects.exists()
    # Recovery clears it.
    Handler.routes["/bad.xml"] = lambda h: send(h, rss(1))
    source = poll(source)
    assert source.healthy and source.failures == 0 and source.last_error == ""


def test_an_http_error_is_named(db, server):
    Handler.routes["/gone.xml"] = lambda h: send(h, b"gone", status=410)
    source = poll(feed(server, "/gone.xml"))
    assert not source.healthy and "410" in source.last_error


def huge_streamed(handler):
    """50 MB with no Content-Length: the poller must stop reading, not the server."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.end_headers()
    block = b"<!-- padding -->" * 4096
    try:
        handler.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
        for _ in range(50 * 1024 * 1024 // len(block)):
            handler.wfile.write(block)
    except (BrokenPipeError, ConnectionResetError):
        pass


def test_a_50_mb_feed_is_refused_by_size(db, server):
    Handler.routes["/huge.xml"] = huge_streamed
    source = poll(feed(server, "/huge.xml"))
    assert not source.healthy and "larger than" in source.last_error
    assert not Mention.objects.exists()


def test_a_declared_50_mb_feed_is_refused_before_reading(db, server):
    def route(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(50 * 1024 * 1024))
        handler.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(b"<rss>")

    Handler.routes["/declared.xml"] = route
    source = poll(feed(server, "/declared.xml"))
    assert not source.healthy and "larger than" in source.last_error


def test_a_slow_server_times_out(db, server, fast):
    release = threading.Event()

    def route(handler):
        release.wait(timeout=10)  # answers only after the poller gave up
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            send(handler, rss(1))

    Handler.routes["/slow.xml"] = route
    started = time.monotonic()
    source = poll(feed(server, "/slow.xml"))
    release.set()
    assert time.monotonic() - started < 5
    assert not source.healthy and "seconds" in source.last_error


def test_a_trickling_server_is_cut_off_at_the_deadline(db, server, fast):
    def route(handler):
        handler.send_response(200)
        handler.end_headers()
        try:
            for _ in range(100):
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass

    Handler.routes["/trickle.xml"] = route
    started = time.monotonic()
    source = poll(feed(server, "/trickle.xml"))
    assert time.monotonic() - started < 4
    assert not source.healthy and "seconds" in source.last_error


def test_the_beat_task_queues_only_due_feeds_and_a_poll_is_claimed_once(db, server, monkeypatch):
    sent = []
    monkeypatch.setattr("incidents.dispatch.send", lambda task, pk, eta=None: sent.append(pk))
    Handler.routes["/a.xml"] = lambda h: send(h, rss(1))
    due = feed(server, "/a.xml")
    later = feed(server, "/b.xml")
    Source.objects.filter(pk=later.pk).update(next_poll_at=timezone.now() + dt.timedelta(hours=1))
    poll_due()
    assert sent == [due.pk]
    assert feeds.feed_poll(source_id=due.pk).endswith("1 new")
    # Polled: not due again until its interval has passed.
    assert feeds.feed_poll(source_id=due.pk).endswith("not due")


def test_the_dashboard_names_a_failing_feed_to_who_may_see_sources(client, server, manager, db):
    from tests.factories import UserFactory

    Handler.routes["/gone.xml"] = lambda h: send(h, b"gone", status=503)
    poll(feed(server, "/gone.xml"))
    client.force_login(manager)
    page = client.get("/").content.decode()
    assert "Listening sources failing" in page and "HTTP 503" in page
    client.force_login(UserFactory(username="nobody"))
    assert "Listening sources failing" not in client.get("/").content.decode()


def test_beat_polls_feeds_by_a_task_the_worker_knows(settings):
    from crisisdesk.celery import app

    app.loader.import_default_modules()
    entry = settings.CELERY_BEAT_SCHEDULE["listening-feeds"]
    assert entry["task"] in app.tasks
    assert "incidents.listening.tasks.poll_feed" in app.tasks
