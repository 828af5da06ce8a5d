"""Hosts on one machine for integration tests: network namespaces joined by veth pairs.

Each host is a network namespace (``ip netns``) with one veth pair to the root
namespace, on a /30 of a 10.231.x.0/24 no interface of this machine uses: the
host's end carries .2 (+4 per host), the root end .1, the host's gateway, where
the services are reached. PostgreSQL, Redis and RabbitMQ listen on 127.0.0.1
only, so ``Forwarder`` relays TCP from each gateway address to them (the
clusters' own configuration is never touched). ``Network.cut`` takes a host's
link down, as a pulled cable does: packets are dropped, no connection is told.
Everything is named per run and removed by ``Network.close``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import secrets
import shutil
import subprocess
import threading
from dataclasses import dataclass, field


def ip(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


def missing_capability() -> str | None:
    """Why this machine cannot make namespaces (None if it can): root, `ip`, a probe."""
    if os.geteuid() != 0:
        return "making network namespaces needs root (CI runs as root)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"cdprobe{secrets.token_hex(3)}"
    try:
        ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"`ip netns add` failed: {getattr(exc, 'stderr', '') or exc}"
    ip("netns", "del", probe)
    return None


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.231.x.0/24 that no address or route of this machine touches."""
    used = ip("-4", "-o", "addr", "show") + ip("-4", "route", "show", "table", "all")
    candidates = list(range(256))
    random.shuffle(candidates)
    for x in candidates:
        net = ipaddress.IPv4Network(f"10.231.{x}.0/24")
        if f"10.231.{x}." not in used:
            return net
    raise RuntimeError("no free 10.231.x.0/24 on this machine")


@dataclass
class Host:
    name: str  # the namespace
    veth: str  # the root end of its link: what a cut takes down
    address: str  # the host's own address
    gateway: str  # the root end's address, where the services are reached

    def argv(self, *command: str) -> list[str]:
        """A command run on this host."""
        return ["ip", "netns", "exec", self.name, *command]


@dataclass
class Network:
    run: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: ipaddress.IPv4Network = field(default_factory=_free_subnet)
    hosts: list[Host] = field(default_factory=list)

    def add(self, label: str) -> Host:
        i = len(self.hosts)
        base = int(self.subnet.network_address) + 4 * i
        gateway, address = (
            str(ipaddress.IPv4Address(base + 1)),
            str(ipaddress.IPv4Address(base + 2)),
        )
        # Interface names are at most 15 characters.
        host = Host(f"cdh{self.run}-{label}", f"cdh{self.run}{i}r", address, gateway)
        inner = f"cdh{self.run}{i}n"
        ip("netns", "add", host.name)
        self.hosts.append(host)
        ip("link", "add", host.veth, "type", "veth", "peer", "name", inner)
        ip("link", "set", inner, "netns", host.name)
        ip("addr", "add", f"{gateway}/30", "dev", host.veth)
        ip("link", "set", host.veth, "up")
        ip("netns", "exec", host.name, "ip", "addr", "add", f"{address}/30", "dev", inner)
        ip("netns", "exec", host.name, "ip", "link", "set", inner, "up")
        ip("netns", "exec", host.name, "ip", "link", "set", "lo", "up")
        return host

    def cut(self, host: Host) -> None:
        ip("link", "set", host.veth, "down")

    def restore(self, host: Host) -> None:
        ip("link", "set", host.veth, "up")

    def close(self) -> None:
        for host in self.hosts:
            # Deleting one end of a veth pair deletes both.
            subprocess.run(["ip", "link", "del", host.veth], capture_output=True, timeout=30)
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True, timeout=30)
        self.hosts.clear()


class Forwarder:
    """TCP relays, each from an address and port to a port on 127.0.0.1 (asyncio, its own
    thread). A relayed connection ends when either side ends it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()

    def add(self, host: str, port: int, target_port: int) -> None:
        async def start() -> asyncio.Server:
            return await asyncio.start_server(
                lambda r, w: self._relay(r, w, target_port), host, port
            )

        self._servers.append(asyncio.run_coroutine_threadsafe(start(), self.loop).result(10))

    async def _relay(self, reader, writer, target_port: int) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer, writer), self._pipe(up_reader, writer, up_writer)
        )

    async def _pipe(self, reader, writer, other) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            for w in (writer, other):
                w.close()
                self._writers.discard(w)

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            for writer in list(self._writers):
                writer.close()
            relays = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in relays:
                task.cancel()
            await asyncio.gather(*relays, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
