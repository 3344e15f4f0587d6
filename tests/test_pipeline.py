"""The group-commit pipeline against a real SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tinyboard.core.pipeline import Pipeline
from tinyboard.storage.sqlite import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "p.db", sync="normal")
    await s.open()
    yield s
    await s.close()


async def test_acks_come_after_commit_and_batches_group(store: SQLiteStore) -> None:
    device = await store.create_device("p")
    pipeline = Pipeline(store, queue_limit=10_000, batch_limit=1000)
    pipeline.start()
    seen_in_store: list[bool] = []
    acked: list[int] = []

    def done_for(i: int) -> object:
        def done(error: BaseException | None) -> None:
            assert error is None
            acked.append(i)
            # The ack is given after commit: a separate connection already sees the row.
            with sqlite3.connect(store.path) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM ts_kv WHERE device = ? AND ts = ?", (device.key, i)
                ).fetchone()
            seen_in_store.append(row == (1,))

        return done

    for i in range(500):
        pipeline.submit([(device.key, "n", i, i)], done_for(i))  # type: ignore[arg-type]
    await pipeline.drain()
    assert sorted(acked) == list(range(500))
    assert all(seen_in_store)
    assert pipeline.stats.commits < 500  # jobs queued together share a transaction
    assert pipeline.stats.readings == 500
    await pipeline.stop()


async def test_committed_readings_reach_listeners(store: SQLiteStore) -> None:
    device = await store.create_device("l")
    pipeline = Pipeline(store)
    got: list[object] = []
    pipeline.on_commit(lambda readings, _: got.extend(readings))
    pipeline.start()
    pipeline.submit([(device.key, "t", 1, 1.5)], lambda e: None)
    await pipeline.drain()
    assert got == [(device.key, "t", 1, 1.5)]
    await pipeline.stop()


async def test_full_queue_refuses_then_calls_back(store: SQLiteStore) -> None:
    device = await store.create_device("bp")
    pipeline = Pipeline(store, queue_limit=10, batch_limit=5)
    resumed = asyncio.Event()
    accepted = [pipeline.submit([(device.key, "n", i, i)], lambda e: None) for i in range(12)]
    assert accepted[:9] == [True] * 9
    assert accepted[-1] is False
    pipeline.when_space(resumed.set)
    pipeline.start()
    await asyncio.wait_for(resumed.wait(), 5)
    assert pipeline.depth < 5
    await pipeline.stop()


async def test_a_failed_commit_is_reported_not_acknowledged(store: SQLiteStore) -> None:
    device = await store.create_device("f")
    pipeline = Pipeline(store)
    pipeline.start()
    with sqlite3.connect(store.path) as conn:  # break the schema under the running store
        conn.execute("DROP TABLE ts_latest")
    errors: list[BaseException | None] = []
    pipeline.submit([(device.key, "t", 1, 1)], errors.append)
    await pipeline.drain()
    assert len(errors) == 1 and errors[0] is not None
    assert "ts_latest" in str(errors[0])
    assert pipeline.stats.errors == 1
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT count(*) FROM ts_kv").fetchone() == (0,)
    await pipeline.stop()
