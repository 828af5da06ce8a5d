"""Polling RSS and Atom feeds (Google Alerts delivers RSS) into mentions.

``feed_poll(source_id)`` polls one feed:

1. Claim it: a conditional update moves ``next_poll_at`` a lease ahead, only if it
   is due, so two workers or two beats never poll one feed at once.
2. Fetch it ourselves (``urllib.request``) so the limits are ours: a timeout per
   socket operation and for the whole download, the body read in chunks and
   refused past ``MAX_FEED_BYTES`` (a Content-Length above it is refused before
   reading), ``If-None-Match`` / ``If-Modified-Since`` from the last answer; a 304
   is a success with nothing new.
3. Parse the bytes with feedparser; a feed it cannot read as XML is a failure.
4. Write at most ``MAX_ENTRIES_PER_POLL`` entries through ``mention_record`` (id
   at the source: the entry's id, else its link; the same entry again writes
   nothing), rules evaluated on each as for a webhook.
5. Success: healthy, ETag and Last-Modified kept, next poll after its interval.
   Failure: unhealthy with the reason (the war-room dashboard lists it) and the
   next poll backed off exponentially (interval × 2^failures, at most a day).
"""

from __future__ import annotations

import hashlib
import logging
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import feedparser
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone
from django.utils.html import strip_tags
from django.utils.translation import gettext as _

from incidents.listening import rules as listening_rules
from incidents.listening.models import MAX_POLL_MINUTES, MAX_TEXT_CHARS, Source
from incidents.listening.services import mention_record

log = logging.getLogger(__name__)

MAX_FEED_BYTES = 5 * 1024 * 1024
MAX_ENTRIES_PER_POLL = 50
TIMEOUT_SECONDS = 10.0
CHUNK = 64 * 1024
LEASE = timedelta(minutes=2)
USER_AGENT = "CrisisDesk feed poller"


class FeedError(Exception):
    pass


def _fetch(source: Source) -> tuple[int, bytes, dict[str, str]]:
    """Step 2: (status, body, headers); raises FeedError with a reason a person can read."""
    if not source.feed_url.startswith(("http://", "https://")):
        raise FeedError(_("Only http and https feeds are polled."))
    request = urllib.request.Request(source.feed_url, headers={"User-Agent": USER_AGENT})  # noqa: S310
    if source.etag:
        request.add_header("If-None-Match", source.etag)
    if source.last_modified:
        request.add_header("If-Modified-Since", source.last_modified)
    deadline = time.monotonic() + TIMEOUT_SECONDS
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - http(s) only: URLField
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_FEED_BYTES:
                raise FeedError(_("The feed is larger than %(n)s bytes.") % {"n": MAX_FEED_BYTES})
            chunks, size = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise FeedError(
                        _("No complete answer within %(s)s seconds.") % {"s": TIMEOUT_SECONDS}
                    )
                chunk = response.read1(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_FEED_BYTES:
                    raise FeedError(
                        _("The feed is larger than %(n)s bytes.") % {"n": MAX_FEED_BYTES}
                    )
                chunks.append(chunk)
            return response.status, b"".join(chunks), dict(response.headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return 304, b"", dict(exc.headers or {})
        raise FeedError(_("The server answered HTTP %(code)s.") % {"code": exc.code}) from None
    except TimeoutError:
        raise FeedError(_("No answer within %(s)s seconds.") % {"s": TIMEOUT_SECONDS}) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise FeedError(_("No answer within %(s)s seconds.") % {"s": TIMEOUT_SECONDS}) from None
        raise FeedError(_("Could not reach the feed: %(r)s") % {"r": reason}) from None
    except OSError as exc:
        raise FeedError(_("Could not reach the feed: %(r)s") % {"r": exc}) from None


def _entry_item(entry, source: Source) -> dict | None:
    link = str(entry.get("link") or "")
    ident = str(entry.get("id") or link)
    if not ident:
        return None
    if len(ident) > 200:
        ident = "sha256:" + hashlib.sha256(ident.encode()).hexdigest()
    title = strip_tags(str(entry.get("title") or "")).strip()
    summary = strip_tags(str(entry.get("summary") or "")).strip()
    text = "\n".join(part for part in (title, summary) if part)[:MAX_TEXT_CHARS]
    if not text:
        return None
    published = entry.get("published_parsed") or entry.get("updated_parsed")
    return {
        "external_id": ident,
        "channel": source.channel,
        "author": str(entry.get("author") or "")[:200],
        "url": link if len(link) <= 2000 and link.startswith(("http://", "https://")) else "",
        "text": text,
        "language": "",
        "published_at": datetime(*published[:6], tzinfo=UTC) if published else None,
    }


def _parse(body: bytes):
    parsed = feedparser.parse(body)
    problem = parsed.get("bozo_exception")
    if parsed.get("bozo") and not isinstance(
        problem, feedparser.CharacterEncodingOverride | feedparser.NonXMLContentType
    ):
        raise FeedError(_("Not a readable feed: %(e)s") % {"e": str(problem)[:200]})
    if not parsed.get("version"):
        raise FeedError(_("Not an RSS or Atom feed."))
    return parsed


def _backoff(source: Source, failures: int) -> timedelta:
    minutes = min(source.poll_minutes * 2 ** min(failures, 20), MAX_POLL_MINUTES)
    return timedelta(minutes=minutes)


def feed_poll(*, source_id: int, now: datetime | None = None, force: bool = False) -> str:
    """Poll one feed (see the module docstring); a short summary for the task log."""
    now = now or timezone.now()
    due = Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now)
    claim = Source.objects.filter(pk=source_id, kind=Source.Kind.FEED, enabled=True)
    if not force:
        claim = claim.filter(due)
    if not claim.update(next_poll_at=now + LEASE):
        return f"feed {source_id}: not due"
    source = Source.objects.get(pk=source_id)
    try:
        status, body, headers = _fetch(source)
        written = 0
        if status != 304:
            parsed = _parse(body)
            rules = listening_rules.enabled_rules()
            for entry in parsed.entries[:MAX_ENTRIES_PER_POLL]:
                item = _entry_item(entry, source)
                if item is None:
                    continue
                try:
                    _m, created, _f = mention_record(source=source, rules=rules, now=now, **item)
                except ValidationError:
                    log.warning("feed %s: entry %s refused", source.slug, item["external_id"])
                    continue
                written += created
    except FeedError as exc:
        failures = source.failures + 1
        Source.objects.filter(pk=source.pk).update(
            healthy=False,
            last_error=str(exc)[:500],
            failures=min(failures, 10_000),
            last_polled_at=now,
            next_poll_at=now + _backoff(source, failures),
        )
        return f"feed {source.slug}: failed ({exc})"
    lower = {k.lower(): v for k, v in headers.items()}
    Source.objects.filter(pk=source.pk).update(
        healthy=True,
        last_error="",
        failures=0,
        etag=(lower.get("etag") or source.etag)[:500],
        last_modified=(lower.get("last-modified") or source.last_modified)[:100],
        last_polled_at=now,
        next_poll_at=now + timedelta(minutes=source.poll_minutes),
    )
    return f"feed {source.slug}: {'not modified' if status == 304 else f'{written} new'}"


def feeds_due(*, now: datetime | None = None) -> list[int]:
    """The feeds to poll now (the partial index on next_poll_at serves it)."""
    now = now or timezone.now()
    return list(
        Source.objects.filter(kind=Source.Kind.FEED, enabled=True)
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
        .values_list("pk", flat=True)[:500]
    )
