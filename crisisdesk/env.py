"""Strict readers for settings that come from the environment.

A typo in a deployment variable must stop the process at start-up with the
variable's name, not fall back to a default nobody asked for: ``DEBUG=ture``
silently meaning False, or ``DATABASE_URL=postgres//db`` silently meaning
SQLite, is how a crisis tool loses its data on the day it is needed.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean: use one of true/false, yes/no, on/off, 1/0."
    )


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    assert value is not None
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} must be one of: {', '.join(choices)}.")
    return value


def env_networks(name: str, default: list[str]) -> list[str]:
    """A comma-separated list of networks in CIDR notation (a bare address is one host)."""
    networks = env_list(name, default)
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {network!r} is not a network (e.g. 10.0.0.0/8 or ::1/128)."
            ) from None
    return [str(ipaddress.ip_network(n, strict=False)) for n in networks]


_DB_SCHEMES = ("sqlite", "postgres", "postgresql", "pgsql", "psql")


def env_database(name: str, default: str) -> dict:
    """Parse a database URL; refuse anything that is not sqlite:// or postgres://."""
    url = env_str(name, default)
    assert url is not None
    parts = urlsplit(url)
    if parts.scheme not in _DB_SCHEMES or "://" not in url:
        raise ImproperlyConfigured(
            f"{name}={url!r} is not a database URL: expected sqlite:///path/to/file.sqlite3 "
            "or postgres://user:password@host:5432/name."
        )
    if parts.scheme != "sqlite":
        if not parts.hostname and not parts.path.strip("/"):
            raise ImproperlyConfigured(f"{name}={url!r} names no host and no database.")
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise ImproperlyConfigured(f"{name}={url!r} has a port that is not a number.") from None
    try:
        config = environ.Env.db_url_config(url)
    except Exception as exc:  # environ raises a variety of errors for malformed URLs
        raise ImproperlyConfigured(f"{name}={url!r} cannot be parsed: {exc}") from exc
    if parts.scheme != "sqlite" and not config.get("NAME"):
        raise ImproperlyConfigured(f"{name}={url!r} names no database (…/dbname).")
    return config


_BROKER_SCHEMES = ("redis", "rediss", "filesystem", "memory", "amqp", "amqps", "pyamqp")


def env_broker(name: str, default: str) -> str:
    url = env_str(name, default)
    assert url is not None
    parts = urlsplit(url)
    if parts.scheme not in _BROKER_SCHEMES or "://" not in url:
        raise ImproperlyConfigured(
            f"{name}={url!r} is not a broker URL: expected redis://host:6379/0, "
            "amqp://user:password@host:5672/vhost or filesystem://."
        )
    try:
        parts.port  # noqa: B018
    except ValueError:
        raise ImproperlyConfigured(f"{name}={url!r} has a port that is not a number.") from None
    return url
