"""The public status page's cache: one version for everything the page shows.

The page, each incident's page and the feeds are rendered once per language and
kept in Django's cache under the current *version*; ETag and Last-Modified come
from the same version, so a poller's conditional GET is answered 304 without
rendering. Publishing or correcting a public statement, or a change of an
incident's public state (contained, resolved, closed, reopened), or of anything
else the page shows of an incident (``Incident.PUBLIC_FIELDS``: its public title,
category, status...; ``on_incident_saved``, whichever door saved it), writes a new
version after commit: every process reads the version from the shared cache (a
file cache in the data dir by default, Redis when configured; crisisdesk/settings.py),
so no process serves a page older than the last change.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.core.cache import cache
from django.db import transaction

VERSION_KEY = "status:version"
# A version (and so each page rendered under it) lives at most this long, even if no
# change comes: what moves with time alone (a resolved incident going to the history)
# reaches the page, and its ETag, within it.
PAGE_SECONDS = 300
# What a builder returns for an address that shows nothing (an unknown or hidden
# incident): kept like a page, so a storm of made-up addresses costs no query either.
NOTHING = ""


@dataclass(frozen=True)
class Version:
    token: str
    at: float  # when it changed (Unix time, whole seconds): Last-Modified

    @property
    def etag(self) -> str:
        return self.token


def _new() -> Version:
    return Version(token=uuid.uuid4().hex[:16], at=float(int(time.time())))


def status_version() -> Version:
    """The current version; a new one if the cache lost it (restarted, evicted)."""
    found = cache.get(VERSION_KEY)
    if isinstance(found, Version):
        return found
    cache.add(VERSION_KEY, _new(), PAGE_SECONDS)  # the first process to get here wins
    return cache.get(VERSION_KEY) or _new()


def status_changed() -> None:
    """Something the status page shows changed: a new version once this transaction
    commits (a rollback leaves the page as it was)."""
    transaction.on_commit(lambda: cache.set(VERSION_KEY, _next(), PAGE_SECONDS))


def _next() -> Version:
    """A new version, its time later than the one it replaces even within the same
    second: a client that sends only If-Modified-Since must not get a 304 for it."""
    version = _new()
    previous = cache.get(VERSION_KEY)
    if isinstance(previous, Version) and version.at <= previous.at:
        return Version(token=version.token, at=previous.at + 1)
    return version


def cached_page(parts: tuple[str, ...], build: Callable[[], str]) -> tuple[str, Version]:
    """The page for ``parts`` (kind, language, ...) at the current version, built once.

    The version is read before building: a change that commits during the build gives
    a new version, so this page is stored under the old one and never served as new.
    """
    version = status_version()
    key = "status:page:" + ":".join((version.token, *parts))
    page = cache.get(key)
    if page is None:
        page = build()
        cache.set(key, page, PAGE_SECONDS)
    return page, version


def on_incident_saved(sender, instance, created: bool, **kwargs) -> None:
    """post_save of Incident (connected in incidents/apps.py): the one hook every
    door's change goes through (services, the admin, the API), so none can forget it.
    A new incident has nothing public yet."""
    if not created and instance.public_changed():
        status_changed()
    instance.public_snapshot_take()
