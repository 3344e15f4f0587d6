"""CSV export of a device's time series, shared by the REST API and the dashboard."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, tzinfo
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi.responses import StreamingResponse

from tinyboard.core.models import Device, TsValue
from tinyboard.errors import TinyboardError
from tinyboard.storage.base import Store
from tinyboard.web.models import as_text

EXPORT_PAGE = 5000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet reads a cell starting with one of these as a formula (OWASP's list)."""
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
"""A plain number literal: safe in any spreadsheet, so `-3.5` stays a number."""


HEADER = "ts,key,value,time\r\n"
"""`ts` is Unix ms; `time` the same instant in ISO 8601 with its offset, in the asked zone.
`time` comes last so scripts written for `ts,key,value` keep reading the same columns."""


def time_zone(name: str | None) -> tzinfo:
    """The zone of the `time` column: an IANA name (`Asia/Kolkata`), UTC when not given."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TinyboardError(
            f"unknown time zone {name!r}: give an IANA name such as Europe/Berlin, "
            "Asia/Kolkata or UTC"
        ) from None


def csv_export(
    store: Store,
    device: Device,
    keys: list[str] | None,
    start_ts: int,
    end_ts: int,
    zone: tzinfo = UTC,
) -> StreamingResponse:
    """Points in [start_ts, end_ts) as `ts,key,value,time` rows, streamed in pages so a year
    of data never sits in memory. The REST export and the dashboard's CSV button both use it."""

    async def rows() -> AsyncIterator[str]:
        yield HEADER
        for key in keys or await store.ts_keys(device.key):
            async for points in _pages(store, device.key, key, start_ts, end_ts):
                yield _csv_rows(key, points, zone)

    return StreamingResponse(
        rows(),
        media_type="text/csv",
        headers={"Content-Disposition": attachment(f"{device.name}.csv")},
    )


async def _pages(
    store: Store, device_key: int, key: str, start_ts: int, end_ts: int
) -> AsyncIterator[list[TsValue]]:
    start = start_ts
    while True:
        points = await store.history(
            device_key, key, start_ts=start, end_ts=end_ts, limit=EXPORT_PAGE, descending=False
        )
        if points:
            yield points
        if len(points) < EXPORT_PAGE:
            return
        start = points[-1][0] + 1


def _csv_rows(key: str, points: list[TsValue], zone: tzinfo) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    cell = csv_cell(key)
    writer.writerows(
        (ts, cell, csv_cell(as_text(value)), iso_time(ts, zone)) for ts, value in points
    )
    return buf.getvalue()


def iso_time(ts: int, zone: tzinfo) -> str:
    """`2026-12-01T17:09:02.123+05:30`: what a spreadsheet or pandas reads as a time."""
    return datetime.fromtimestamp(ts / 1000, zone).isoformat(timespec="milliseconds")


def csv_cell(text: str) -> str:
    """`text` as a CSV cell a spreadsheet shows, never runs: keys and values come from
    devices, and `=HYPERLINK(...)` or `@SUM(...)` would be evaluated when the file is opened.
    OWASP's fix: a leading single quote makes the cell text. Numbers are left alone."""
    if text.startswith(FORMULA_STARTS) and not NUMBER.fullmatch(text):
        return "'" + text
    return text


def attachment(filename: str) -> str:
    """A Content-Disposition for any device name: an ASCII fallback plus RFC 6266's UTF-8
    form (a raw non-Latin-1 or control character in a header would fail the response)."""
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
