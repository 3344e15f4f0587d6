"""Server timestamps for readings a device did not stamp itself.

Strategy: the store keeps one row per (device, key, ts), so two readings of one device and
key that get the same `ts` are one row, and the later one replaces the earlier. A reading
the device stamped itself keeps ThingsBoard's rule (same `ts`: last write wins). A reading
the server stamps must never replace another, so:

- one clock per device per process, shared by every connection and transport of that
  device: each stamp is later than the last one it handed out (`max(now, last + 1)`);
- a stamp never runs more than `max_lead_ms` ahead of the wall clock. A device sending
  faster than one unstamped message per millisecond is held back (`wait_ms` says for how
  long; the transports stop reading it meanwhile) instead of being stamped into the future;
- after a restart each device's clock resumes past its newest stored reading when that one
  is later than now (`resume`, fed by the store at start-up): a stamp the previous process
  handed out ahead of real time, and acknowledged, is in the store, so it is never reused.
  The others start at the wall clock: no stamp runs ahead without a reason;
- a device-stamped reading close to now (at most `max_lead_ms` ahead) moves the device's
  clock past it, so a later server stamp does not land on it;
- with several nodes (issue 17), node `i` of `n` hands out only stamps with
  `ts % n == i`: no two nodes can give the same stamp to one device;
- a device's clock is forgotten when the device is deleted (`forget`, on every path and
  whether or not it is connected), and once its last stamp is `IDLE_MS` behind the wall
  clock: its next stamp would be the wall clock's anyway, as after a restart. So memory is
  bounded by the devices heard from lately, whatever transport they use.

See docs/protocols.md, "Timestamps".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

IDLE_MS = 60_000
"""How far behind the wall clock a device's last stamp may fall before it is forgotten."""


def wall_ms() -> int:
    return int(time.time() * 1000)


class DeviceClocks:
    """Strictly increasing server time, per device, bounded ahead of the wall clock."""

    __slots__ = (
        "_idle_ms",
        "_last",
        "_next_sweep",
        "_node",
        "_nodes",
        "_now",
        "max_lead_ms",
        "now_ms",
    )

    def __init__(
        self,
        max_lead_ms: int = 1000,
        *,
        node: int = 0,
        nodes: int = 1,
        now: Callable[[], int] = wall_ms,
        idle_ms: int = IDLE_MS,
    ) -> None:
        if max_lead_ms < 1:
            raise ValueError("max_lead_ms must be at least 1 ms")
        if not 0 <= node < nodes:
            raise ValueError(f"node {node} is not one of {nodes} nodes")
        if max_lead_ms < nodes:
            raise ValueError(f"max_lead_ms must be at least the number of nodes ({nodes})")
        self.max_lead_ms = max_lead_ms
        self._node = node
        self._nodes = nodes
        self._now = now
        self._idle_ms = idle_ms
        self._last: dict[int, int] = {}
        self.now_ms = now()
        """The wall clock as of the last `tick`: one clock read per network read, not one
        per message (a stale value only makes stamps later and waits longer, never equal)."""
        self._next_sweep = self.now_ms + idle_ms

    def resume(self, newest: dict[int, int]) -> None:
        """Start past what the store holds: `newest` is the ts of each device's newest
        stored reading (those at or after now are enough: `Store.newest_stamps(now)`). One
        further ahead than the lead bound was stamped by the device and is not followed."""
        limit = self.tick() + self.max_lead_ms
        for device, ts in newest.items():
            if ts <= limit and ts > self._last.get(device, -1):
                self._last[device] = ts

    def tick(self) -> int:
        """Read the wall clock; transports call it once per network read or request."""
        self.now_ms = now = self._now()
        if now >= self._next_sweep:
            self._forget_idle(now)
        return now

    def _forget_idle(self, now: int) -> None:
        """Drop the clocks whose last stamp is `idle_ms` behind `now` (once per `idle_ms`):
        without an entry a device is stamped `now`, which is what its entry would give."""
        self._next_sweep = now + self._idle_ms
        horizon = now - self._idle_ms
        self._last = {device: ts for device, ts in self._last.items() if ts >= horizon}

    def __len__(self) -> int:
        """How many devices' clocks are kept."""
        return len(self._last)

    def stamp(self, device: int) -> int:
        """The next server timestamp for `device` (call `wait_ms` first to stay in bounds)."""
        candidate = max(self.now_ms, self._last.get(device, -1) + 1)
        nodes = self._nodes
        if nodes > 1:
            candidate += (self._node - candidate) % nodes
        self._last[device] = candidate
        return candidate

    def wait_ms(self, device: int) -> int:
        """Milliseconds until `device` may be stamped again without passing the lead bound;
        0 means now."""
        last = self._last.get(device)
        if last is None:
            return 0
        ahead = last + self._nodes - self.now_ms - self.max_lead_ms
        return ahead if ahead > 0 else 0

    def room(self, device: int) -> int:
        """How many more stamps `device` may take now without passing the lead bound (the
        transports count down from it instead of asking before every message)."""
        last = max(self._last.get(device, -1), self.now_ms - 1)
        return max(0, (self.now_ms + self.max_lead_ms - last) // self._nodes)

    def saw(self, device: int, ts: int) -> None:
        """A device stamped a reading `ts` itself: keep later server stamps off it."""
        if self._last.get(device, -1) < ts <= self.now_ms + self.max_lead_ms:
            self._last[device] = ts

    def forget(self, device: int) -> None:
        """The device was deleted (its key is never reused)."""
        self._last.pop(device, None)


async def caught_up(clocks: DeviceClocks, device: int) -> None:
    """Wait while `device`'s clock is at its lead bound: what a request without a socket to
    pause (HTTP, REST) does instead of being stamped into the future."""
    clocks.tick()
    while wait_ms := clocks.wait_ms(device):
        await asyncio.sleep(wait_ms / 1000)
        clocks.tick()
