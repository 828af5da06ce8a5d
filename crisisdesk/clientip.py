"""The client's address behind the TLS proxy (DEPLOYMENT.md), for per-client limits.

``REMOTE_ADDR`` is the direct peer: behind a proxy, the proxy. ``X-Forwarded-For`` is
read only when that peer is one of ``CRISISDESK_TRUSTED_PROXIES`` (CIDR list, empty by
default: nobody's header is believed), and then from the right: each trusted proxy
appends the address it was talking to, so the right-most address that is not a
trusted proxy's is the client; everything left of it anyone could have written.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: Address) -> bool:
    return any(
        address in ipaddress.ip_network(network) for network in settings.CRISISDESK_TRUSTED_PROXIES
    )


def client_address(request: HttpRequest) -> str:
    """The client's address: the direct peer, unless that is a trusted proxy, in which
    case the right-most untrusted address of ``X-Forwarded-For``. A chain that breaks
    (a hop that is no address) stops at the last trusted hop before it."""
    peer_text = request.META.get("REMOTE_ADDR", "")
    peer = _address(peer_text)
    if peer is None:
        return peer_text
    client = peer
    if _trusted(peer):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        for hop_text in reversed([h for h in forwarded.split(",") if h.strip()]):
            hop = _address(hop_text)
            if hop is None:
                break
            client = hop
            if not _trusted(hop):
                break
    return str(client)
