"""Retention deletes old points in batches and keeps the latest values (a real store)."""

from __future__ import annotations

from pathlib import Path

from tinyboard.core import retention
from tinyboard.core.retention import Retention
from tinyboard.storage.sqlite import SQLiteStore

DAY_MS = 86_400_000
NOW = 1_800_000_000.0


async def test_a_sweep_deletes_what_is_older_than_the_retention(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "r.db")
    await store.open()
    try:
        d = await store.create_device("d")
        now_ms = int(NOW * 1000)
        old = [(d.key, "t", now_ms - 3 * DAY_MS + i, 1) for i in range(25_000)]  # > 2 batches
        new = [(d.key, "t", now_ms - DAY_MS // 2 + i, 2) for i in range(10)]
        await store.write(old + new, ())
        sweeper = Retention(store, days=2, clock=lambda: NOW)
        assert len(old) > retention.BATCH
        assert await sweeper.sweep() == len(old)
        kept = await store.history(d.key, "t", start_ts=0, end_ts=2**62, limit=10**6)
        assert sorted(ts for ts, _ in kept) == [ts for _, _, ts, _ in new]
        assert await sweeper.sweep() == 0
        assert sweeper.deleted == len(old)
    finally:
        await store.close()
