"""Per-device rate limits, as ThingsBoard writes and announces them.

Strategy: a limit is ThingsBoard's text, comma-separated `capacity:seconds` pairs
("200:1,6000:60" = at most 200 a second and 6,000 a minute); each pair is a token bucket
that refills greedily (bucket4j's rule, which ThingsBoard uses), and a message passes only
if every bucket has room. Every message of a device takes one `messages` token; telemetry
also takes one `telemetry` token and one `datapoints` token per value. The buckets belong
to the device, not the connection: a device cannot reset them by reconnecting or by using
two transports at once. `getSessionLimits` answers with these same texts, so
ThingsBoard's SDK paces itself to what is enforced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tinyboard.errors import ConfigError, TinyboardError

OFF = ("", "off", "none", "0")


class OverLimit(TinyboardError):
    """A device is over its rate limit (HTTP 429 with Retry-After; MQTT: session ends)."""

    retry_after = 1


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A parsed ThingsBoard limit text."""

    text: str
    buckets: tuple[tuple[float, float], ...]
    """(capacity, refill per second) per bucket."""

    @classmethod
    def parse(cls, text: str, setting: str = "rate limit") -> RateLimit | None:
        """None when switched off ("", "off", "none", "0")."""
        text = text.strip()
        if text.lower() in OFF:
            return None
        pairs = []
        for part in text.split(","):
            capacity, sep, seconds = part.strip().partition(":")
            try:
                pair = (float(int(capacity)), float(int(seconds)))
            except ValueError:
                pair = (0.0, 0.0)
            if not sep or pair[0] < 1 or pair[1] < 1:
                raise ConfigError(
                    f"{setting} {text!r}: write capacity:seconds pairs, e.g. '200:1,6000:60'"
                    " (or 'off')"
                )
            pairs.append((pair[0], pair[0] / pair[1]))
        return cls(text, tuple(pairs))


class _Buckets:
    """One device's token buckets for one limit."""

    __slots__ = ("last", "tokens")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.tokens = [capacity for capacity, _ in limit.buckets]
        self.last = now

    def credit(self, limit: RateLimit, now: float) -> int:
        """Refill every bucket for the time passed; how many tokens all of them have."""
        elapsed = now - self.last
        if elapsed < 0:
            elapsed = 0.0
        self.last = now
        levels = [
            min(capacity, tokens + elapsed * rate)
            for tokens, (capacity, rate) in zip(self.tokens, limit.buckets, strict=True)
        ]
        self.tokens = levels
        return int(min(levels))

    def spend(self, n: int) -> None:
        self.tokens = [tokens - n for tokens in self.tokens]


UNLIMITED = 1 << 62


@dataclass(slots=True)
class Quota:
    """What one device may still send at one instant (one network read): counted down per
    message with integer arithmetic only, then spent on the buckets at once
    (`DeviceLimits.spend`). Exact: every message of a read arrives at the same time."""

    messages: int
    telemetry: int
    datapoints: int
    used: list[int]
    """Messages, telemetry messages and data points taken so far."""

    def message(self) -> bool:
        """Take one message; False: over the limit."""
        if self.used[0] >= self.messages:
            return False
        self.used[0] += 1
        return True

    def telemetry_message(self, datapoints: int) -> bool:
        """Take one telemetry message of `datapoints` values (after `message`). As in
        ThingsBoard's buckets, a message refused for its values still counts as one."""
        used = self.used
        if used[1] >= self.telemetry:
            return False
        used[1] += 1
        if used[2] + datapoints > self.datapoints:
            return False
        used[2] += datapoints
        return True


NO_QUOTA = Quota(0, 0, 0, [0, 0, 0])
"""Nothing may be sent (outside a transport's read, or before a connection is a device)."""


class DeviceLimits:
    """The rate limits of every device, shared by all transports."""

    def __init__(
        self,
        messages: RateLimit | None = None,
        telemetry: RateLimit | None = None,
        datapoints: RateLimit | None = None,
        *,
        max_payload: int = 65536,
    ) -> None:
        self.messages = messages
        self.telemetry = telemetry
        self.datapoints = datapoints
        self.max_payload = max_payload
        self._state: tuple[dict[int, _Buckets], ...] = ({}, {}, {})
        """Buckets per device, for messages, telemetry and data points."""

    def quota(self, device: int, now: float) -> Quota:
        """What `device` may send at `now` (monotonic seconds, e.g. the loop's time); pass
        it to `spend` before anything else can send for the device (no await between)."""
        limits = (self.messages, self.telemetry, self.datapoints)
        credits = [
            UNLIMITED if limit is None else _buckets(state, limit, device, now).credit(limit, now)
            for state, limit in zip(self._state, limits, strict=True)
        ]
        return Quota(credits[0], credits[1], credits[2], [0, 0, 0])

    def spend(self, device: int, quota: Quota) -> None:
        """Take what a quota handed out from the device's buckets."""
        for state, used in zip(self._state, quota.used, strict=True):
            if used:
                buckets = state.get(device)
                if buckets is not None:
                    buckets.spend(used)

    def allow(self, device: int, now: float) -> bool:
        """Count one message of `device` at `now`; False: over the limit, refuse it."""
        quota = self.quota(device, now)
        ok = quota.message()
        self.spend(device, quota)
        return ok

    def allow_telemetry(self, device: int, datapoints: int, now: float) -> bool:
        """Count one telemetry message with `datapoints` values (after `allow`)."""
        quota = self.quota(device, now)
        ok = quota.telemetry_message(datapoints)
        self.spend(device, quota)
        return ok

    def forget(self, device: int) -> None:
        for buckets in self._state:
            buckets.pop(device, None)

    def describe(self) -> str:
        """The limits in words, for error replies."""
        parts = [
            f"{name} {limit.text}"
            for name, limit in (
                ("messages", self.messages),
                ("telemetry messages", self.telemetry),
                ("data points", self.datapoints),
            )
            if limit is not None
        ]
        return ", ".join(parts) + " (count:seconds)" if parts else "none"

    def session_limits(self) -> dict[str, Any]:
        """ThingsBoard's `getSessionLimits` reply (null: unlimited)."""
        return {
            "maxPayloadSize": self.max_payload,
            "maxInflightMessages": 100,
            "rateLimits": {
                "messages": _text(self.messages),
                "telemetryMessages": _text(self.telemetry),
                "telemetryDataPoints": _text(self.datapoints),
            },
        }


def _buckets(state: dict[int, _Buckets], limit: RateLimit, device: int, now: float) -> _Buckets:
    buckets = state.get(device)
    if buckets is None:
        buckets = state[device] = _Buckets(limit, now)
    return buckets


def _text(limit: RateLimit | None) -> str | None:
    return None if limit is None else limit.text
