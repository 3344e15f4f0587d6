"""MQTT 3.1.1 load generator worker for benchmarks/mqtt_ingest.py (one process of several).

A worker is started with multiprocessing ("spawn") and talks to its parent over a Pipe:

    parent -> worker   the Job (at start)
    worker -> parent   ("connected", {...})      every connection has its CONNACK
    parent -> worker   ("go", t_start, t_rec0, t_rec1)  (ingest) or ("close",) (idle)
    worker -> parent   ("done", {...})           results, see `Worker.results`

Times are `time.monotonic()` values, one clock for every process on the machine (Linux
CLOCK_MONOTONIC). The client side is written for speed, not generality: one uvloop event
loop, `asyncio.Protocol`, CONNECT and PUBLISH bytes built by hand from the MQTT 3.1.1 spec
(PUBLISH from a pre-encoded template: only the packet id and the `seq` digits change), and
PUBACKs parsed as 4-byte frames `0x40 0x02 <id>` with slice checks instead of a decoder.

Each connection keeps `window` QoS 1 PUBLISHes in flight: every PUBACK frees a slot that
the next PUBLISH fills, all PUBLISHes freed by one read going out in one write. Payload:
`{"temperature":21.5,"seq":         n}` (JSON allows the blanks; they keep every packet the
same length), n = 1, 2, 3 ... per connection, so after the run the stored `seq` values
show whether every acknowledged message is in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import resource
import signal
import sys
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any

TOPIC = b"v1/devices/me/telemetry"
PAYLOAD = b'{"temperature":21.5,"seq":%10d}'
CONNACK_OK = b"\x20\x02\x00\x00"
DISCONNECT = b"\xe0\x00"
MAX_ID = 65535
CONNECT_CONCURRENCY = 64
"""Connections being opened at once per worker (the server's listen backlog is ~100)."""
DRAIN_TIMEOUT = 10.0
"""Seconds to wait for the last PUBACKs after the measured window."""


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def connect_packet(client_id: str, username: str, keepalive: int) -> bytes:
    """MQTT 3.1.1 CONNECT: clean session, username flag, no password, no will."""
    variable = _string(b"MQTT") + b"\x04" + b"\x82" + keepalive.to_bytes(2, "big")
    payload = _string(client_id.encode()) + _string(username.encode())
    body = variable + payload
    return b"\x10" + _remaining_length(len(body)) + body


def publish_template() -> bytes:
    """PUBLISH QoS 1 to TOPIC; `template % (id_hi, id_lo, seq)` gives the packet."""
    body_len = 2 + len(TOPIC) + 2 + len(PAYLOAD % 0)
    head = b"\x32" + _remaining_length(body_len) + _string(TOPIC)
    return head.replace(b"%", b"%%") + b"%c%c" + PAYLOAD


TEMPLATE = publish_template()


@dataclass
class Job:
    mode: str  # "ingest" or "idle"
    host: str
    port: int
    tokens: list[str]
    client_prefix: str
    window: int = 10
    keepalive: int = 60
    connect_timeout: float = 120.0


@dataclass
class Stats:
    """Shared by the connections of one worker."""

    running: bool = False
    recording: bool = False
    acked_in_window: int = 0
    latencies: array[float] = field(default_factory=lambda: array("d"))
    errors: list[str] = field(default_factory=list)
    lost: int = 0
    pending: int = 0  # publishes sent and not yet acknowledged, all connections
    drained: asyncio.Event | None = None


class Publisher(asyncio.Protocol):
    """One device connection."""

    __slots__ = (
        "acked",
        "batches",
        "buf",
        "closing",
        "connack",
        "connect",
        "seq",
        "stats",
        "transport",
        "window",
    )

    def __init__(self, stats: Stats, connect: bytes, window: int) -> None:
        self.stats = stats
        self.connect = connect
        self.window = window
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buf = b""
        self.seq = 0  # publishes sent
        self.acked = 0  # PUBACKs received
        self.batches: deque[list[Any]] = deque()  # [send time, messages] per write
        self.closing = False

    # -- asyncio callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.connect)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        stats = self.stats
        if not self.closing:
            stats.lost += 1
        stats.pending -= self.seq - self.acked
        self.seq = self.acked
        if not self.connack.done():
            self.connack.set_exception(ConnectionError(f"connection lost before CONNACK: {exc}"))
        if stats.drained is not None and stats.pending <= 0:
            stats.drained.set()

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.connack.done():
            data = self._connack(data)
            if not data:
                return
        n, rest = divmod(len(data), 4)
        if rest:
            self.buf = data[-rest:]
            data = data[:-rest]
            if not n:
                return
        # n PUBACK frames: 0x40 0x02 id_hi id_lo, ids in the order the PUBLISHes were sent.
        last = ((self.acked + n - 1) % MAX_ID) + 1
        if (
            data[0::4].lstrip(b"\x40")
            or data[1::4].lstrip(b"\x02")
            or data[-2] << 8 | data[-1] != last
            or self.acked + n > self.seq
        ):
            self._fail(f"unexpected bytes from the server: {data[:16]!r}")
            return
        now = time.monotonic()
        self.acked += n
        stats = self.stats
        stats.pending -= n
        self._release(n, now, stats.recording)
        if stats.running:
            self.send(n, now)
        elif stats.pending <= 0 and stats.drained is not None:
            stats.drained.set()

    def _connack(self, data: bytes) -> bytes:
        """Wait for CONNACK; returns the bytes after it."""
        if len(data) < 4:
            self.buf = data
            return b""
        if data[:4] != CONNACK_OK:
            self.connack.set_exception(ConnectionError(f"CONNACK refused: {data[:4]!r}"))
            self.close()
            return b""
        self.connack.set_result(None)
        return data[4:]

    def _release(self, n: int, now: float, record: bool) -> None:
        """Take the n oldest in-flight messages off the send batches; in the measured
        window, count them and record their latencies."""
        batches = self.batches
        if record:
            self.stats.acked_in_window += n
        lat = self.stats.latencies
        while n:
            batch = batches[0]
            sent_at, count = batch
            if count <= n:
                batches.popleft()
                n -= count
            else:
                batch[1] = count - n
                count = n
                n = 0
            if record:
                lat.extend([now - sent_at] * count)

    # -- sending -------------------------------------------------------------------------
    def send(self, n: int, now: float) -> None:
        seq = self.seq
        template = TEMPLATE
        packets = []
        for s in range(seq + 1, seq + n + 1):
            pid = (s - 1) % MAX_ID + 1
            packets.append(template % (pid >> 8, pid & 0xFF, s))
        self.seq = seq + n
        self.stats.pending += n
        self.batches.append([now, n])
        self.transport.write(b"".join(packets))  # type: ignore[union-attr]

    def start(self) -> None:
        self.send(self.window, time.monotonic())

    def _fail(self, why: str) -> None:
        errors = self.stats.errors
        if len(errors) < 10:
            errors.append(why)
        self.close()

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            if self.connack.done() and not self.connack.exception():
                self.transport.write(DISCONNECT)
            self.transport.close()


# -- the worker process ------------------------------------------------------------------------
def _die_with_parent() -> None:
    """SIGTERM this process when its parent dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux") and (libc := ctypes.util.find_library("c")):
        ctypes.CDLL(libc).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def _recv(pipe: Pipe) -> Any:
    """The parent's next message, read in a thread so the event loop keeps running (the
    loop's own reader would make the pipe non-blocking, which breaks `pipe.send`)."""
    return await asyncio.get_running_loop().run_in_executor(None, pipe.recv)


async def _connect_all(job: Job, stats: Stats) -> list[Publisher]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[Publisher | None] = [None] * len(job.tokens)  # in the order of the tokens

    async def one(i: int, token: str) -> None:
        packet = connect_packet(f"{job.client_prefix}-{i}", token, job.keepalive)
        async with gate:
            _, client = await loop.create_connection(
                lambda: Publisher(stats, packet, job.window), job.host, job.port
            )
            clients[i] = client
            await client.connack

    try:
        await asyncio.wait_for(
            asyncio.gather(*(one(i, t) for i, t in enumerate(job.tokens))), job.connect_timeout
        )
    except BaseException:
        for c in clients:
            if c is not None:
                c.close()
        raise
    return [c for c in clients if c is not None]


async def _run(pipe: Pipe, job: Job) -> None:
    stats = Stats()
    loop = asyncio.get_running_loop()
    try:
        started = time.monotonic()
        clients = await _connect_all(job, stats)
    except Exception as exc:
        pipe.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    pipe.send(("connected", {"connections": len(clients), "seconds": time.monotonic() - started}))
    command = await _recv(pipe)
    result: dict[str, Any] = {}
    if command[0] == "go":
        _, t_start, t_rec0, t_rec1 = command
        result = await _ingest(loop, clients, stats, t_start, t_rec0, t_rec1)
    for c in clients:
        c.close()
    await asyncio.sleep(0.1)  # let the DISCONNECTs and FINs go out
    result["lost"] = stats.lost
    result["errors"] = stats.errors
    pipe.send(("done", result))


async def _ingest(
    loop: asyncio.AbstractEventLoop,
    clients: list[Publisher],
    stats: Stats,
    t_start: float,
    t_rec0: float,
    t_rec1: float,
) -> dict[str, Any]:
    cpu: dict[str, float] = {}
    ended = asyncio.Event()

    def begin() -> None:
        cpu["start"] = _cpu()
        stats.recording = True

    def end() -> None:
        stats.recording = False
        stats.running = False
        cpu["end"] = _cpu()
        ended.set()

    await asyncio.sleep(max(0.0, t_start - time.monotonic()))
    stats.running = True
    stats.drained = asyncio.Event()
    for c in clients:
        c.start()
    loop.call_later(max(0.0, t_rec0 - time.monotonic()), begin)
    loop.call_later(max(0.0, t_rec1 - time.monotonic()), end)
    await ended.wait()
    drained = True
    if stats.pending > 0:
        try:
            await asyncio.wait_for(stats.drained.wait(), DRAIN_TIMEOUT)
        except TimeoutError:
            drained = False
    return {
        "acked_in_window": stats.acked_in_window,
        "latencies": stats.latencies.tobytes(),
        "cpu": cpu["end"] - cpu.get("start", cpu["end"]),
        "acked": [c.acked for c in clients],  # in the order of Job.tokens
        "sent": [c.seq for c in clients],
        "drained": drained,
    }


def worker_main(pipe: Pipe) -> None:
    """Entry point of a worker process (multiprocessing target)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl+C and stops us
    import uvloop

    try:
        job: Job = pipe.recv()
        _raise_fd_limit(len(job.tokens) + 256)
        uvloop.run(_run(pipe, job))
    except (EOFError, BrokenPipeError):  # the parent is gone
        pass
    finally:
        with contextlib.suppress(OSError):
            pipe.close()
