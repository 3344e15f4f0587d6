"""SQLite and PostgreSQL side by side, in one run.

1. Ingest: `Store.write` of 1,000,000 points in batches of 10,000 (what the group-commit
   writer does under load), in this process.
2. History: 1,000,000 points of one key → 1,000 AVG buckets (`Store.aggregate`), median of
   `--queries` runs.
3. End to end: `tinyboard serve --no-dashboard` on each store; 100 MQTT devices publish QoS 1
   as fast as they are acknowledged (8 in flight each) for `--seconds`.

The ratio printed is PostgreSQL / SQLite. PostgreSQL is this machine's (127.0.0.1:5432), a
fresh schema per run, dropped afterwards.

    .venv/bin/python benchmarks/storage.py [--points 1000000 --seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alarms import closed_loop
from common import Tinyboard, revision, stop_all_children
from tinyboard.storage import open_store
from tinyboard.storage.base import Store

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
BATCH = 10_000
DEVICES = 100


async def store_figures(url: str, points: int, queries: int) -> tuple[float, float]:
    """(points written per second, median ms of the 1,000-bucket query)."""
    store: Store = open_store(url)
    await store.open()
    try:
        device = await store.create_device("bench")
        start_ts = 1_700_000_000_000
        started = time.perf_counter()
        for first in range(0, points, BATCH):
            batch = [
                (device.key, "temperature", start_ts + i * 1000, 20.0 + (i % 100) / 10)
                for i in range(first, min(first + BATCH, points))
            ]
            await store.write(batch, ())
        rate = points / (time.perf_counter() - started)
        end_ts = start_ts + points * 1000
        times = []
        for _ in range(queries):
            started = time.perf_counter()
            result = await store.aggregate(
                device.key, "temperature", start_ts=start_ts, end_ts=end_ts,
                interval=(end_ts - start_ts) // 1000, agg="AVG", limit=1000,
            )  # fmt: skip
            times.append((time.perf_counter() - started) * 1000)
            assert len(result) == 1000, len(result)
        return rate, statistics.median(times)
    finally:
        await store.close()


def mqtt_figure(store_args: list[str], data: Path, seconds: float) -> float:
    server = Tinyboard(data, "--no-dashboard", *store_args)
    try:
        tokens = [server.add_device(f"m{i}")[1] for i in range(DEVICES)]
        result = uvloop.run(closed_loop(server.mqtt_port, tokens, 8, seconds))
        rate: float = result["rate"]
        return rate
    finally:
        server.stop()


async def drop(schemas: list[str]) -> None:
    conn = await asyncpg.connect(POSTGRES)
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    print(f"# storage benchmark ({revision()})")
    schemas = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    results: dict[str, tuple[float, float, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            urls = {
                "SQLite": (f"sqlite:{Path(tmp) / 'bench.db'}", []),
                "PostgreSQL": (
                    f"{POSTGRES}?schema={schemas[0]}",
                    ["--store", f"{POSTGRES}?schema={schemas[1]}"],
                ),
            }
            for name, (url, serve_store) in urls.items():
                rate, query = uvloop.run(store_figures(url, args.points, args.queries))
                mqtt = mqtt_figure(serve_store, Path(tmp) / f"serve-{name}", args.seconds)
                results[name] = (rate, query, mqtt)
                print(
                    f"{name:10}  write {rate:10,.0f} points/s   {args.points:,} → 1,000 AVG "
                    f"buckets {query:7.1f} ms   MQTT QoS 1 {mqtt:8,.0f} msg/s",
                    flush=True,
                )
    finally:
        stop_all_children()
        asyncio.run(drop(schemas))
    sqlite, postgres = results["SQLite"], results["PostgreSQL"]
    print(
        f"ratio PostgreSQL / SQLite: write {postgres[0] / sqlite[0]:.2f}×, query "
        f"{postgres[1] / sqlite[1]:.2f}× (time), MQTT {postgres[2] / sqlite[2]:.2f}×"
    )
    print(json.dumps({k: list(v) for k, v in results.items()}))


if __name__ == "__main__":
    main()
