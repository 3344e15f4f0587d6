"""What a chart shows, as plain data: the time window of a range, the bucket size that keeps
a series under `MAX_POINTS`, and the folding of live readings into the same buckets.

No NiceGUI here, so all of it is tested without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_POINTS = 2000
"""Most points per series sent to the browser; longer ranges are averaged by the database."""

RANGES: dict[str, int] = {
    "5 min": 5 * 60_000,
    "1 h": 3_600_000,
    "24 h": 86_400_000,
    "7 d": 7 * 86_400_000,
}
"""Preset ranges (ending now) and their length in ms."""
RANGE_PARAMS: dict[str, str] = {"5m": "5 min", "1h": "1 h", "24h": "24 h", "7d": "7 d"}
"""`?range=` values of the device page (bookmarkable) and the preset each opens."""


@dataclass(frozen=True, slots=True)
class Window:
    """[start_ts, end_ts) in Unix ms, cut into buckets of `interval` ms."""

    start_ts: int
    end_ts: int
    live: bool
    """True for the presets, which end now and take new points as they arrive."""

    @property
    def interval(self) -> int:
        return max(1, -(-(self.end_ts - self.start_ts) // MAX_POINTS))

    def bucket_middle(self, ts: int) -> int:
        """Where the database reports the bucket holding `ts` (ThingsBoard: its middle)."""
        interval = self.interval
        first = self.start_ts + (ts - self.start_ts) // interval * interval
        return first + interval // 2


def preset(name: str, now_ms: int) -> Window:
    return Window(now_ms - RANGES[name], now_ms + 1, live=True)


def custom(start_ts: int, end_ts: int) -> Window:
    if end_ts <= start_ts:
        raise ValueError("the end of the range must be after its start")
    return Window(start_ts, end_ts, live=False)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(slots=True)
class _Bucket:
    middle: int
    total: float = 0.0
    count: int = 0


@dataclass(slots=True)
class LiveFold:
    """Live readings of one key averaged into the window's buckets, so a 7-day chart fed
    50 points a second still holds ≤ MAX_POINTS: each flush sends the changed buckets, and
    the browser replaces its last point when the bucket is the same."""

    window: Window
    _open: _Bucket | None = None
    _changed: list[tuple[int, float]] = field(default_factory=list)

    def add(self, ts: int, value: float) -> None:
        middle = self.window.bucket_middle(ts)
        bucket = self._open
        if bucket is None or middle != bucket.middle:
            if bucket is not None and middle < bucket.middle:
                return  # a late point for a bucket already drawn: the chart keeps its average
            bucket = self._open = _Bucket(middle)
        bucket.total += value
        bucket.count += 1
        point = (middle, bucket.total / bucket.count)
        if self._changed and self._changed[-1][0] == middle:
            self._changed[-1] = point
        else:
            self._changed.append(point)

    def take(self) -> list[tuple[int, float]]:
        """Points changed since the last call, oldest first."""
        changed, self._changed = self._changed, []
        return changed
