"""Celery tasks of listening: each takes ids, calls one service, and is safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from incidents import dispatch
from incidents.listening import feeds, signing

POLL_FEED = "incidents.listening.tasks.poll_feed"


@shared_task
def poll_feed(source_id: int) -> str:
    return feeds.feed_poll(source_id=source_id)


@shared_task
def poll_due() -> str:
    """Beat, every minute: queue each feed that is due (the poll claims it again, so a
    feed queued twice is polled once), and forget webhook signatures past their tolerance."""
    now = timezone.now()
    ids = feeds.feeds_due(now=now)
    for pk in ids:
        dispatch.send(POLL_FEED, pk)
    pruned = signing.signatures_prune(now=now)
    return f"feeds queued: {len(ids)}, signatures pruned: {pruned}"
