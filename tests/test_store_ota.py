"""OTA packages in the store, on SQLite and PostgreSQL alike: info rows, bytes in chunks
(uploads that fail leave nothing), range reads that touch only the chunks they need,
assignment and deletion rules with ThingsBoard's texts."""

from __future__ import annotations

import os
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from typing import Any

import pytest

from tinyboard.core.models import DeviceProfile, OtaPackage
from tinyboard.errors import DataValidationError, InUseError, NotFoundError
from tinyboard.storage import open_store
from tinyboard.storage.base import Store
from tinyboard.storage.common import OTA_CHUNK, OTA_UPLOAD_STALE_MS
from tinyboard.storage.sqlite import SQLiteStore

DATA = os.urandom(5 * OTA_CHUNK + 1234)


async def sql(store: Store, query: str, *args: object) -> list[tuple[Any, ...]]:
    """Raw SQL on the store's database (`?` placeholders), to look behind its back."""
    if isinstance(store, SQLiteStore):
        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            return conn.execute(query, args).fetchall()
        finally:
            conn.close()
    n = 0

    def mark(_: str) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    rows = await store._fetch(re.sub(r"\?", mark, query), *args)  # type: ignore[attr-defined]
    return [tuple(r) for r in rows]


async def pieces(data: bytes, sizes: Iterable[int]) -> AsyncIterator[bytes]:
    """`data` in pieces of the given sizes (cycled), as an upload arrives."""
    sizes = list(sizes)
    at, i = 0, 0
    while at < len(data):
        size = sizes[i % len(sizes)]
        yield data[at : at + size]
        at += size
        i += 1


async def profile(store: Store, name: str = "boards") -> DeviceProfile:
    return await store.save_profile(
        DeviceProfile(id=str(uuid.uuid4()), name=name, created_ts=int(time.time() * 1000))
    )


async def package(
    store: Store, profile_id: str | None, *, type: str = "FIRMWARE", version: str = "1.0", **kw: Any
) -> OtaPackage:
    return await store.save_ota_package(
        OtaPackage(
            id=str(uuid.uuid4()),
            created_ts=int(time.time() * 1000),
            profile_id=profile_id,
            type=type,  # type: ignore[arg-type]
            title="fw",
            version=version,
            **kw,
        )
    )


def completed(target: OtaPackage) -> Any:
    def complete(size: int) -> OtaPackage:
        return replace(
            target,
            file_name="fw.bin",
            content_type="application/octet-stream",
            checksum_algorithm="SHA256",
            checksum="c",
            data_size=size,
        )

    return complete


async def uploaded(store: Store, target: OtaPackage, data: bytes = DATA) -> OtaPackage:
    return await store.save_ota_data(target.id, pieces(data, [7000, 65536, 1]), completed(target))


async def chunk_rows(store: Store) -> int:
    return int((await sql(store, "SELECT count(*) FROM ota_chunk"))[0][0])


async def read_all(store: Store, target: OtaPackage) -> bytes:
    return b"".join([chunk async for chunk in store.ota_data(target)])


async def test_package_info_is_saved_listed_found_and_unique_by_title_and_version(
    store: Store,
) -> None:
    boards = await profile(store)
    a = await package(store, boards.id, tag="t1", additional_info={"description": "first"})
    b = await package(store, None, type="SOFTWARE", version="2.0", url="http://x/sw.bin")
    assert await store.get_ota_package(a.id) == a
    assert (a.tag, a.additional_info, a.has_data, a.data_upload) == (
        "t1", {"description": "first"}, False, None
    )  # fmt: skip
    assert b.has_data and b.profile_id is None
    oldest_first = sorted((a, b), key=lambda p: (p.created_ts, p.id))  # ids break a tie
    assert [p.id for p in await store.ota_packages()] == [p.id for p in oldest_first]
    with pytest.raises(DataValidationError, match="OtaPackage with such title and version"):
        await package(store, boards.id)
    with pytest.raises(DataValidationError, match="non-existent device profile"):
        await package(store, str(uuid.uuid4()), version="3")
    changed = await store.save_ota_package(replace(a, additional_info={"description": "x"}))
    assert changed.additional_info == {"description": "x"}
    with pytest.raises(NotFoundError):
        await store.get_ota_package(str(uuid.uuid4()))


