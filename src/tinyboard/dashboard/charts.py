"""What a chart shows, as plain data: the time window of a range, the bucket size that keeps
a series under `MAX_POINTS`, the folding of live readings into the same buckets, and the
ECharts options (with the browser-side script that moves a live chart's window).

No NiceGUI here, so all of it is tested without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

import orjson

from tinyboard.dashboard.units import KeyUnit

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
    name: str = ""
    """The preset's name (`1 h`), empty for a custom range."""

    @property
    def interval(self) -> int:
        return max(1, -(-(self.end_ts - self.start_ts) // MAX_POINTS))

    def describe(self, zone: tzinfo) -> str:
        """'in the last 1 h', or 'between 2026-12-01 10:00 and 2026-12-01 12:00'."""
        if self.name:
            return f"in the last {self.name}"
        start, end = (
            datetime.fromtimestamp(ts / 1000, zone).strftime("%Y-%m-%d %H:%M")
            for ts in (self.start_ts, self.end_ts)
        )
        return f"between {start} and {end}"

    def bucket_middle(self, ts: int) -> int:
        """Where the database reports the bucket holding `ts` (ThingsBoard: its middle)."""
        interval = self.interval
        first = self.start_ts + (ts - self.start_ts) // interval * interval
        return first + interval // 2


def preset(name: str, now_ms: int) -> Window:
    return Window(now_ms - RANGES[name], now_ms + 1, live=True, name=name)


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


MARKERS_UP_TO = 50
"""A series of at most this many points is drawn with a marker on each point: one reading
alone would otherwise be invisible (a line needs two points), and 50 markers of 4 px stay
apart (about 6 px) even on a phone's 300 px wide plot. More points draw the line only."""

MARKER, LONE = 4, 8
"""Marker sizes in px: on each of a few points, and on a reading alone in its range."""

INK = "tinyboardInk"
"""The page's JS function (CHART_JS) that answers a chart colour for light or dark mode."""


def _ink(part: str) -> dict[str, str]:
    # a NiceGUI dynamic property: evaluated in the browser each time the options are applied
    return {":color": f"{INK}('{part}')"}


def _axis_style(**label: Any) -> dict[str, Any]:
    return {
        "axisLabel": {"hideOverlap": True, **label, **_ink("text")},
        "axisLine": {"lineStyle": _ink("axis")},
        "splitLine": {"lineStyle": _ink("split")},
    }


def markers(points: int) -> dict[str, Any]:
    """A marker on each point of a short series (a lone reading gets a bigger one); CHART_JS
    applies the same rule to live series."""
    return {"showSymbol": points <= MARKERS_UP_TO, "symbolSize": MARKER if points > 1 else LONE}


def value_formatter(unit: KeyUnit) -> str:
    """JS for the tooltip's value: rounded to the key's decimals (else 6 significant digits:
    the database's averages carry more than any sensor measured), then the unit."""
    digits = f"v.toFixed({unit.decimals})" if unit.decimals is not None else "+v.toPrecision(6)"
    suffix = orjson.dumps(f" {unit.units}" if unit.units else "").decode()  # a JS string
    return f"(v) => typeof v === 'number' ? {digits} + {suffix} : v"


def chart_options(key: str, data: list[list[Any]], window: Window, unit: KeyUnit) -> dict[str, Any]:
    """A line chart of `data` over exactly `window` (not the data's own extent), sized to
    keep its labels apart on a phone and coloured by the page's light or dark mode."""
    title = f"{key} ({unit.units})" if unit.units else key
    return {
        "animation": False,
        "title": {"text": title, "textStyle": {"fontSize": 14, **_ink("text")}},
        "grid": {"left": 8, "right": 16, "top": 40, "bottom": 4, "containLabel": True},
        "tooltip": {
            "trigger": "axis",
            ":valueFormatter": value_formatter(unit),
            ":backgroundColor": f"{INK}('tip')",
            "textStyle": _ink("text"),
        },
        "xAxis": {
            "type": "time",
            "min": window.start_ts,
            "max": window.end_ts,
            "splitNumber": 4,
            # labels 14 px below the axis, not 8: clear of the value axis's lowest label
            # (it reaches 7 px below) when a time label sits near the left end
            **_axis_style(margin=14),
        },
        "yAxis": {"type": "value", "scale": True, "splitNumber": 4, **_axis_style()},
        "series": [
            {
                "type": "line",
                "name": key,
                "data": data,
                **markers(len(data)),
            }
        ],
    }


CHART_JS = f"""<script>
window.{INK} = (part) => {{
  const dark = document.body.classList.contains('body--dark');
  const ink = dark
    ? {{text: '#e5e7eb', axis: '#9ca3af', split: '#374151', tip: '#1f2937'}}
    : {{text: '#374151', axis: '#6b7280', split: '#e5e7eb', tip: '#ffffff'}};
  return ink[part];
}};
window.tinyboardColors = () => {{
  const ink = window.{INK};
  const axis = {{axisLabel: {{color: ink('text')}}, axisLine: {{lineStyle: {{color: ink('axis')}}}},
                splitLine: {{lineStyle: {{color: ink('split')}}}}}};
  return {{title: {{textStyle: {{color: ink('text')}}}}, xAxis: axis, yAxis: axis,
          tooltip: {{backgroundColor: ink('tip'), textStyle: {{color: ink('text')}}}}}};
}};
window.tinyboardView = (id, points, min, max) => {{
  const el = getElement(id);
  if (!el || !el.chart) return;
  let data = el.chart.getOption().series[0].data;
  for (const p of points) {{
    const last = data[data.length - 1];
    if (last && last[0] === p[0]) data[data.length - 1] = p; else data.push(p);
  }}
  let drop = 0;
  while (drop < data.length && data[drop][0] < min) drop++;
  if (drop) data = data.slice(drop);
  el.chart.setOption({{
    xAxis: {{min: min, max: max}},
    series: [{{data: data, showSymbol: data.length <= {MARKERS_UP_TO},
               symbolSize: data.length > 1 ? {MARKER} : {LONE}}}],
  }});
}};
document.addEventListener('DOMContentLoaded', () => {{
  new MutationObserver(() => {{
    for (const node of document.querySelectorAll('.nicegui-echart')) {{
      getElement(node)?.chart?.setOption(window.tinyboardColors());
    }}
  }}).observe(document.body, {{attributes: true, attributeFilter: ['class']}});
}});
</script>"""
"""The device page's chart helpers. `tinyboardView` appends live points (only the new ones
cross the wire), drops those that left the window and moves it; the observer recolours
every chart when Quasar switches dark mode (it toggles `body--dark` on the body)."""
