"""The client registry (course milestone 1): every live connection of every transport.

It holds, for each connection, the object that writes to it (its `Connection`), who it is
(the device, once identified), where it comes from and since when, and its traffic
counters. The REST API, the dashboard's Connections page and RPC routing read it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from tinyboard.core.models import Device


class Connection(Protocol):
    """What the registry needs from a transport's per-connection object."""

    def close(self) -> None:
        """Flush pending output and close."""

    def abort(self) -> None:
        """Drop the connection now."""


@dataclass(slots=True, eq=False)
class Client:
    id: int
    transport: str
    peer: str
    connection: Connection
    since: float = field(default_factory=time.time)
    device: Device | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0

    @property
    def who(self) -> str:
        return self.device.name if self.device else "anonymous"

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "transport": self.transport,
            "peer": self.peer,
            "who": self.who,
            "deviceId": self.device.id if self.device else None,
            "since": int(self.since * 1000),
            "bytesIn": self.bytes_in,
            "bytesOut": self.bytes_out,
            "messagesIn": self.messages_in,
            "messagesOut": self.messages_out,
        }


@dataclass(slots=True)
class Traffic:
    connections: int = 0
    closed: int = 0
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class Registry:
    """Live clients by id. Used only from the event loop thread."""

    def __init__(self) -> None:
        self._clients: dict[int, Client] = {}
        self._ids = itertools.count(1)
        self._closed: dict[str, list[int]] = {}
        """Traffic of connections that have gone, per transport: so totals never go down."""
        self._last_seen: dict[str, tuple[str, float]] = {}
        """Device id → (transport, Unix time) of its last closed connection or HTTP request."""

    def add(self, transport: str, peer: str, connection: Connection) -> Client:
        client = Client(next(self._ids), transport, peer, connection)
        self._clients[client.id] = client
        return client

    def remove(self, client: Client) -> None:
        if self._clients.pop(client.id, None) is not None:
            if client.device is not None:
                self._last_seen[client.device.id] = (client.transport, time.time())
            totals = self._closed.setdefault(client.transport, [0, 0, 0, 0, 0])
            totals[0] += client.messages_in
            totals[1] += client.messages_out
            totals[2] += client.bytes_in
            totals[3] += client.bytes_out
            totals[4] += 1

    def totals(self) -> dict[str, Traffic]:
        """Per transport: live connections and all-time traffic (for /metrics)."""
        out: dict[str, Traffic] = {}
        for transport, (m_in, m_out, b_in, b_out, closed) in self._closed.items():
            out[transport] = Traffic(0, closed, m_in, m_out, b_in, b_out)
        for c in self._clients.values():
            t = out.setdefault(c.transport, Traffic())
            t.connections += 1
            t.messages_in += c.messages_in
            t.messages_out += c.messages_out
            t.bytes_in += c.bytes_in
            t.bytes_out += c.bytes_out
        return out

    def seen(self, device: Device, transport: str) -> None:
        """A device used a connectionless transport (HTTP) just now."""
        self._last_seen[device.id] = (transport, time.time())

    def last_seen(self, device_id: str) -> tuple[str, float] | None:
        """How and when the device was last heard from outside a live connection."""
        return self._last_seen.get(device_id)

    def for_device(self, device_id: str) -> list[Client]:
        return [c for c in self._clients.values() if c.device and c.device.id == device_id]

    def __iter__(self) -> Iterator[Client]:
        return iter(list(self._clients.values()))

    def __len__(self) -> int:
        return len(self._clients)
