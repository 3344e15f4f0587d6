"""How a page writes times: all in one zone, the browser's, and says which.

The zone comes from the `tinyboard_tz` cookie the browser sets (frame.TZ_SCRIPT). Cards and
tables are formatted here with it; charts are drawn by ECharts in the browser's local time,
which is the same zone. `zone_label` is the text that tells the user which zone that is.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

SHOWN = "%Y-%m-%d %H:%M:%S"
"""How cards and tables show a time: sortable, 24 h, no zone letters (the page names it)."""


def when(ts: int, zone: tzinfo) -> str:
    return datetime.fromtimestamp(ts / 1000, zone).strftime(SHOWN)


def zone_name(zone: tzinfo) -> str:
    """The IANA name (`Asia/Kolkata`), or `UTC`."""
    return zone.key if isinstance(zone, ZoneInfo) else "UTC"


def utc_offset(zone: tzinfo, ts_ms: int) -> str:
    """`UTC+05:30` at `ts_ms` (an offset changes with daylight saving time)."""
    offset = datetime.fromtimestamp(ts_ms / 1000, zone).strftime("%z")
    return f"UTC{offset[:3]}:{offset[3:]}"


def zone_label(zone: tzinfo, now_ms: int) -> str:
    """'Times in Asia/Kolkata (UTC+05:30)': said once on a page, above its first time."""
    return f"Times in {zone_name(zone)} ({utc_offset(zone, now_ms)})"
