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

    def take(self, limit: RateLimit, n: int, now: float) -> bool:
        """Refill every bucket for the time passed, then take `n` from each if all have it
        (written for speed: it runs for every message)."""
        elapsed = now - self.last
        if elapsed < 0:
            elapsed = 0.0
        self.last = now
        ok = True
        levels = []
        for tokens, (capacity, rate) in zip(self.tokens, limit.buckets, strict=True):
            level = tokens + elapsed * rate
            if level > capacity:  # noqa: PLR1730 - min() is a call, this runs per message
                level = capacity
            if level < n:
                ok = False
            levels.append(level)
        self.tokens = [level - n for level in levels] if ok else levels
        return ok


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

    def allow(self, device: int, now: float) -> bool:
        """Count one message of `device` at `now` (monotonic seconds, e.g. the loop's time);
        False: over the limit, refuse it."""
        return self.messages is None or _take(self._state[0], self.messages, device, 1, now)

    def allow_telemetry(self, device: int, datapoints: int, now: float) -> bool:
        """Count one telemetry message with `datapoints` values (after `allow`)."""
        state = self._state
        if self.telemetry is not None and not _take(state[1], self.telemetry, device, 1, now):
            return False
        return self.datapoints is None or _take(state[2], self.datapoints, device, datapoints, now)

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


def _take(state: dict[int, _Buckets], limit: RateLimit, device: int, n: int, now: float) -> bool:
    buckets = state.get(device)
    if buckets is None:
        buckets = state[device] = _Buckets(limit, now)
    return buckets.take(limit, n, now)


def _text(limit: RateLimit | None) -> str | None:
    return None if limit is None else limit.text
