"""One simulated ESP8266 board: read the sensors every interval, send, and behave like the
firmware when the network or the server misbehaves.

Every reading carries the time it was measured (distinct per board). Readings go into a
bounded buffer first and leave it only once the server acknowledged them, so a board that
loses its connection keeps what it measured meanwhile (up to `BUFFER` readings, the oldest
dropped beyond that) and sends it, with the original timestamps, after it reconnects.
Reconnects back off exponentially (1 s doubling to 60 s, with jitter) so a restarted server
is not flooded.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tinyboard.sim.links import Link, LinkError, LinkFactory, Reading
from tinyboard.sim.sensors import Sensors

log = logging.getLogger(__name__)

BUFFER = 1000
BATCH = 50
"""Most buffered readings sent in one message after a reconnect."""
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
JITTER = 0.1
"""Each interval varies by up to ±10 %, so a fleet does not send in lock-step."""


@dataclass(slots=True)
class BoardStats:
    taken: int = 0
    acked: int = 0
    dropped: int = 0
    reconnects: int = 0
    failures: int = 0
    last_error: str = ""


@dataclass(slots=True)
class Board:
    name: str
    sensors: Sensors
    link_factory: LinkFactory | None = None
    """Makes a fresh connection each time the board (re)connects."""
    interval: float = 30.0
    jitter: float = JITTER
    seed: int = 0
    stats: BoardStats = field(default_factory=BoardStats)
    led: bool = False
    buffer: deque[Reading] = field(default_factory=lambda: deque(maxlen=BUFFER))
    _random: random.Random = field(init=False, repr=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    """Set when there is something to send."""
    _nap: asyncio.Future[None] | None = field(default=None, repr=False)
    """The wait between readings; a new interval ends it early so the new one applies."""
    _link: Link | None = field(default=None, repr=False)
    _in_flight: list[Reading] = field(default_factory=list, repr=False)
    _last_ts: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    # -- what the server can ask (shared attributes, RPC), as the firmware answers ----------
    def on_attributes(self, values: dict[str, Any]) -> None:
        interval = values.get("interval")
        if isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0:
            self.interval = float(interval)
            if self._nap is not None and not self._nap.done():
                self._nap.set_result(None)
        if isinstance(values.get("led"), bool):
            self.led = values["led"]

    def on_rpc(self, method: str, params: Any) -> Any:
        if method == "setLed":
            on = params.get("enabled") if isinstance(params, dict) else params
            self.led = bool(on)
            return {"led": self.led}
        if method == "getLed":
            return {"led": self.led}
        if method == "getReading":
            return self.sensors.read(time.time())
        return {"error": f"unknown method {method!r}; try setLed, getLed or getReading"}

    # -- the loop ---------------------------------------------------------------------------
    def take_reading(self, now: float) -> None:
        if len(self.buffer) == self.buffer.maxlen:
            oldest = self.buffer[0]
            if not any(oldest is r for r in self._in_flight):  # in flight: it may yet arrive
                self.stats.dropped += 1
        ts = max(int(now * 1000), self._last_ts + 1)  # distinct: never overwrite our own
        self._last_ts = ts
        self.buffer.append((ts, self.sensors.read(now)))
        self.stats.taken += 1

    async def run(self, until: float | None = None) -> None:
        """Measure and send until Unix time `until` (forever if None)."""
        sender = asyncio.get_running_loop().create_task(self._send_forever())
        sender.add_done_callback(self._sender_ended)
        try:
            while until is None or time.time() < until:
                self.take_reading(time.time())
                self._wake.set()
                spread = 1 + self._random.uniform(-self.jitter, self.jitter)
                await self._sleep(self.interval * spread, until)
        finally:
            await self._drain()
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            if self._link is not None:
                await self._link.close()

    def _sender_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s stopped sending", self.name, exc_info=task.exception())
            self.stats.last_error = f"sender crashed: {task.exception()!r}"

    async def _sleep(self, seconds: float, until: float | None) -> None:
        """A plain future and one timer: the simulator's hot path at high --rate, where
        wait_for and an Event cost more than the reading itself."""
        if until is not None:
            seconds = min(seconds, max(0.0, until - time.time()))
        loop = asyncio.get_running_loop()
        nap = self._nap = loop.create_future()
        timer = loop.call_later(seconds, _wake_up, nap)
        try:
            await nap
        finally:
            timer.cancel()

    async def _drain(self) -> None:
        """At the end of a run, a moment to deliver what is still buffered."""
        deadline = time.monotonic() + 5
        while self.buffer and self._link is not None and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.05)

    async def _send_forever(self) -> None:
        """Connect, send what is buffered, and after any failure wait (1 s, 2 s, 4 s ...
        up to a minute) before connecting again; the wait resets after a delivery."""
        backoff = FIRST_BACKOFF
        while True:
            try:
                if self._link is None:
                    self._link = await self._connect()
                if not self.buffer:
                    self._wake.clear()
                    await self._wake.wait()
                while self.buffer:
                    batch = [self.buffer[i] for i in range(min(BATCH, len(self.buffer)))]
                    self._in_flight = batch
                    await self._link.send(batch)
                    for reading in batch:  # acknowledged: now they may leave the buffer
                        if self.buffer and self.buffer[0] is reading:
                            self.buffer.popleft()
                    self.stats.acked += len(batch)
                    self._in_flight = []
                    backoff = FIRST_BACKOFF
            except LinkError as exc:
                self._failed(exc)
                if self._link is not None:
                    await self._link.close()
                    self._link = None
                self._in_flight = []
                await asyncio.sleep(backoff * (1 + self._random.uniform(0, JITTER)))
                backoff = min(backoff * 2, MAX_BACKOFF)
                self.stats.reconnects += 1

    async def _connect(self) -> Link:
        assert self.link_factory is not None, "give the board a link factory"
        link = self.link_factory()
        try:
            await link.connect()
        except LinkError:
            await link.close()
            raise
        return link

    def _failed(self, exc: LinkError) -> None:
        self.stats.failures += 1
        self.stats.last_error = str(exc)
        log.debug("%s: %s", self.name, exc)


def _wake_up(nap: asyncio.Future[None]) -> None:
    if not nap.done():
        nap.set_result(None)
