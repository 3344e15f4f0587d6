"""The line protocol server (course milestones 0–2): chat echo in CAPITALS, plus devices.

Strategy: one `LineProtocol` per connection, no task per line. `data_received` splits the
bytes into lines and answers all complete lines with one write. Replies leave in the order
the lines came, through an outbox of slots: a slot holding readings becomes ready only when
the pipeline has committed them, so the echo of a reading is its acknowledgement. Reading
pauses (never buffers without bound) while a token is looked up or the pipeline is full.
See docs/protocols.md for the exact protocol.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from functools import partial

from tinyboard.core.clock import DeviceClocks
from tinyboard.core.directory import DeviceDirectory
from tinyboard.core.ingest import is_reading, parse_line
from tinyboard.core.limits import NO_QUOTA, DeviceLimits, Quota
from tinyboard.core.models import Device, Reading
from tinyboard.core.pipeline import Pipeline
from tinyboard.errors import PayloadError, StorageError, StoreFullError
from tinyboard.registry import Registry
from tinyboard.transports.base import StreamProtocol, TransportServer
from tinyboard.transports.outbox import Slot

log = logging.getLogger(__name__)

CLOSE = "CLOSE SOCKET"
MAX_JOB = 100
"""Readings per pipeline job; a long burst is split so backpressure applies within it."""
TOO_LONG = None
READING_HELP = "send a number, key=value pairs or ThingsBoard JSON telemetry"
DISK_FULL = "ERROR the server's disk is full; send the reading again later\n"
NOT_STORED = " (NOT STORED: SEND TOKEN <ACCESS-TOKEN> FIRST)"
"""Appended to the echo of a reading sent before TOKEN, so that it cannot pass for the
echo of a stored reading (which is the line in CAPITALS and nothing else)."""


class LineServer(TransportServer):
    """Shared state of all line connections; call it to make a protocol per connection."""

    name = "line"

    def __init__(
        self,
        *,
        directory: DeviceDirectory,
        pipeline: Pipeline,
        registry: Registry,
        clocks: DeviceClocks,
        limits: DeviceLimits,
        max_line: int = 8192,
        idle_timeout: float = 900.0,
        packet_timeout: float = 60.0,
    ) -> None:
        super().__init__(registry)
        self.directory = directory
        self.pipeline = pipeline
        self.clocks = clocks
        self.limits = limits
        self.max_line = max_line
        self.idle_timeout = idle_timeout
        self.packet_timeout = packet_timeout

    def __call__(self) -> LineProtocol:
        return LineProtocol(self)


class LineProtocol(StreamProtocol):
    def __init__(self, server: LineServer) -> None:
        super().__init__(server)
        self._server = server
        self._device: Device | None = None
        self._buf = b""
        self._skipping = False
        self._blocked = ""
        """Why lines are held instead of processed: "token" lookup or full "pipeline"."""
        self._held: deque[bytes | None] = deque()
        self._eof = False
        self._loop = asyncio.get_running_loop()
        self._last_seen = self._loop.time()
        self._heard = False
        """Data arrived since the last sweep (the sweep keeps the time: no clock read per read)."""
        self._partial_since = 0.0
        """The sweep that first saw the unfinished line in `_buf` (or a too-long one being
        skipped); 0: none."""

    # -- asyncio callbacks ---------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        client = self._client
        assert client is not None
        client.bytes_in += len(data)
        self._heard = True
        if self._done:
            return
        if self._skipping:
            newline = data.find(b"\n")
            if newline < 0:
                return
            data = data[newline + 1 :]
            self._skipping = False
            self._partial_since = 0.0
        buf = self._buf + data if self._buf else data
        lines: list[bytes | None] = buf.split(b"\n")  # type: ignore[assignment]
        rest = lines.pop()
        assert rest is not None
        if len(rest) > self._server.max_line:
            lines.append(TOO_LONG)
            self._skipping = True
            rest = b""
        self._buf = rest
        if lines:  # the unfinished line is finished; a new one's clock starts at the sweep
            self._partial_since = 0.0
        client.messages_in += len(lines)
        self._feed(lines)

    def eof_received(self) -> bool:
        self._eof = True
        if self._buf and not self._done:
            last, self._buf = self._buf, b""
            self._feed([last])
        self._close_if_finished()
        return True

    # -- line handling -------------------------------------------------------------------
    def _feed(self, lines: list[bytes | None]) -> None:
        if self._blocked:
            self._held.extend(lines)
        else:
            self._process(iter(lines))

    def _process(self, pending: Iterator[bytes | None]) -> None:
        """Answer lines in order until they run out or one must wait (token, full queue);
        a device's lines are counted against its rate limits as one read."""
        device = self._device
        if device is None:
            self._answer(pending, None, NO_QUOTA)
            return
        server = self._server
        server.clocks.tick()
        quota = server.limits.quota(device.key, self._loop.time())
        try:
            self._answer(pending, device, quota)
        finally:
            quota.spend()

    def _answer(self, pending: Iterator[bytes | None], device: Device | None, quota: Quota) -> None:
        server = self._server
        max_line = server.max_line
        room = 0  # stamps these lines may still take before the clock is looked at again
        replies: list[str] = []
        readings: list[Reading] = []
        for line in pending:
            if line is TOO_LONG or len(line) > max_line:
                replies.append(
                    f"ERROR line too long (the limit is {max_line} bytes); send shorter lines\n"
                )
                continue
            try:
                text = (line[:-1] if line[-1:] == b"\r" else line).decode()
            except UnicodeDecodeError:
                replies.append("ERROR invalid UTF-8; send text encoded as UTF-8\n")
                continue
            if CLOSE in text:
                replies.append(text.upper() + "\n")
                self._done = True
                self._emit(replies, readings, close=True)
                return
            if text[:6].upper() in ("TOKEN ", "TOKEN"):
                self._emit(replies, readings)
                self._identify(text[6:].strip(), pending)
                return
            stripped = text.strip()
            if device is None or not stripped:  # chat, or an empty line: nothing is stored
                replies.append(_chat_echo(text, stripped))
                continue
            if room <= 0:
                if self._clock_ahead(device, replies, readings, line, pending):
                    return
                room = server.clocks.room(device.key)
            room -= 1
            refusal = self._reading(device, stripped, readings, quota)
            if refusal:
                replies.append(refusal)
                continue
            replies.append(text.upper() + "\n")
            if len(readings) >= MAX_JOB:
                has_room = self._emit(replies, readings)
                replies, readings = [], []
                if not has_room:
                    self._wait_for_space(pending)
                    return
        if not self._emit(replies, readings):
            self._wait_for_space(pending)

    def _clock_ahead(
        self,
        device: Device,
        replies: list[str],
        readings: list[Reading],
        line: bytes,
        pending: Iterator[bytes | None],
    ) -> bool:
        """At its lead bound, the device's clock holds this line and the rest (core/clock.py):
        send what is answered so far and wait for the wall clock, or for pipeline room."""
        wait_ms = self._server.clocks.wait_ms(device.key)
        if not wait_ms:
            return False
        rest = itertools.chain([line], pending)
        if self._emit(replies, readings):
            self._wait_for_clock(wait_ms, rest)
        else:  # the clock is checked again once there is room
            self._wait_for_space(rest)
        return True

    def _reading(self, device: Device, text: str, readings: list[Reading], quota: Quota) -> str:
        """Add the line's readings to `readings`; or the ERROR reply that refuses them."""
        server = self._server
        try:
            parsed = parse_line(text, device.key, server.clocks)
        except PayloadError as exc:
            return f"ERROR {exc}; {READING_HELP}\n"
        if not (quota.message() and quota.telemetry_message(len(parsed))):
            return (
                f"ERROR too many readings: this device may send {server.limits.describe()}"
                "; send this one again later\n"
            )
        readings += parsed
        return ""

    def _emit(self, replies: list[str], readings: list[Reading], close: bool = False) -> bool:
        """Send or queue replies; readings go to the pipeline. False: the pipeline is full."""
        if not replies:
            return True
        slot = Slot("".join(replies).encode(), not readings, len(replies), close)
        self._out.put(slot)
        if readings:
            return self._server.pipeline.submit(readings, partial(self._committed, slot))
        return True

    def _committed(self, slot: Slot, error: BaseException | None) -> None:
        if isinstance(error, StoreFullError):  # the operator's message is for the log
            slot.data = DISK_FULL.encode() * slot.count
        elif error is not None:
            reply = f"ERROR could not store the reading ({error}); send it again\n"
            slot.data = reply.encode() * slot.count
        self._out.ready(slot)
        self._close_if_finished()

    def _close_if_finished(self) -> None:
        if self._eof and not (self._out or self._blocked or self._held) and self._transport:
            self._transport.close()

    # -- waiting: lines are held, reading pauses, nothing is dropped ----------------------
    def _block(self, reason: str, rest: Iterable[bytes | None]) -> None:
        self._blocked = reason
        self._held.extend(rest)
        self.pause("blocked")

    def _unblock(self) -> None:
        self._blocked = ""
        self.resume("blocked")
        held = list(self._held)
        self._held.clear()
        if held and not self._done:
            self._process(iter(held))
        self._close_if_finished()

    def _wait_for_space(self, rest: Iterable[bytes | None]) -> None:
        self._block("pipeline", rest)
        self._server.pipeline.when_space(self._unblock)

    def _wait_for_clock(self, wait_ms: int, rest: Iterable[bytes | None]) -> None:
        """The device's server clock is as far ahead as allowed: read again once the wall
        clock has caught up (core/clock.py)."""
        self._block("clock", rest)
        self._loop.call_later(wait_ms / 1000, self._unblock)

    # -- deadlines (one sweep of the server, not a timer per connection) -----------------
    def check_alive(self, now: float) -> None:
        server = self._server
        if self._done:
            return
        waiting_on_us = bool(self._blocked or self._out)
        if self._heard or waiting_on_us:
            self._heard, self._last_seen = False, now
        if waiting_on_us or not (self._buf or self._skipping):
            self._partial_since = 0.0
        elif not self._partial_since:
            self._partial_since = now
        if waiting_on_us:
            return
        if self._partial_since and now - self._partial_since > server.packet_timeout:
            why = f"a line stayed unfinished for {server.packet_timeout:g} s"
        elif server.idle_timeout and now - self._last_seen > server.idle_timeout:
            why = f"nothing arrived for {server.idle_timeout:g} s"
        else:
            return
        log.info("line client %s: %s; closing", self._peer, why)
        self._done = True
        self._out.put(Slot(f"ERROR {why}; closing (connect again)\n".encode(), True, 1, True))

    # -- device identification -----------------------------------------------------------
    def _identify(self, token: str, rest: Iterable[bytes | None]) -> None:
        slot = Slot(b"", ready=False)
        self._out.put(slot)
        self._block("token", rest)
        self._server.spawn(self._lookup(token, slot))

    async def _lookup(self, token: str, slot: Slot) -> None:
        try:
            device = await self._server.directory.by_token(token) if token else None
        except StorageError as exc:
            log.error("token lookup failed: %s", exc)
            reply = "ERROR could not check the token right now; send TOKEN again\n"
        else:
            if device is None:
                reply = _unknown_token(token)
            else:
                self._device = device
                assert self._client is not None
                self._client.device = device
                reply = f"OK {device.name}\n"
        slot.data = reply.encode()
        self._out.ready(slot)
        self._unblock()


def _unknown_token(token: str) -> str:
    if token.startswith("<") and token.endswith(">"):  # copied from `TOKEN <access-token>`
        return "ERROR unknown token: send the token itself, without < and >\n"
    return (
        "ERROR unknown token: `tinyboard device token NAME` prints a device's token, "
        "`tinyboard device add NAME` creates a device\n"
    )


def _chat_echo(text: str, stripped: str) -> str:
    """The reply to a line that stores nothing: the line in CAPITALS (the course's chat),
    marked when it is written as a reading, so it cannot pass for a stored one's echo."""
    if stripped and is_reading(stripped):
        return text.upper() + NOT_STORED + "\n"
    return text.upper() + "\n"