async def test_bytes_go_in_as_chunks_and_come_back_whole(store: Store) -> None:
    target = await package(store, (await profile(store)).id)
    saved = await uploaded(store, target)
    assert saved.has_data and saved.data_size == len(DATA) and saved.file_name == "fw.bin"
    assert await store.get_ota_package(target.id) == saved
    assert await chunk_rows(store) == 6  # 5 whole chunks and the rest
    chunks = [chunk async for chunk in store.ota_data(saved)]
    assert [len(c) for c in chunks] == [OTA_CHUNK] * 5 + [1234]
    assert b"".join(chunks) == DATA
    assert [c async for c in store.ota_data(target)] == []  # the info without data


@pytest.mark.parametrize(
    ("offset", "size"),
    [(0, 1), (0, OTA_CHUNK), (1, OTA_CHUNK), (OTA_CHUNK - 1, 2), (3 * OTA_CHUNK, 4096),
     (5 * OTA_CHUNK, 2000), (len(DATA) - 1, 100), (len(DATA), 10), (10**9, 10), (0, 0),
     (0, 10 * OTA_CHUNK)],
)  # fmt: skip
async def test_a_range_is_read_from_the_chunks_covering_it(
    store: Store, offset: int, size: int
) -> None:
    saved = await uploaded(store, await package(store, (await profile(store)).id))
    assert await store.read_ota_range(saved, offset, size) == DATA[offset : offset + max(size, 0)]


async def test_a_range_read_touches_only_its_chunks(store: Store) -> None:
    """With every chunk but 2 and 3 gone from the table, a device's chunk 5 of 40000 bytes
    (bytes 200000..239999, in chunks 3) and a range across 2..3 still read; one that needs
    chunk 1 does not."""
    saved = await uploaded(store, await package(store, (await profile(store)).id))
    await sql(store, "DELETE FROM ota_chunk WHERE idx NOT IN (2, 3)")
    assert await store.read_ota_range(saved, 5 * 40000, 40000) == DATA[200000:240000]
    across = 3 * OTA_CHUNK - 10
    assert await store.read_ota_range(saved, across, 20) == DATA[across : across + 20]
    with pytest.raises(NotFoundError):
        await store.read_ota_range(saved, OTA_CHUNK, 10)


async def test_an_upload_that_fails_leaves_no_chunks_and_no_data(store: Store) -> None:
    target = await package(store, (await profile(store)).id)

    async def vanishing() -> AsyncIterator[bytes]:
        yield DATA[: 3 * OTA_CHUNK]
        yield DATA[3 * OTA_CHUNK : 4 * OTA_CHUNK]
        raise ConnectionError("the client went away")

    with pytest.raises(ConnectionError):
        await store.save_ota_data(target.id, vanishing(), completed(target))

    def wrong_checksum(size: int) -> OtaPackage:
        raise DataValidationError("Wrong otaPackage file!")

    with pytest.raises(DataValidationError, match="Wrong otaPackage file"):
        await store.save_ota_data(target.id, pieces(DATA, [10_000]), wrong_checksum)
    assert await chunk_rows(store) == 0
    assert await sql(store, "SELECT count(*) FROM ota_upload") == [(0,)]
    assert await store.get_ota_package(target.id) == target


async def test_data_once_stored_is_not_replaced(store: Store) -> None:
    target = await package(store, (await profile(store)).id)
    saved = await uploaded(store, target)
    with pytest.raises(DataValidationError, match="Updating otaPackage data is prohibited!"):
        await uploaded(store, target, b"other bytes")
    assert await chunk_rows(store) == 6 and await read_all(store, saved) == DATA
    gone = await package(store, target.profile_id, version="gone")
    await store.delete_ota_package(gone.id)
    with pytest.raises(NotFoundError):
        await uploaded(store, gone)
    assert await chunk_rows(store) == 6


async def test_an_upload_a_crash_cut_off_is_cleaned_up_at_the_next_open(store: Store) -> None:
    target = await package(store, (await profile(store)).id)
    saved = await uploaded(store, target)
    old = int(time.time() * 1000) - OTA_UPLOAD_STALE_MS - 1
    for upload, started in (("crashed", old), ("running", int(time.time() * 1000))):
        await sql(store, "INSERT INTO ota_upload VALUES (?, ?, ?)", upload, target.id, started)
        await sql(store, "INSERT INTO ota_chunk VALUES (?, 0, ?)", upload, b"x")
    again = open_store(
        f"sqlite:{store.path}" if isinstance(store, SQLiteStore) else store.url  # type: ignore[attr-defined]
    )
    await again.open()  # a restart, on the same database
    await again.close()
    assert await sql(store, "SELECT id FROM ota_upload") == [("running",)]
    assert await chunk_rows(store) == 7 and await read_all(store, saved) == DATA


