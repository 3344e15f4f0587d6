"""`tinyboard copy`'s check: a copy that differs in one point is noticed."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from tinyboard.core import ota
from tinyboard.core.models import DeviceProfile, OtaPackage
from tinyboard.storage.base import Store
from tinyboard.storage.copy import copy_store, package_digest, series_digest
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


async def test_ota_packages_are_copied_with_their_files_and_assignments(
    tmp_path: Path, store: Store
) -> None:
    """From SQLite to each store: a profile's firmware (a file) and software (a URL), a
    device's own firmware; ids, files and assignments as they were."""
    source = SQLiteStore(tmp_path / "a.db")
    await source.open()
    try:
        boards = await source.save_profile(DeviceProfile(id=str(uuid.uuid4()), name="boards",
                                                         created_ts=1))  # fmt: skip
        made = []
        for version in ("1", "2"):
            info = await source.save_ota_package(
                OtaPackage(
                    id=str(uuid.uuid4()),
                    created_ts=2,
                    profile_id=boards.id,
                    type="FIRMWARE",
                    title="fw",
                    version=version,
                )
            )
            data = os.urandom(150_000)
            made.append(await ota.upload(source, info, _one(data), algorithm="CRC32",
                                         checksum=None, file_name="fw.bin",
                                         content_type="application/octet-stream"))  # fmt: skip
        software = await source.save_ota_package(
            OtaPackage(
                id=str(uuid.uuid4()),
                created_ts=3,
                profile_id=boards.id,
                type="SOFTWARE",
                title="sw",
                version="1",
                url="http://x/sw",
            )
        )
        await source.save_profile(replace(boards, firmware_id=made[0].id, software_id=software.id))
        await source.create_device("d", profile_id=boards.id, firmware_id=made[1].id)
        report = await copy_store(source, store)
        assert report.packages == 3
        copied = await store.get_profile("boards")
        assert (copied.firmware_id, copied.software_id) == (made[0].id, software.id)
        assert (await store.get_device("d")).firmware_id == made[1].id
        for package in made:
            there = await store.get_ota_package(package.id)
            assert (there.checksum, there.data_size) == (package.checksum, package.data_size)
            assert await package_digest(store, there) == await package_digest(source, package)
        assert (await store.get_ota_package(software.id)).url == "http://x/sw"
    finally:
        await source.close()


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data
