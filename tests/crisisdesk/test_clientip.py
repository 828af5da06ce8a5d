"""The client's address behind trusted proxies (crisisdesk/clientip.py)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from crisisdesk.clientip import client_address
from crisisdesk.env import env_networks


def _request(peer: str, forwarded: str | None = None):
    extra = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/status/", **extra)


def test_it_believes_no_header_by_default(settings):
    settings.CRISISDESK_TRUSTED_PROXIES = []
    assert client_address(_request("127.0.0.1", "203.0.113.7")) == "127.0.0.1"


def test_it_takes_the_right_most_untrusted_address_from_a_trusted_proxy(settings):
    settings.CRISISDESK_TRUSTED_PROXIES = ["127.0.0.1/32", "10.0.0.0/8"]
    # The client forged the first hop; the proxies appended the rest.
    request = _request("127.0.0.1", "198.51.100.66, 203.0.113.7, 10.1.2.3")
    assert client_address(request) == "203.0.113.7"
    assert client_address(_request("127.0.0.1", "2001:db8::1")) == "2001:db8::1"


def test_it_ignores_the_header_from_an_untrusted_peer(settings):
    settings.CRISISDESK_TRUSTED_PROXIES = ["127.0.0.1/32"]
    assert client_address(_request("192.0.2.5", "203.0.113.7")) == "192.0.2.5"


def test_a_broken_chain_stops_at_the_last_trusted_hop(settings):
    settings.CRISISDESK_TRUSTED_PROXIES = ["127.0.0.1/32", "10.0.0.0/8"]
    assert client_address(_request("127.0.0.1", "nonsense, 10.0.0.9")) == "10.0.0.9"
    assert client_address(_request("127.0.0.1", "")) == "127.0.0.1"
    assert client_address(_request("127.0.0.1", "10.0.0.1, 10.0.0.2")) == "10.0.0.1"


def test_the_setting_refuses_what_is_no_network(monkeypatch):
    monkeypatch.setenv("CRISISDESK_TRUSTED_PROXIES", "127.0.0.1/32,proxy.example")
    with pytest.raises(ImproperlyConfigured):
        env_networks("CRISISDESK_TRUSTED_PROXIES", [])
