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

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tinyboard.errors import ConfigError

OFF = ("", "off", "none", "0")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A parsed ThingsBoard limit text."""

    text: str
    pairs: tuple[tuple[float, float], ...]
    """(capacity, seconds) per bucket."""

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
            pairs.append(pair)
        return cls(text, tuple(pairs))


class _Buckets:
    """One device's token buckets for one limit."""

    __slots__ = ("last", "tokens")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.tokens = [capacity for capacity, _ in limit.pairs]
        self.last = now

    def take(self, limit: RateLimit, n: int, now: float) -> bool:
        elapsed = now - self.last
        self.last = now
        tokens = self.tokens
        ok = True
        for i, (capacity, seconds) in enumerate(limit.pairs):
            level = min(capacity, tokens[i] + elapsed * capacity / seconds)
            tokens[i] = level
            ok = ok and level >= n
        if ok:
            for i in range(len(tokens)):
                tokens[i] -= n
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
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.messages = messages
        self.telemetry = telemetry
        self.datapoints = datapoints
        self.max_payload = max_payload
        self._now = now
        self._state: dict[tuple[int, int], _Buckets] = {}

    def allow(self, device: int) -> bool:
        """Count one message of `device`; False: over the limit, refuse it."""
        return self.messages is None or self._take(0, self.messages, device, 1)

    def allow_telemetry(self, device: int, datapoints: int) -> bool:
        """Count one telemetry message with `datapoints` values (after `allow`)."""
        if self.telemetry is not None and not self._take(1, self.telemetry, device, 1):
            return False
        return self.datapoints is None or self._take(2, self.datapoints, device, datapoints)

    def _take(self, which: int, limit: RateLimit, device: int, n: int) -> bool:
        now = self._now()
        buckets = self._state.get((device, which))
        if buckets is None:
            buckets = self._state[(device, which)] = _Buckets(limit, now)
        return buckets.take(limit, n, now)

    def forget(self, device: int) -> None:
        for which in range(3):
            self._state.pop((device, which), None)

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


def _text(limit: RateLimit | None) -> str | None:
    return None if limit is None else limit.text
