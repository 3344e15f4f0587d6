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

    __slots__ = ("last", "owed", "tokens")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.tokens = [capacity for capacity, _ in limit.buckets]
        self.last = now
        self.owed = 0
        """Tokens taken at `last` and not yet subtracted (`Quota`: an int add per read)."""

    def credit(self, limit: RateLimit, now: float) -> int:
        """Subtract what was taken at `last`, refill every bucket for the time since; how
        many tokens all of them have now. (A plain loop: it runs once per network read.)"""
        elapsed = now - self.last
        if elapsed < 0:
            elapsed = 0.0
        self.last = now
        owed, self.owed = self.owed, 0
        tokens = self.tokens
        least = float(UNLIMITED)
        for i, (capacity, rate) in enumerate(limit.buckets):
            level = tokens[i] - owed + elapsed * rate
            if level > capacity:  # noqa: PLR1730 - min() is a call
                level = capacity
            tokens[i] = level
            if level < least:  # noqa: PLR1730
                least = level
        return int(least)


UNLIMITED = 1 << 62


@dataclass(slots=True)
class Quota:
    """What one device may still send at one instant (one network read): counted down per
    message with integer arithmetic only; `spend` then owes the buckets what was taken.
    Exact: every message of a read arrives at the same time, the time of the credit."""

    messages: int
    telemetry: int
    datapoints: int
    buckets: tuple[_Buckets | None, _Buckets | None, _Buckets | None] = (None, None, None)
    used_messages: int = 0
    used_telemetry: int = 0
    used_datapoints: int = 0

    def message(self) -> bool:
        """Take one message; False: over the limit."""
        if self.used_messages >= self.messages:
            return False
        self.used_messages += 1
        return True

    def telemetry_message(self, datapoints: int) -> bool:
        """Take one telemetry message of `datapoints` values (after `message`). As in
        ThingsBoard's buckets, a message refused for its values still counts as one."""
        if self.used_telemetry >= self.telemetry:
            return False
        self.used_telemetry += 1
        if self.used_datapoints + datapoints > self.datapoints:
            return False
        self.used_datapoints += datapoints
        return True

    def spend(self) -> None:
        """Owe the device's buckets what this quota handed out (call it before anything
        else can send for the device: no await between `DeviceLimits.quota` and this)."""
        messages, telemetry, datapoints = self.buckets
        if messages is not None:
            messages.owed += self.used_messages
        if telemetry is not None:
            telemetry.owed += self.used_telemetry
        if datapoints is not None:
            datapoints.owed += self.used_datapoints
        self.used_messages = self.used_telemetry = self.used_datapoints = 0


NO_QUOTA = Quota(0, 0, 0)
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
        """What `device` may send at `now` (monotonic seconds, e.g. the loop's time); call
        its `spend` when the read is handled. Straight-line code: it runs once per read."""
        state = self._state
        messages = telemetry = datapoints = UNLIMITED
        m = t = d = None
        if self.messages is not None:
            m = state[0].get(device) or _new(state[0], device, self.messages, now)
            messages = m.credit(self.messages, now)
        if self.telemetry is not None:
            t = state[1].get(device) or _new(state[1], device, self.telemetry, now)
            telemetry = t.credit(self.telemetry, now)
        if self.datapoints is not None:
            d = state[2].get(device) or _new(state[2], device, self.datapoints, now)
            datapoints = d.credit(self.datapoints, now)
        return Quota(messages, telemetry, datapoints, (m, t, d))

    def allow(self, device: int, now: float) -> bool:
        """Count one message of `device` at `now`; False: over the limit, refuse it."""
        quota = self.quota(device, now)
        ok = quota.message()
        quota.spend()
        return ok

    def allow_telemetry(self, device: int, datapoints: int, now: float) -> bool:
        """Count one telemetry message with `datapoints` values (after `allow`)."""
        quota = self.quota(device, now)
        ok = quota.telemetry_message(datapoints)
        quota.spend()
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


def _new(state: dict[int, _Buckets], device: int, limit: RateLimit, now: float) -> _Buckets:
    buckets = state[device] = _Buckets(limit, now)
    return buckets


def _text(limit: RateLimit | None) -> str | None:
    return None if limit is None else limit.text
