"""What every transport shares: the server side (connections, tasks, shutdown) and the
per-connection side (registry entry, ordered replies, flow control, slow readers)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, cast

from tinyboard.registry import Client, Registry
from tinyboard.transports.outbox import Outbox, Slot

log = logging.getLogger(__name__)

MAX_OUTPUT = 1 << 20
"""Bytes of replies a client may leave unread before it is disconnected."""
SWEEP_INTERVAL = 0.5
"""Seconds between deadline checks (keep-alive, idle, unfinished packets)."""


class TransportServer:
    """Tracks connections and tasks so the lifecycle owner can stop them in order."""

    name = "transport"

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.connections: set[StreamProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start the deadline sweep (mosquitto's keepalive.c: one loop, not a timer each)."""
        self.spawn(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.sweep(loop.time())

    def sweep(self, now: float) -> None:
        for conn in list(self.connections):
            conn.check_alive(now)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def pause_all(self) -> None:
        """Stop taking input (shutdown): nothing new is read after the pipeline drains."""
        for conn in list(self.connections):
            conn.pause("shutdown")

    def close_all(self) -> None:
        for conn in list(self.connections):
            conn.close()

    def abort_all(self) -> None:
        for conn in list(self.connections):
            conn.abort()

    async def cancel_tasks(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class StreamProtocol(asyncio.Protocol):
    """One TCP connection: registered while open, replies through an ordered outbox."""

    def __init__(self, server: TransportServer) -> None:
        self._base_server = server
        self._transport: asyncio.Transport | None = None
        self._client: Client | None = None
        self._out = Outbox(self._write)
        self._pauses: set[str] = set()
        self._done = False
        """No more input is processed (closing, closed or refused)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence the cast.
        self._transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        server = self._base_server
        self._client = server.registry.add(server.name, where, self)
        server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._done = True
        server = self._base_server
        server.connections.discard(self)
        if self._client is not None:
            server.registry.remove(self._client)
        if exc is not None:
            log.debug("%s client %s went away: %s", server.name, self._peer, exc)

    def _write(self, slot: Slot) -> None:
        transport = self._transport
        client = self._client
        assert transport is not None and client is not None
        if transport.is_closing():
            return
        client.bytes_out += len(slot.data)
        client.messages_out += slot.count
        transport.write(slot.data)
        if slot.close_after:
            transport.close()
        elif transport.get_write_buffer_size() > MAX_OUTPUT:
            log.warning(
                "%s client %s does not read; disconnecting it", client.transport, client.peer
            )
            self.abort()

    def check_alive(self, now: float) -> None:
        """Close the connection if one of its deadlines has passed (see `sweep`)."""

    def pause(self, reason: str) -> None:
        if not self._pauses and self._transport and not self._transport.is_closing():
            self._transport.pause_reading()
        self._pauses.add(reason)

    def resume(self, reason: str) -> None:
        self._pauses.discard(reason)
        if not self._pauses and self._transport and not self._transport.is_closing():
            self._transport.resume_reading()

    def close(self) -> None:
        """Flush what is written and close."""
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self._done = True
        if self._transport is not None:
            self._transport.abort()

    @property
    def _peer(self) -> str:
        return self._client.peer if self._client else "?"