async def test_assignments_follow_thingsboard_s_rules(store: Store) -> None:
    boards, other = await profile(store), await profile(store, "other")
    empty = await package(store, boards.id, version="empty")
    firmware = await uploaded(store, await package(store, boards.id))
    software = await package(store, boards.id, type="SOFTWARE", version="s", url="http://x")
    foreign = await uploaded(store, await package(store, other.id, version="o"))
    refusals = [
        (str(uuid.uuid4()), None, "Can't assign non-existent firmware!"),
        (software.id, None, "Can't assign firmware with type: SOFTWARE"),
        (empty.id, None, "Can't assign firmware with empty data!"),
        (foreign.id, None, "Can't assign firmware with different deviceProfile!"),
        (None, firmware.id, "Can't assign software with type: FIRMWARE"),
    ]
    for fw, sw, text in refusals:
        with pytest.raises(DataValidationError, match=text):
            await store.save_profile(replace(boards, firmware_id=fw, software_id=sw))
        with pytest.raises(DataValidationError, match=text):
            await store.create_device("d", profile_id=boards.id, firmware_id=fw, software_id=sw)
    assert await store.count_devices() == 0
    saved = await store.save_profile(
        replace(boards, firmware_id=firmware.id, software_id=software.id)
    )
    assert (saved.firmware_id, saved.software_id) == (firmware.id, software.id)
    assert await store.get_profile(boards.id) == saved
    device = await store.create_device("d", profile_id=boards.id, firmware_id=firmware.id)
    assert (device.firmware_id, device.software_id) == (firmware.id, None)
    assert await store.get_device("d") == device
    with pytest.raises(DataValidationError, match="different deviceProfile"):  # moving away
        await store.update_device(
            "d", name="d", label="", profile_id=other.id, additional_info=None,
            firmware_id=firmware.id, software_id=None,
        )  # fmt: skip
    moved = await store.update_device(
        "d", name="d", label="", profile_id=other.id, additional_info=None,
        firmware_id=foreign.id, software_id=None,
    )  # fmt: skip
    assert (moved.profile_id, moved.firmware_id) == (other.id, foreign.id)


async def test_a_package_in_use_is_not_deleted_and_a_deleted_one_takes_its_bytes(
    store: Store,
) -> None:
    boards = await profile(store)
    firmware = await uploaded(store, await package(store, boards.id))
    software = await uploaded(
        store, await package(store, boards.id, type="SOFTWARE", version="s"), b"s"
    )
    await store.save_profile(replace(boards, firmware_id=firmware.id, software_id=software.id))
    await store.create_device("d", profile_id=boards.id, firmware_id=firmware.id)
    texts = {
        firmware.id: "The otaPackage referenced by the device profile cannot be deleted!",
        software.id: "The software referenced by the device profile cannot be deleted!",
    }
    for package_id, text in texts.items():
        with pytest.raises(InUseError, match=text):
            await store.delete_ota_package(package_id)
    await store.save_profile(replace(boards, firmware_id=None, software_id=None))
    with pytest.raises(InUseError, match="The otaPackage referenced by the devices cannot"):
        await store.delete_ota_package(firmware.id)
    assert await store.delete_ota_package(software.id) == software
    assert await chunk_rows(store) == 6
    await store.update_device(
        "d", name="d", label="", additional_info=None, firmware_id=None, software_id=None
    )
    await store.delete_ota_package(firmware.id)
    assert await chunk_rows(store) == 0 and await store.ota_packages() == []
    with pytest.raises(NotFoundError):
        await store.delete_ota_package(firmware.id)


async def test_a_deleted_profile_takes_its_packages_along(store: Store) -> None:
    boards, other = await profile(store), await profile(store, "other")
    await uploaded(store, await package(store, boards.id))
    kept = await package(store, other.id, version="kept")
    await store.delete_profile(boards.id)
    assert await store.ota_packages() == [kept] and await chunk_rows(store) == 0


async def test_the_devices_a_profile_s_package_reaches_come_in_pages(store: Store) -> None:
    boards = await profile(store)
    firmware = await uploaded(store, await package(store, boards.id))
    names = [f"d{i:02}" for i in range(7)]
    for name in names:
        own = firmware.id if name == "d03" else None
        await store.create_device(name, profile_id=boards.id, firmware_id=own)
    await store.create_device("elsewhere")
    seen: list[str] = []
    after = 0
    while page := await store.devices_following_profile(
        boards.id, "FIRMWARE", after_key=after, limit=3
    ):
        seen += [d.name for d in page]
        after = page[-1].key
    assert seen == [n for n in names if n != "d03"]
    software = await store.devices_following_profile(boards.id, "SOFTWARE", limit=100)
    assert [d.name for d in software] == names
