"""CSV export of a device's time series, shared by the REST API and the dashboard."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from urllib.parse import quote

from fastapi.responses import StreamingResponse

from tinyboard.core.models import Device
from tinyboard.storage.base import Store
from tinyboard.web.models import as_text

EXPORT_PAGE = 5000


def csv_export(
    store: Store, device: Device, keys: list[str] | None, start_ts: int, end_ts: int
) -> StreamingResponse:
    """Points in [start_ts, end_ts) as `ts,key,value` rows, streamed in pages so a year of
    data never sits in memory."""

    async def rows() -> AsyncIterator[str]:
        yield "ts,key,value\r\n"
        for key in keys or await store.ts_keys(device.key):
            start = start_ts
            while True:
                points = await store.history(
                    device.key,
                    key,
                    start_ts=start,
                    end_ts=end_ts,
                    limit=EXPORT_PAGE,
                    descending=False,
                )
                if not points:
                    break
                buf = io.StringIO()
                writer = csv.writer(buf)
                for ts, value in points:
                    writer.writerow((ts, key, as_text(value)))
                yield buf.getvalue()
                if len(points) < EXPORT_PAGE:
                    break
                start = points[-1][0] + 1

    return StreamingResponse(
        rows(),
        media_type="text/csv",
        headers={"Content-Disposition": attachment(f"{device.name}.csv")},
    )


def attachment(filename: str) -> str:
    """A Content-Disposition for any device name: an ASCII fallback plus RFC 6266's UTF-8
    form (a raw non-Latin-1 or control character in a header would fail the response)."""
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
