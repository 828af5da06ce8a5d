"""HEAD on the status page and its feeds: GET's status and headers, no body.

Called on the views directly: Django's test client drops a HEAD answer's body itself,
which would hide a body the view sent (and gunicorn would pass on)."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from incidents import statuspage
from tests.statuspage.conftest import publish

pytestmark = pytest.mark.django_db

SAME = ("Content-Type", "ETag", "Last-Modified", "Content-Language", "Cache-Control", "Vary")


def _views(reference: str):
    return [
        (statuspage.status_index, "/status/", {}),
        (statuspage.status_feed, "/status/feed.atom", {}),
        (statuspage.status_incident, f"/status/{reference}/", {"reference": reference}),
        (statuspage.incident_feed, f"/status/{reference}/feed.atom", {"reference": reference}),
    ]


def test_head_answers_like_get_without_a_body(desk):
    publish(desk, "Tracking is down.")
    factory = RequestFactory()
    for view, path, kwargs in _views(desk["incident"].reference):
        got = view(factory.get(path), **kwargs)
        head = view(factory.head(path), **kwargs)
        assert got.status_code == head.status_code == 200, path
        assert got.content and head.content == b"", path
        for name in SAME:
            assert head.get(name) == got.get(name), (path, name)
        assert int(head["Content-Length"]) == len(got.content), path
        # A conditional HEAD is answered 304 like a conditional GET.
        again = view(factory.head(path, HTTP_IF_NONE_MATCH=got["ETag"]), **kwargs)
        assert again.status_code == 304 and again.content == b""


def test_head_of_nothing_public_is_the_same_404_without_a_body(desk):
    factory = RequestFactory()
    for view, path, kwargs in _views("INC-2026-9999"):
        got = view(factory.get(path), **kwargs)
        head = view(factory.head(path), **kwargs)
        assert got.status_code == head.status_code, path
        assert head.content == b""
        assert int(head["Content-Length"]) == len(got.content)


def test_head_through_the_stack(client, desk):
    publish(desk, "Tracking is down.")
    for path in ("/status/", "/status/feed.atom"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code == 200
        assert head["ETag"] == got["ETag"] and head["Content-Type"] == got["Content-Type"]
        assert head["Content-Length"] == str(len(got.content))
