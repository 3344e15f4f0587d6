"""`tinyboard copy`'s check: a copy that differs in one point is noticed."""

from __future__ import annotations

from pathlib import Path

from tinyboard.storage.copy import copy_store, series_digest
from tinyboard.storage.sqlite import SQLiteStore


async def test_one_changed_point_changes_the_digest(tmp_path: Path) -> None:
    source, target = SQLiteStore(tmp_path / "a.db"), SQLiteStore(tmp_path / "b.db")
    await source.open()
    await target.open()
    try:
        d = await source.create_device("d")
        await source.write([(d.key, "t", ts, ts * 1.5) for ts in range(1, 25_001)], ())
        report = await copy_store(source, target)
        assert (report.points, report.checked_series) == (25_000, 1)  # over two pages
        copied = await target.get_device("d")
        same = await series_digest(target, copied.key, "t")
        assert same == await series_digest(source, d.key, "t")
        await target.write([(copied.key, "t", 12_345, 0.0)], ())
        changed = await series_digest(target, copied.key, "t")
        assert changed[0] == same[0] and changed[1] != same[1]
    finally:
        await source.close()
        await target.close()


async def test_a_device_s_record_is_copied_with_its_additional_info(tmp_path: Path) -> None:
    source, target = SQLiteStore(tmp_path / "a.db"), SQLiteStore(tmp_path / "b.db")
    await source.open()
    await target.open()
    try:
        info = {"description": "kitchen board", "gateway": False}
        d = await source.create_device("d", label="hall", additional_info=info)
        await source.create_device("plain")
        assert (await copy_store(source, target)).devices == 2
        copied = await target.get_device(d.id)
        assert (copied.label, copied.token, copied.additional_info) == ("hall", d.token, info)
        assert (await target.get_device("plain")).additional_info is None
    finally:
        await source.close()
        await target.close()
