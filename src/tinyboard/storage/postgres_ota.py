"""OTA packages in the PostgreSQL store: the same tables and rules as `sqlite_ota.py`.

Strategy: as in SQLite, an upload writes its chunks under an upload id of its own, 1 MiB
per transaction, and one last transaction makes them the package's data; a failure deletes
them, a crash leaves them to the next start of any node (`ota_upload`). Assigning and
deleting a package both lock its row first (`FOR SHARE` / `FOR UPDATE`), so a package that
is being assigned is never deleted under it, with any number of nodes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from tinyboard.core.models import OTA_TYPES, Device, OtaPackage, OtaType
from tinyboard.errors import DataValidationError, InUseError, NotFoundError, StorageError
from tinyboard.storage.common import (
    DEVICE_COLUMNS,
    OTA_ASSIGNABLE,
    OTA_CHUNKS_PER_WRITE,
    OTA_COLUMNS,
    OTA_DATA_SET,
    OTA_GONE,
    OTA_INFO_SAVED,
    OTA_TITLE_TAKEN,
    OTA_UPLOAD_STALE_MS,
    assignment_refusal,
    chunk_count,
    chunk_span,
    cut_range,
    device_from,
    ota_column,
    ota_from,
    ota_in_use,
    ota_row,
    write_chunks,
)

T = TypeVar("T")

_UPDATED = ", ".join(f"{c} = excluded.{c}" for c in OTA_INFO_SAVED.split(", ")[2:])
SAVE_OTA = (
    f"INSERT INTO ota_package ({OTA_INFO_SAVED}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, 15))}) "
    f"ON CONFLICT (id) DO UPDATE SET {_UPDATED}"
)
NO_PROFILE = "OtaPackage is referencing to non-existent device profile!"
SELECT_OTA = f"SELECT {OTA_COLUMNS} FROM ota_package WHERE id = $1"


async def check_assignment(
    conn: asyncpg.Connection, type: OtaType, package_id: str | None, profile_id: str | None
) -> None:
    """Refuse (ThingsBoard's text) a package that a profile, or a device of `profile_id`,
    cannot run as its `type`. Its row stays share-locked until the transaction ends, so a
    concurrent delete waits and then sees the assignment."""
    if package_id is not None:
        found = await conn.fetchrow(f"{OTA_ASSIGNABLE} $1 FOR SHARE", package_id)
        if reason := assignment_refusal(found, type, profile_id):
            raise DataValidationError(reason)


async def check_packages(conn: asyncpg.Connection, ids: Sequence[object], profile: str) -> None:
    """The (firmware, software) a profile or a device of `profile` is given must fit it."""
    for type, package in zip(OTA_TYPES, ids, strict=True):
        await check_assignment(conn, type, None if package is None else str(package), profile)


async def delete_profile_packages(conn: asyncpg.Connection, profile_id: str) -> None:
    """A profile's packages go with it (ThingsBoard: ON DELETE CASCADE), bytes included."""
    await conn.execute(
        "DELETE FROM ota_chunk WHERE upload IN "
        "(SELECT data_upload FROM ota_package WHERE profile_id = $1)",
        profile_id,
    )
    await conn.execute("DELETE FROM ota_package WHERE profile_id = $1", profile_id)


class PostgresOtaPackages:
    """The OTA part of `PostgresStore` (its base class: the store provides `_run` and the
    query helpers below)."""

    async def _run(self, op: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        raise NotImplementedError

    async def _fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        raise NotImplementedError

    async def _execute(self, sql: str, *args: object) -> str:
        raise NotImplementedError

    # -- info ------------------------------------------------------------------------------
    async def ota_packages(self) -> list[OtaPackage]:
        sql = f"SELECT {OTA_COLUMNS} FROM ota_package ORDER BY created_ts, id"
        return [ota_from(r) for r in await self._fetch(sql)]

    async def get_ota_package(self, package_id: str) -> OtaPackage:
        row = await self._fetchrow(SELECT_OTA, package_id)
        if row is None:
            raise NotFoundError(f"no OTA package with id {package_id!r}")
        return ota_from(row)

    async def save_ota_package(self, package: OtaPackage) -> OtaPackage:
        async def op(conn: asyncpg.Connection) -> OtaPackage:
            async with conn.transaction():
                if package.profile_id is not None and not await conn.fetchrow(
                    "SELECT 1 FROM device_profile WHERE id = $1", package.profile_id
                ):
                    raise DataValidationError(NO_PROFILE)
                try:
                    await conn.execute(SAVE_OTA, *ota_row(package))
                except asyncpg.UniqueViolationError:
                    raise DataValidationError(OTA_TITLE_TAKEN) from None
                return ota_from(await conn.fetchrow(SELECT_OTA, package.id))

        return await self._run(op)

    async def delete_ota_package(self, package_id: str) -> OtaPackage:
        async def op(conn: asyncpg.Connection) -> OtaPackage:
            async with conn.transaction():
                row = await conn.fetchrow(f"{SELECT_OTA} FOR UPDATE", package_id)
                if row is None:
                    raise NotFoundError(f"no OTA package with id {package_id!r}")
                package = ota_from(row)
                column = ota_column(package.type)
                for table, by_profile in (("device_profile", True), ("device", False)):
                    sql = f"SELECT 1 FROM {table} WHERE {column} = $1 LIMIT 1"
                    if await conn.fetchrow(sql, package_id):
                        raise InUseError(ota_in_use(package.type, by_profile))
                await conn.execute("DELETE FROM ota_chunk WHERE upload = $1", package.data_upload)
                await conn.execute("DELETE FROM ota_package WHERE id = $1", package_id)
                return package

        return await self._run(op)

    # -- bytes -----------------------------------------------------------------------------
    async def save_ota_data(
        self,
        package_id: str,
        chunks: AsyncIterable[bytes],
        complete: Callable[[int], OtaPackage],
    ) -> OtaPackage:
        upload = str(uuid.uuid4())
        await self._execute(
            "INSERT INTO ota_upload (id, package, started_ts) VALUES ($1, $2, $3)",
            upload, package_id, int(time.time() * 1000),
        )  # fmt: skip
        try:

            async def write(batch: list[tuple[int, bytes]]) -> None:
                await self._run(lambda conn: _write_chunks(conn, upload, batch))

            size = await write_chunks(chunks, write)
            finished = complete(size)
            return await self._run(lambda conn: _finish_upload(conn, upload, finished))
        except BaseException:
            await self._drop_uploads([upload])
            raise

    async def _drop_uploads(self, uploads: Sequence[str]) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(
                    "DELETE FROM ota_chunk WHERE upload = any($1::text[]) AND upload NOT IN "
                    "(SELECT data_upload FROM ota_package WHERE data_upload IS NOT NULL)",
                    uploads,
                )
                await conn.execute("DELETE FROM ota_upload WHERE id = any($1::text[])", uploads)

        await self._run(op)

    async def _drop_stale_uploads(self) -> None:
        """Chunks of uploads a crash cut off (called at open)."""
        before = int(time.time() * 1000) - OTA_UPLOAD_STALE_MS
        rows = await self._fetch("SELECT id FROM ota_upload WHERE started_ts < $1", before)
        if rows:
            await self._drop_uploads([r[0] for r in rows])

    async def ota_data(self, package: OtaPackage) -> AsyncIterator[bytes]:
        if package.data_upload is None:
            return
        count = chunk_count(package)
        for first in range(0, count, OTA_CHUNKS_PER_WRITE):
            last = min(first + OTA_CHUNKS_PER_WRITE, count) - 1
            rows = await self._chunks(package.data_upload, first, last)
            for _, data in rows:
                yield bytes(data)

    async def read_ota_range(self, package: OtaPackage, offset: int, size: int) -> bytes:
        if package.data_upload is None or size <= 0 or offset >= (package.data_size or 0):
            return b""
        first, last = chunk_span(offset, size)
        last = min(last, chunk_count(package) - 1)
        return cut_range(await self._chunks(package.data_upload, first, last), first, offset, size)

    async def _chunks(self, upload: str, first: int, last: int) -> list[Any]:
        rows = await self._fetch(
            "SELECT idx, data FROM ota_chunk WHERE upload = $1 AND idx BETWEEN $2 AND $3 "
            "ORDER BY idx",
            upload, first, last,
        )  # fmt: skip
        if len(rows) != last - first + 1:
            raise NotFoundError(OTA_GONE)
        return rows

    # -- who runs what ---------------------------------------------------------------------
    async def devices_following_profile(
        self, profile_id: str, type: OtaType, *, after_key: int = 0, limit: int = 100
    ) -> list[Device]:
        rows = await self._fetch(
            f"SELECT {DEVICE_COLUMNS} FROM device WHERE profile_id = $1 "
            f"AND {ota_column(type)} IS NULL AND seq > $2 ORDER BY seq LIMIT $3",
            profile_id, after_key, limit,
        )  # fmt: skip
        return [device_from(r) for r in rows]


async def _write_chunks(
    conn: asyncpg.Connection, upload: str, batch: list[tuple[int, bytes]]
) -> None:
    """Idempotent, as every write here: a retry after a lost connection changes nothing."""
    await conn.execute(
        "INSERT INTO ota_chunk (upload, idx, data) "
        "SELECT $1, * FROM unnest($2::int[], $3::bytea[]) ON CONFLICT DO NOTHING",
        upload, [idx for idx, _ in batch], [data for _, data in batch],
    )  # fmt: skip


async def _finish_upload(conn: asyncpg.Connection, upload: str, package: OtaPackage) -> OtaPackage:
    async with conn.transaction():
        status = await conn.execute(
            "UPDATE ota_package SET file_name = $1, content_type = $2, checksum_algorithm = $3, "
            "checksum = $4, data_size = $5, data_upload = $6 "
            "WHERE id = $7 AND (data_upload IS NULL OR data_upload = $6)",  # a retry: done
            package.file_name, package.content_type, package.checksum_algorithm,
            package.checksum, package.data_size, upload, package.id,
        )  # fmt: skip
        if status == "UPDATE 0":
            if await conn.fetchrow("SELECT 1 FROM ota_package WHERE id = $1", package.id):
                raise DataValidationError(OTA_DATA_SET)
            raise NotFoundError(OTA_GONE)
        await conn.execute("DELETE FROM ota_upload WHERE id = $1", upload)
        row = await conn.fetchrow(SELECT_OTA, package.id)
    if row is None:
        raise StorageError(OTA_GONE)
    return ota_from(row)
