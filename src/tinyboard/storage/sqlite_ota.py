"""OTA packages in the SQLite store: info rows, their bytes in fixed-size chunks, uploads.

Strategy: an upload writes its chunks under an upload id of its own, 1 MiB per writer
transaction (other devices' readings commit in between), and a last transaction makes them
the package's data. Whatever fails before that (a wrong checksum, a client gone, a crash)
leaves chunks that no package names: they are deleted at once, or, after a crash, by the
next start (`ota_upload` remembers when each upload began). Reads take the chunks covering
the range asked for, never the whole image.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from tinyboard.core.models import OTA_TYPES, Device, OtaPackage, OtaType
from tinyboard.errors import DataValidationError, InUseError, NotFoundError
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
from tinyboard.storage.sqlite_tx import transaction

T = TypeVar("T")

_UPDATED = ", ".join(f"{c} = excluded.{c}" for c in OTA_INFO_SAVED.split(", ")[2:])
SAVE_OTA = (
    f"INSERT INTO ota_package ({OTA_INFO_SAVED}) VALUES ({', '.join('?' * 14)}) "
    f"ON CONFLICT (id) DO UPDATE SET {_UPDATED}"
)
NO_PROFILE = "OtaPackage is referencing to non-existent device profile!"


def check_assignment(
    conn: sqlite3.Connection, type: OtaType, package_id: str | None, profile_id: str | None
) -> None:
    """Refuse (ThingsBoard's text) a package that a profile, or a device of `profile_id`,
    cannot run as its `type`; inside the transaction that assigns it."""
    if package_id is not None:
        found = conn.execute(f"{OTA_ASSIGNABLE} ?", (package_id,)).fetchone()
        if reason := assignment_refusal(found, type, profile_id):
            raise DataValidationError(reason)


def delete_profile_packages(conn: sqlite3.Connection, profile_id: str) -> None:
    """A profile's packages go with it (ThingsBoard: ON DELETE CASCADE), bytes included."""
    conn.execute(
        "DELETE FROM ota_chunk WHERE upload IN "
        "(SELECT data_upload FROM ota_package WHERE profile_id = ?)",
        (profile_id,),
    )
    conn.execute("DELETE FROM ota_package WHERE profile_id = ?", (profile_id,))


class SQLiteOtaPackages:
    """The OTA part of `SQLiteStore` (its base class: the store provides the three
    connection helpers below)."""

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    async def _write_op(self, fn: Callable[..., T], *args: object) -> T:
        raise NotImplementedError

    async def _read_op(self, fn: Callable[..., T], *args: object) -> T:
        raise NotImplementedError

    # -- info ------------------------------------------------------------------------------
    async def ota_packages(self) -> list[OtaPackage]:
        return await self._read_op(self._ota_packages)

    def _ota_packages(self) -> list[OtaPackage]:
        sql = f"SELECT {OTA_COLUMNS} FROM ota_package ORDER BY created_ts, id"
        return [ota_from(r) for r in self._conn().execute(sql)]

    async def get_ota_package(self, package_id: str) -> OtaPackage:
        found = await self._read_op(self._ota_package, package_id)
        if found is None:
            raise NotFoundError(f"no OTA package with id {package_id!r}")
        return found

    def _ota_package(self, package_id: str) -> OtaPackage | None:
        sql = f"SELECT {OTA_COLUMNS} FROM ota_package WHERE id = ?"
        row = self._conn().execute(sql, (package_id,)).fetchone()
        return ota_from(row) if row else None

    async def save_ota_package(self, package: OtaPackage) -> OtaPackage:
        return await self._write_op(self._save_ota_package, package)

    def _save_ota_package(self, package: OtaPackage) -> OtaPackage:
        conn = self._conn()
        with transaction(conn):
            if (
                package.profile_id is not None
                and not conn.execute(
                    "SELECT 1 FROM device_profile WHERE id = ?", (package.profile_id,)
                ).fetchone()
            ):
                raise DataValidationError(NO_PROFILE)
            try:
                conn.execute(SAVE_OTA, ota_row(package))
            except sqlite3.IntegrityError:
                raise DataValidationError(OTA_TITLE_TAKEN) from None
            saved = self._ota_package(package.id)
        assert saved is not None
        return saved

    async def delete_ota_package(self, package_id: str) -> OtaPackage:
        return await self._write_op(self._delete_ota_package, package_id)

    def _delete_ota_package(self, package_id: str) -> OtaPackage:
        conn = self._conn()
        with transaction(conn):
            package = self._ota_package(package_id)
            if package is None:
                raise NotFoundError(f"no OTA package with id {package_id!r}")
            column = ota_column(package.type)
            for table, by_profile in (("device_profile", True), ("device", False)):
                sql = f"SELECT 1 FROM {table} WHERE {column} = ? LIMIT 1"
                if conn.execute(sql, (package_id,)).fetchone():
                    raise InUseError(ota_in_use(package.type, by_profile))
            conn.execute("DELETE FROM ota_chunk WHERE upload = ?", (package.data_upload,))
            conn.execute("DELETE FROM ota_package WHERE id = ?", (package_id,))
        return package

    # -- bytes -----------------------------------------------------------------------------
    async def save_ota_data(
        self,
        package_id: str,
        chunks: AsyncIterable[bytes],
        complete: Callable[[int], OtaPackage],
    ) -> OtaPackage:
        upload = str(uuid.uuid4())
        await self._write_op(self._begin_upload, upload, package_id)
        try:

            async def write(batch: list[tuple[int, bytes]]) -> None:
                await self._write_op(self._write_chunks, upload, batch)

            size = await write_chunks(chunks, write)
            return await self._write_op(self._finish_upload, upload, complete(size))
        except BaseException:
            await self._write_op(self._drop_uploads, [upload])
            raise

    def _begin_upload(self, upload: str, package_id: str) -> None:
        now = int(time.time() * 1000)
        self._conn().execute(
            "INSERT INTO ota_upload (id, package, started_ts) VALUES (?, ?, ?)",
            (upload, package_id, now),
        )

    def _write_chunks(self, upload: str, batch: list[tuple[int, bytes]]) -> None:
        conn = self._conn()
        with transaction(conn):
            conn.executemany(
                "INSERT INTO ota_chunk (upload, idx, data) VALUES (?, ?, ?)",
                [(upload, idx, data) for idx, data in batch],
            )

    def _finish_upload(self, upload: str, package: OtaPackage) -> OtaPackage:
        conn = self._conn()
        with transaction(conn):
            done = conn.execute(
                "UPDATE ota_package SET file_name = ?, content_type = ?, "
                "checksum_algorithm = ?, checksum = ?, data_size = ?, data_upload = ? "
                "WHERE id = ? AND data_upload IS NULL",
                (package.file_name, package.content_type, package.checksum_algorithm,
                 package.checksum, package.data_size, upload, package.id),
            ).rowcount  # fmt: skip
            if not done:
                if self._ota_package(package.id) is None:
                    raise NotFoundError(OTA_GONE)
                raise DataValidationError(OTA_DATA_SET)
            conn.execute("DELETE FROM ota_upload WHERE id = ?", (upload,))
            saved = self._ota_package(package.id)
        assert saved is not None
        return saved

    def _drop_uploads(self, uploads: Sequence[str]) -> None:
        conn = self._conn()
        with transaction(conn):
            for upload in uploads:
                conn.execute(
                    "DELETE FROM ota_chunk WHERE upload = ? AND upload NOT IN "
                    "(SELECT data_upload FROM ota_package WHERE data_upload IS NOT NULL)",
                    (upload,),
                )
                conn.execute("DELETE FROM ota_upload WHERE id = ?", (upload,))

    def _drop_stale_uploads(self) -> None:
        """Chunks of uploads a crash cut off (called at open)."""
        before = int(time.time() * 1000) - OTA_UPLOAD_STALE_MS
        rows = self._conn().execute("SELECT id FROM ota_upload WHERE started_ts < ?", (before,))
        self._drop_uploads([upload for (upload,) in rows.fetchall()])

    async def ota_data(self, package: OtaPackage) -> AsyncIterator[bytes]:
        if package.data_upload is None:
            return
        count = chunk_count(package)
        for first in range(0, count, OTA_CHUNKS_PER_WRITE):
            last = min(first + OTA_CHUNKS_PER_WRITE, count) - 1
            rows = await self._read_op(self._chunks, package.data_upload, first, last)
            if len(rows) != last - first + 1:
                raise NotFoundError(OTA_GONE)
            for _, data in rows:
                yield bytes(data)

    async def read_ota_range(self, package: OtaPackage, offset: int, size: int) -> bytes:
        if package.data_upload is None or size <= 0 or offset >= (package.data_size or 0):
            return b""
        first, last = chunk_span(offset, size)
        last = min(last, chunk_count(package) - 1)
        rows = await self._read_op(self._chunks, package.data_upload, first, last)
        if len(rows) != last - first + 1:
            raise NotFoundError(OTA_GONE)
        return cut_range(rows, first, offset, size)

    def _chunks(self, upload: str, first: int, last: int) -> list[Any]:
        return (
            self._conn()
            .execute(
                "SELECT idx, data FROM ota_chunk WHERE upload = ? AND idx BETWEEN ? AND ? "
                "ORDER BY idx",
                (upload, first, last),
            )
            .fetchall()
        )

    # -- who runs what ---------------------------------------------------------------------
    async def devices_following_profile(
        self, profile_id: str, type: OtaType, *, after_key: int = 0, limit: int = 100
    ) -> list[Device]:
        return await self._read_op(self._following, profile_id, type, after_key, limit)

    def _following(self, profile_id: str, type: OtaType, after: int, limit: int) -> list[Device]:
        assert type in OTA_TYPES
        rows = self._conn().execute(
            f"SELECT {DEVICE_COLUMNS} FROM device WHERE profile_id = ? "
            f"AND {ota_column(type)} IS NULL AND seq > ? ORDER BY seq LIMIT ?",
            (profile_id, after, limit),
        )
        return [device_from(r) for r in rows]
