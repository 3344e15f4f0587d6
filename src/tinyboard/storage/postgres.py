"""`Store` on PostgreSQL through asyncpg: `--store postgresql://user@host/db[?schema=name]`.

Strategy: one connection pool; every batch of the group-commit writer is one transaction of
three statements whatever its size (time series, latest values and attributes each sent as
arrays and unnested by the server), so a batch costs three round trips, not one per row.
Duplicates inside a batch are folded first (the last write wins, as in SQLite) because one
INSERT ... ON CONFLICT may not touch a row twice. A lost connection (a restarted server,
`pg_terminate_backend`) is retried with backoff inside `write`; meanwhile the pipeline's
queue fills and transports stop reading (backpressure), and nothing is acknowledged that is
not committed. Several tinyboard nodes may share one database: migrations take an advisory
lock. New key ids are committed in their own statement before the batch's transaction, so
the key-id cache never holds an id that a rolled-back transaction took with it. A value the
database refuses (`RejectedDataError`) and a full disk (`StoreFullError`) are told apart
from other errors, so the pipeline can fail only the job at fault or the whole batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson

from tinyboard.core.devices import check_name, check_token, new_token
from tinyboard.core.models import (
    Aggregation,
    Alarm,
    AlarmSort,
    AlarmStatus,
    AttributeRow,
    Device,
    DeviceProfile,
    Reading,
    Scope,
    Severity,
    TsValue,
    User,
    Value,
)
from tinyboard.errors import (
    ConflictError,
    InUseError,
    NotFoundError,
    RejectedDataError,
    StorageError,
    StoreFullError,
)
from tinyboard.storage import common
from tinyboard.storage.common import (
    ALARM_COLUMNS,
    ALARM_FROM,
    DEFAULT_UNDELETABLE,
    DEVICE_COLUMNS,
    KIND_BOOL,
    KIND_DOUBLE,
    KIND_JSON,
    KIND_LONG,
    KIND_STR,
    PROFILE_COLUMNS,
    PROFILE_IN_USE,
    PROFILE_SAVED,
    USER_COLUMNS,
    alarm_from,
    default_profile_json,
    device_from,
    info_json,
    like_prefix,
    order_column,
    profile_from,
    profile_row,
    user_from,
)
from tinyboard.storage.postgres_ota import (
    PostgresOtaPackages,
    check_packages,
    delete_profile_packages,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
MIGRATION_LOCK = 0x7469_6E79  # "tiny": one node migrates at a time
POOL_SIZE = 8
ALARM_INSERT = common.alarm_insert([f"${n}" for n in range(1, 19)])
APPLICATION_NAME = "tinyboard"
"""How tinyboard's connections show in pg_stat_activity."""
RETRY_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 5.0, 5.0, 5.0, 5.0)
"""Waits between attempts of an operation whose connection was lost (~30 s in all)."""
CONNECTION_ERRORS = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # a protocol state left by a dropped connection
    ConnectionError,
    OSError,
)
REFUSED_DATA = (
    asyncpg.exceptions.DataError,  # 22xxx: NUL in text, \u0000 in jsonb, a number out of range
    asyncpg.exceptions.IntegrityConstraintViolationError,
    asyncpg.exceptions.ProgramLimitExceededError,  # 54xxx: a value too big for its index
)
"""What PostgreSQL raises for the values of a statement, not for its own state."""
ENCODING_ERRORS = (TypeError, ValueError, OverflowError)
"""What `encode` raises for a value it cannot write (orjson: an integer over 64 bits)."""
_AGG = {"MIN": "min", "MAX": "max", "AVG": "avg", "SUM": "sum"}
NUMBER = "coalesce(long_v::float8, dbl_v)"
UPSERT_TS = (
    "INSERT INTO ts_kv (device, key, ts, kind, long_v, dbl_v, str_v) "
    "SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::smallint[], "
    "$5::bigint[], $6::float8[], $7::text[]) "
    "ON CONFLICT (device, key, ts) DO UPDATE SET kind = excluded.kind, "
    "long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v"
)
UPSERT_LATEST = (
    "INSERT INTO ts_latest AS l (device, key, ts, kind, long_v, dbl_v, str_v) "
    "SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::smallint[], "
    "$5::bigint[], $6::float8[], $7::text[]) "
    "ON CONFLICT (device, key) DO UPDATE SET ts = excluded.ts, kind = excluded.kind, "
    "long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v "
    "WHERE excluded.ts >= l.ts"
)
UPSERT_ATTRIBUTES = (
    "INSERT INTO attribute (device, scope, key, ts, kind, long_v, dbl_v, str_v) "
    "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], "
    "$5::smallint[], $6::bigint[], $7::float8[], $8::text[]) "
    "ON CONFLICT (device, scope, key) DO UPDATE SET ts = excluded.ts, kind = excluded.kind, "
    "long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v"
)

Columns = tuple[int, int | None, float | None, str | None]
KIND_STR_WITH_NUL = 5
"""A string holding NUL, which PostgreSQL text cannot: kept as its JSON string literal."""


async def _delete_latest(
    conn: asyncpg.Connection, where: tuple[int, int, int, int], rewrite: bool
) -> None:
    """Delete a latest value inside [start, end); with `rewrite`, the newest point left
    takes its place."""
    status = await conn.execute(
        "DELETE FROM ts_latest WHERE device = $1 AND key = $2 AND ts >= $3 AND ts < $4", *where
    )
    if status.split()[-1] != "0" and rewrite:
        await conn.execute(
            "INSERT INTO ts_latest (device, key, ts, kind, long_v, dbl_v, str_v) "
            "SELECT device, key, ts, kind, long_v, dbl_v, str_v FROM ts_kv "
            "WHERE device = $1 AND key = $2 ORDER BY ts DESC LIMIT 1",
            *where[:2],
        )


def encode(value: Value) -> Columns:
    """(kind, long_v, dbl_v, str_v) for a typed value; bool must be tested before int."""
    if isinstance(value, bool):
        return KIND_BOOL, int(value), None, None
    if isinstance(value, int):
        return KIND_LONG, value, None, None
    if isinstance(value, float):
        return KIND_DOUBLE, None, value, None
    if isinstance(value, str):
        if "\x00" in value:
            return KIND_STR_WITH_NUL, None, None, orjson.dumps(value).decode()
        return KIND_STR, None, None, value
    return KIND_JSON, None, None, orjson.dumps(value).decode()


def decode(kind: int, long_v: int | None, dbl_v: float | None, str_v: str | None) -> Value:
    if kind == KIND_BOOL:
        return bool(long_v)
    if kind == KIND_LONG:
        return int(long_v or 0)
    if kind == KIND_DOUBLE:
        return float(dbl_v or 0.0)
    if kind in (KIND_JSON, KIND_STR_WITH_NUL):
        result: Value = orjson.loads(str_v or "null")
        return result
    return str_v or ""


def split_url(url: str) -> tuple[str, str | None]:
    """The DSN for asyncpg, and the schema named by `?schema=` (asyncpg does not know it)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


class PostgresStore(PostgresOtaPackages):
    """`Store` on PostgreSQL. Create it, then `await open()`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._dsn, self._schema = split_url(url)
        self._pool: asyncpg.Pool | None = None
        self._key_ids: dict[str, int] = {}
        self.applied: list[int] = []
        self.schema_version = 0

    # -- connections ---------------------------------------------------------------------
    def _where(self) -> str:
        parts = urlsplit(self._dsn)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"

    async def open(self) -> None:
        settings = {"application_name": APPLICATION_NAME}
        if self._schema:
            settings["search_path"] = self._schema
        try:
            if self._schema:
                conn = await asyncpg.connect(self._dsn)
                try:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
                finally:
                    await conn.close()
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=POOL_SIZE, server_settings=settings
            )
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            raise StorageError(
                f"cannot connect to PostgreSQL at {self._where()}: {exc}; check --store "
                "(postgresql://user:password@host:5432/database)"
            ) from exc
        self.applied = await self._migrate()
        await self._drop_stale_uploads()

    async def _migrate(self) -> list[int]:
        """Apply pending migrations (one node at a time); returns the versions applied."""
        applied: list[int] = []
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS tinyboard_migration "
                "(version INTEGER PRIMARY KEY, applied_ts BIGINT NOT NULL)"
            )
            done = {r[0] for r in await conn.fetch("SELECT version FROM tinyboard_migration")}
            for version, script in common.migrations("postgres"):
                if version in done:
                    continue
                await conn.execute(script)
                await conn.execute(
                    "INSERT INTO tinyboard_migration VALUES ($1, $2)", version, _now_ms()
                )
                applied.append(version)
            self.schema_version = max(done | set(applied), default=0)
        return applied

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _conn(self) -> Any:
        if self._pool is None:
            raise StorageError("the PostgreSQL store is not open")
        return self._pool.acquire()

    async def _run(self, op: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `op` on a pooled connection; on a lost connection, retry with backoff (the
        caller waits: for the writer that is backpressure, never a lost reading)."""
        if self._pool is None:
            raise StorageError("the PostgreSQL store is not open")
        pool = self._pool
        for attempt, wait in enumerate((*RETRY_SECONDS, None)):
            conn = None
            try:
                conn = await pool.acquire()
                return await op(conn)
            except CONNECTION_ERRORS as exc:
                if conn is not None:
                    with contextlib.suppress(asyncpg.exceptions.InterfaceError):
                        conn.terminate()  # a broken connection never goes back to the pool
                if wait is None:
                    where = self._where()
                    raise StorageError(f"PostgreSQL at {where} is unreachable: {exc}") from exc
                log.warning(
                    "PostgreSQL connection lost (%s); retry %d in %.1f s", exc, attempt + 1, wait
                )
                await asyncio.sleep(wait)
            except asyncpg.PostgresError as exc:
                raise self._error(exc) from exc
            finally:
                if conn is not None:
                    with contextlib.suppress(*CONNECTION_ERRORS):
                        await pool.release(conn)
        raise AssertionError("unreachable")

    def _error(self, exc: asyncpg.PostgresError) -> StorageError:
        if isinstance(exc, asyncpg.exceptions.DiskFullError):
            return StoreFullError(
                f"PostgreSQL at {self._where()} has a full disk ({exc}): free space on the "
                "database server; until then readings are refused and devices are told to "
                "send them again"
            )
        if isinstance(exc, REFUSED_DATA):
            return RejectedDataError(f"PostgreSQL cannot store this data: {exc}")
        return StorageError(f"PostgreSQL error: {exc}")

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        async def op(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows

        return await self._run(op)

    async def _fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        async def op(conn: asyncpg.Connection) -> asyncpg.Record | None:
            row: asyncpg.Record | None = await conn.fetchrow(sql, *args)
            return row

        return await self._run(op)

    async def _execute(self, sql: str, *args: object) -> str:
        async def op(conn: asyncpg.Connection) -> str:
            status: str = await conn.execute(sql, *args)
            return status

        return await self._run(op)

    # -- devices -------------------------------------------------------------------------
    async def create_device(
        self,
        name: str,
        *,
        type: str | None = None,
        label: str = "",
        token: str | None = None,
        profile_id: str | None = None,
        additional_info: dict[str, Any] | None = None,
        firmware_id: str | None = None,
        software_id: str | None = None,
    ) -> Device:
        name = check_name(name)
        token = check_token(token) if token is not None else new_token()
        row = (str(uuid.uuid4()), name, label, token, _now_ms(), info_json(additional_info),
               firmware_id, software_id)  # fmt: skip
        return await self._insert_device(row, type, profile_id)

    async def import_device(self, device: Device) -> Device:
        row = (device.id, device.name, device.label, device.token, device.created_ts,
               info_json(device.additional_info), device.firmware_id,
               device.software_id)  # fmt: skip
        return await self._insert_device(row, device.type, None)

    async def _insert_device(
        self, values: tuple[object, ...], type: str | None, profile_id: str | None
    ) -> Device:
        async def op(conn: asyncpg.Connection) -> Device:
            async with conn.transaction():
                profile, profile_name = await _profile_for(conn, type, profile_id)
                await check_packages(conn, values[-2:], profile)
                try:
                    row = await conn.fetchrow(
                        "INSERT INTO device (id, name, label, token, created_ts, "
                        "additional_info, firmware_id, software_id, type, profile_id) VALUES "
                        f"($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {DEVICE_COLUMNS}",
                        *values, profile_name, profile,
                    )  # fmt: skip
                except asyncpg.UniqueViolationError as exc:
                    what = "token" if "token" in str(exc) else "name"
                    raise ConflictError(f"a device with this {what} already exists") from None
                return device_from(row)

        return await self._run(op)

    async def update_device(
        self,
        ref: str,
        *,
        name: str,
        label: str,
        type: str | None = None,
        profile_id: str | None = None,
        additional_info: dict[str, Any] | None,
        firmware_id: str | None,
        software_id: str | None,
    ) -> Device:
        device = await self.get_device(ref)
        name = check_name(name)
        info = info_json(additional_info)

        async def op(conn: asyncpg.Connection) -> Device:
            async with conn.transaction():
                profile, profile_name = await _profile_for(conn, type, profile_id)
                await check_packages(conn, (firmware_id, software_id), profile)
                try:
                    row = await conn.fetchrow(
                        "UPDATE device SET name = $1, label = $2, type = $3, profile_id = $4, "
                        "additional_info = $5, firmware_id = $6, software_id = $7 "
                        f"WHERE seq = $8 RETURNING {DEVICE_COLUMNS}",
                        name, label, profile_name, profile, info, firmware_id, software_id,
                        device.key,
                    )  # fmt: skip
                except asyncpg.UniqueViolationError:
                    raise ConflictError("a device with this name already exists") from None
                if row is None:
                    raise NotFoundError("the device was deleted meanwhile")
                return device_from(row)

        return await self._run(op)

    async def get_device(self, ref: str) -> Device:
        row = await self._fetchrow(
            f"SELECT {DEVICE_COLUMNS} FROM device WHERE id = $1 OR name = $1", ref
        )
        if row is None:
            raise NotFoundError(f"no device with id or name {ref!r} (see `tinyboard device list`)")
        return device_from(row)

    async def device_by_token(self, token: str) -> Device | None:
        row = await self._fetchrow(f"SELECT {DEVICE_COLUMNS} FROM device WHERE token = $1", token)
        return device_from(row) if row else None

    async def list_devices(
        self,
        *,
        text_search: str = "",
        type: str | None = None,
        limit: int = 1000,
        offset: int = 0,
        order_by: str = "name",
        descending: bool = False,
    ) -> list[Device]:
        order = f"{order_column(order_by)} {'DESC' if descending else 'ASC'}, seq"
        rows = await self._fetch(
            f"SELECT {DEVICE_COLUMNS} FROM device WHERE {DEVICES_FOUND} "
            f"ORDER BY {order} LIMIT $3 OFFSET $4",
            like_prefix(text_search), type, min(limit, 2**62), offset,
        )  # fmt: skip
        return [device_from(r) for r in rows]

    async def count_devices(self, *, text_search: str = "", type: str | None = None) -> int:
        row = await self._fetchrow(
            f"SELECT count(*) FROM device WHERE {DEVICES_FOUND}", like_prefix(text_search), type
        )
        return int(row[0]) if row else 0

    async def device_generation(self) -> int:
        row = await self._fetchrow("SELECT value FROM setting WHERE name = 'device_generation'")
        return int(row[0]) if row else 0

    async def delete_device(self, ref: str) -> Device:
        device = await self.get_device(ref)

        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                for table in ("ts_kv", "ts_latest", "attribute", "alarm", "alarm_pending"):
                    await conn.execute(f"DELETE FROM {table} WHERE device = $1", device.key)
                await conn.execute("DELETE FROM device WHERE seq = $1", device.key)

        await self._run(op)
        return device

    # -- device profiles -----------------------------------------------------------------
    async def profiles(self) -> list[DeviceProfile]:
        rows = await self._fetch(f"SELECT {PROFILE_COLUMNS} FROM device_profile ORDER BY name")
        return [profile_from(r) for r in rows]

    async def get_profile(self, ref: str) -> DeviceProfile:
        row = await self._fetchrow(
            f"SELECT {PROFILE_COLUMNS} FROM device_profile WHERE id = $1 OR name = $1", ref
        )
        if row is None:
            raise NotFoundError(f"no device profile with id or name {ref!r}")
        return profile_from(row)

    async def save_profile(self, profile: DeviceProfile) -> DeviceProfile:
        async def op(conn: asyncpg.Connection) -> DeviceProfile:
            async with conn.transaction():
                await check_packages(conn, (profile.firmware_id, profile.software_id), profile.id)
                try:
                    await conn.execute(
                        f"INSERT INTO device_profile ({PROFILE_SAVED}) "
                        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET "
                        "name = excluded.name, description = excluded.description, "
                        "profile_data = excluded.profile_data, settings = excluded.settings, "
                        "firmware_id = excluded.firmware_id, software_id = excluded.software_id",
                        *profile_row(profile),
                    )
                except asyncpg.UniqueViolationError:
                    raise ConflictError("a device profile with this name already exists") from None
                await conn.execute(
                    "UPDATE device SET type = $1 WHERE profile_id = $2 AND type <> $1",
                    profile.name, profile.id,
                )  # fmt: skip
                return await _profile_by_id(conn, profile.id)

        return await self._run(op)

    async def delete_profile(self, profile_id: str) -> DeviceProfile:
        async def op(conn: asyncpg.Connection) -> DeviceProfile:
            async with conn.transaction():
                profile = await _profile_by_id(conn, profile_id)
                if profile.default:
                    raise InUseError(DEFAULT_UNDELETABLE)
                if await conn.fetchrow("SELECT 1 FROM device WHERE profile_id = $1", profile_id):
                    raise InUseError(PROFILE_IN_USE)
                await delete_profile_packages(conn, profile_id)
                await conn.execute("DELETE FROM device_profile WHERE id = $1", profile_id)
                return profile

        return await self._run(op)

    async def set_default_profile(self, profile_id: str) -> DeviceProfile:
        async def op(conn: asyncpg.Connection) -> DeviceProfile:
            async with conn.transaction():
                await _profile_by_id(conn, profile_id)
                await conn.execute("UPDATE device_profile SET is_default = FALSE WHERE is_default")
                await conn.execute(
                    "UPDATE device_profile SET is_default = TRUE WHERE id = $1", profile_id
                )
                return await _profile_by_id(conn, profile_id)

        return await self._run(op)

    # -- writes (the hot path) -----------------------------------------------------------
    async def write(self, readings: Sequence[Reading], attributes: Sequence[AttributeRow]) -> None:
        rows: dict[tuple[int, str, int], Value] = {}
        for device, key, ts, value in readings:
            rows[device, key, ts] = value  # a later write of the same point wins
        latest: dict[tuple[int, str], tuple[int, Value]] = {}
        for (device, key, ts), value in rows.items():
            newest = latest.get((device, key))
            if newest is None or ts >= newest[0]:
                latest[device, key] = (ts, value)
        attrs: dict[tuple[int, str, str], tuple[int, Value]] = {}
        for device, scope, key, ts, value in attributes:
            attrs[device, scope, key] = (ts, value)

        try:  # encoded before the transaction: a value orjson cannot write fails its job alone
            ts_rows = [(d, k, ts, encode(v)) for (d, k, ts), v in rows.items()]
            latest_rows = [(d, k, ts, encode(v)) for (d, k), (ts, v) in latest.items()]
            attr_rows = [(d, s, k, ts, *encode(v)) for (d, s, k), (ts, v) in attrs.items()]
        except ENCODING_ERRORS as exc:
            raise RejectedDataError(f"cannot encode a value for PostgreSQL: {exc}") from exc

        async def op(conn: asyncpg.Connection) -> None:
            key_ids = await self._key_ids_for(conn, {k for _, k in latest})
            async with conn.transaction():
                if ts_rows:
                    await conn.execute(UPSERT_TS, *_columns(
                        [(d, key_ids[k], ts, *v) for d, k, ts, v in ts_rows]
                    ))  # fmt: skip
                    await conn.execute(UPSERT_LATEST, *_columns(
                        [(d, key_ids[k], ts, *v) for d, k, ts, v in latest_rows]
                    ))  # fmt: skip
                if attr_rows:
                    await conn.execute(UPSERT_ATTRIBUTES, *_columns(attr_rows))

        await self._run(op)

    async def _key_ids_for(self, conn: asyncpg.Connection, keys: set[str]) -> dict[str, int]:
        """Telemetry key ids, adding new keys in their own statement (committed at once, so
        a failed batch never leaves the cache pointing at ids that do not exist)."""
        missing = [k for k in keys if k not in self._key_ids]
        if missing:
            await conn.execute(
                "INSERT INTO ts_key (key) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
                missing,
            )
            for key, key_id in await conn.fetch(
                "SELECT key, id FROM ts_key WHERE key = any($1::text[])", missing
            ):
                self._key_ids[key] = key_id
        return self._key_ids

    # -- reads ---------------------------------------------------------------------------
    async def latest(self, device: int, keys: Sequence[str] | None = None) -> dict[str, TsValue]:
        rows = await self._fetch(
            "SELECT k.key, l.ts, l.kind, l.long_v, l.dbl_v, l.str_v FROM ts_latest l "
            "JOIN ts_key k ON k.id = l.key WHERE l.device = $1",
            device,
        )
        wanted = set(keys) if keys is not None else None
        return {
            r[0]: (r[1], decode(r[2], r[3], r[4], r[5]))
            for r in rows
            if wanted is None or r[0] in wanted
        }

    async def newest_stamps(self, since_ms: int) -> dict[int, int]:
        rows = await self._fetch(
            "SELECT device, MAX(ts) FROM ts_latest WHERE ts >= $1 GROUP BY device", since_ms
        )
        return {r[0]: r[1] for r in rows}

    async def history(
        self,
        device: int,
        key: str,
        *,
        start_ts: int,
        end_ts: int,
        limit: int = 100,
        descending: bool = True,
    ) -> list[TsValue]:
        order = "DESC" if descending else "ASC"
        rows = await self._fetch(
            "SELECT ts, kind, long_v, dbl_v, str_v FROM ts_kv WHERE device = $1 "
            "AND key = (SELECT id FROM ts_key WHERE key = $2) AND ts >= $3 AND ts < $4 "
            f"ORDER BY ts {order} LIMIT $5",
            device, key, start_ts, end_ts, limit,
        )  # fmt: skip
        return [(r[0], decode(r[1], r[2], r[3], r[4])) for r in rows]

    async def aggregate(
        self,
        device: int,
        key: str,
        *,
        start_ts: int,
        end_ts: int,
        interval: int,
        agg: Aggregation,
        limit: int = 100,
        descending: bool = False,
    ) -> list[TsValue]:
        if agg == "NONE":
            return await self.history(
                device, key, start_ts=start_ts, end_ts=end_ts, limit=limit, descending=descending
            )
        if interval <= 0:
            raise ValueError("interval must be a positive number of milliseconds")
        value = "count(*)" if agg == "COUNT" else f"{_AGG[agg]}({NUMBER})"
        numeric = "" if agg == "COUNT" else f"AND kind IN ({KIND_LONG}, {KIND_DOUBLE})"
        order = "DESC" if descending else "ASC"
        rows = await self._fetch(
            f"SELECT (ts - $3) / $5 AS bucket, {value} FROM ts_kv "
            "WHERE device = $1 AND key = (SELECT id FROM ts_key WHERE key = $2) "
            f"AND ts >= $3 AND ts < $4 {numeric} "
            f"GROUP BY bucket ORDER BY bucket {order} LIMIT $6",
            device, key, start_ts, end_ts, interval, limit,
        )  # fmt: skip
        out: list[TsValue] = []
        for bucket, result in rows:
            first = start_ts + bucket * interval
            middle = (first + min(first + interval, end_ts)) // 2
            out.append((middle, int(result) if agg == "COUNT" else float(result)))
        return out

    async def delete_history_before(self, ts: int, limit: int) -> int:
        status = await self._execute(
            "DELETE FROM ts_kv WHERE ctid = any(ARRAY("
            "SELECT ctid FROM ts_kv WHERE ts < $1 LIMIT $2))",
            ts, limit,
        )  # fmt: skip
        return int(status.split()[-1])

    async def delete_timeseries(
        self,
        device: int,
        keys: Sequence[str],
        *,
        start_ts: int,
        end_ts: int,
        delete_latest: bool = True,
        rewrite_latest: bool = False,
    ) -> int:
        async def op(conn: asyncpg.Connection) -> int:
            deleted = 0
            async with conn.transaction():
                for (key_id,) in await conn.fetch(
                    "SELECT id FROM ts_key WHERE key = any($1::text[])", list(keys)
                ):
                    where = (device, key_id, start_ts, end_ts)
                    status = await conn.execute(
                        "DELETE FROM ts_kv WHERE device = $1 AND key = $2 AND ts >= $3 AND ts < $4",
                        *where,
                    )
                    deleted += int(status.split()[-1])
                    if delete_latest:
                        await _delete_latest(conn, where, rewrite_latest)
            return deleted

        return await self._run(op)

    async def delete_attributes(self, device: int, scope: Scope, keys: Sequence[str]) -> list[str]:
        rows = await self._fetch(
            "DELETE FROM attribute WHERE device = $1 AND scope = $2 AND key = any($3::text[]) "
            "RETURNING key",
            device, scope, list(keys),
        )  # fmt: skip
        gone = {r[0] for r in rows}
        return [k for k in dict.fromkeys(keys) if k in gone]

    async def ts_keys(self, device: int) -> list[str]:
        rows = await self._fetch(
            "SELECT k.key FROM ts_latest l JOIN ts_key k ON k.id = l.key WHERE l.device = $1 "
            "ORDER BY k.key",
            device,
        )
        return [r[0] for r in rows]

    async def attributes(
        self, device: int, scope: Scope, keys: Sequence[str] | None = None
    ) -> dict[str, TsValue]:
        rows = await self._fetch(
            "SELECT key, ts, kind, long_v, dbl_v, str_v FROM attribute "
            "WHERE device = $1 AND scope = $2",
            device, scope,
        )  # fmt: skip
        wanted = set(keys) if keys is not None else None
        return {
            r[0]: (r[1], decode(r[2], r[3], r[4], r[5]))
            for r in rows
            if wanted is None or r[0] in wanted
        }

    # -- users and settings --------------------------------------------------------------
    async def create_user(self, email: str, password_hash: str, *, role: str) -> User:
        return await self._insert_user((str(uuid.uuid4()), email, password_hash, role, _now_ms()))

    async def import_user(self, user: User) -> None:
        await self._insert_user(
            (user.id, user.email, user.password_hash, user.role, user.created_ts)
        )

    async def _insert_user(self, values: tuple[object, ...]) -> User:
        email = values[1]
        try:
            row = await self._fetchrow(
                f"INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5) "
                f"RETURNING {USER_COLUMNS}",
                *values,
            )
        except StorageError as exc:
            if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                raise ConflictError(f"a user with e-mail {email} already exists") from None
            raise
        assert row is not None
        return user_from(row)

    async def user_by_email(self, email: str) -> User | None:
        row = await self._fetchrow(
            f"SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1)", email
        )
        return user_from(row) if row else None

    async def list_users(self) -> list[User]:
        return [
            user_from(r)
            for r in await self._fetch(f"SELECT {USER_COLUMNS} FROM users ORDER BY email")
        ]

    async def set_password_hash(self, email: str, password_hash: str) -> None:
        status = await self._execute(
            "UPDATE users SET password_hash = $1 WHERE lower(email) = lower($2)",
            password_hash, email,
        )  # fmt: skip
        if status == "UPDATE 0":
            raise NotFoundError(f"no user with e-mail {email} (see `tinyboard user list`)")

    async def delete_user(self, email: str) -> None:
        status = await self._execute("DELETE FROM users WHERE lower(email) = lower($1)", email)
        if status == "DELETE 0":
            raise NotFoundError(f"no user with e-mail {email} (see `tinyboard user list`)")

    async def settings(self) -> dict[str, str]:
        return {r[0]: r[1] for r in await self._fetch("SELECT name, value FROM setting")}

    async def setting(self, name: str, default: str) -> str:
        await self._execute(
            "INSERT INTO setting (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            name, default,
        )  # fmt: skip
        row = await self._fetchrow("SELECT value FROM setting WHERE name = $1", name)
        assert row is not None
        return str(row[0])

    # -- alarms --------------------------------------------------------------------------
    async def alarm_rules(self) -> list[dict[str, Any]]:
        rows = await self._fetch("SELECT spec FROM alarm_rule ORDER BY created_ts, id")
        return [orjson.loads(r[0]) for r in rows]

    async def save_alarm_rule(self, rule_id: str, spec: dict[str, Any]) -> None:
        await self._execute(
            "INSERT INTO alarm_rule (id, spec, created_ts) VALUES ($1, $2, $3) "
            "ON CONFLICT (id) DO UPDATE SET spec = excluded.spec",
            rule_id, orjson.dumps(spec).decode(), _now_ms(),
        )  # fmt: skip

    async def delete_alarm_rule(self, rule_id: str) -> None:
        async def op(conn: asyncpg.Connection) -> str:
            async with conn.transaction():
                await conn.execute("DELETE FROM alarm_pending WHERE rule = $1", rule_id)
                status: str = await conn.execute("DELETE FROM alarm_rule WHERE id = $1", rule_id)
                return status

        if await self._run(op) == "DELETE 0":
            raise NotFoundError(f"no alarm rule {rule_id!r}")

    async def save_alarm(self, alarm: Alarm) -> None:
        try:
            await self._execute(ALARM_INSERT, *common.alarm_row(alarm))
        except StorageError as exc:
            if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                raise ConflictError("this device already has an open alarm of this type") from None
            raise

    async def get_alarm(self, alarm_id: str) -> Alarm:
        row = await self._fetchrow(f"SELECT {ALARM_COLUMNS} {ALARM_FROM} WHERE a.id = $1", alarm_id)
        if row is None:
            raise NotFoundError(f"no alarm {alarm_id!r}")
        return alarm_from(row)

    async def open_alarms(self) -> list[Alarm]:
        return [
            alarm_from(r)
            for r in await self._fetch(f"SELECT {ALARM_COLUMNS} {ALARM_FROM} WHERE NOT a.cleared")
        ]

    async def list_alarms(
        self,
        *,
        device: int | None = None,
        statuses: Sequence[AlarmStatus] | None = None,
        severities: Sequence[Severity] | None = None,
        types: Sequence[str] | None = None,
        assignee: str | None = None,
        text_search: str = "",
        start_ts: int = 0,
        end_ts: int = 2**62,
        sort: AlarmSort = "createdTime",
        descending: bool = True,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Alarm], int]:
        where = common.AlarmWhere(lambda n: f"${n}", like="ILIKE")
        condition = where.build(
            device=device, statuses=statuses, severities=severities, types=types, assignee=assignee,
            text_search=text_search, start_ts=start_ts, end_ts=end_ts,
        )  # fmt: skip
        if condition is None:
            return [], 0
        args = where.args
        total = await self._fetchrow(f"SELECT count(*) {ALARM_FROM} WHERE {condition}", *args)
        rows = await self._fetch(
            f"SELECT {ALARM_COLUMNS} {ALARM_FROM} WHERE {condition} "
            f"ORDER BY {common.alarm_order(sort, descending)} "
            f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
            *args, limit, offset,
        )  # fmt: skip
        return [alarm_from(r) for r in rows], int(total[0]) if total else 0

    async def alarm_types(self) -> list[str]:
        return sorted(r[0] for r in await self._fetch("SELECT DISTINCT type FROM alarm"))

    async def delete_alarm(self, alarm_id: str) -> Alarm:
        alarm = await self.get_alarm(alarm_id)
        await self._execute("DELETE FROM alarm WHERE id = $1", alarm_id)
        return alarm

    async def alarm_pending(self) -> list[tuple[str, int, int]]:
        rows = await self._fetch("SELECT rule, device, since_ts FROM alarm_pending")
        return [(r[0], r[1], r[2]) for r in rows]

    async def set_alarm_pending(self, rule_id: str, device: int, since_ts: int | None) -> None:
        if since_ts is None:
            await self._execute(
                "DELETE FROM alarm_pending WHERE rule = $1 AND device = $2", rule_id, device
            )
        else:
            await self._execute(
                "INSERT INTO alarm_pending (rule, device, since_ts) VALUES ($1, $2, $3) "
                "ON CONFLICT (rule, device) DO UPDATE SET since_ts = excluded.since_ts",
                rule_id, device, since_ts,
            )  # fmt: skip

    async def last_telemetry(self) -> dict[int, int]:
        rows = await self._fetch("SELECT device, max(ts) FROM ts_latest GROUP BY device")
        return {r[0]: r[1] for r in rows}


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows → one list per column, for `unnest`."""
    return [list(column) for column in zip(*rows, strict=True)]


async def _profile_for(
    conn: asyncpg.Connection, type: str | None, profile_id: str | None
) -> tuple[str, str]:
    """(id, name) of profile `profile_id`, else of the profile named `type` (created if
    missing: ThingsBoard's findOrCreateDeviceProfile), else of the default profile."""
    select = "SELECT id, name FROM device_profile WHERE"
    if profile_id is not None:
        row = await conn.fetchrow(f"{select} id = $1", profile_id)
    elif type:
        await conn.execute(
            "INSERT INTO device_profile (id, name, created_ts, profile_data) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
            str(uuid.uuid4()), type, _now_ms(), default_profile_json(),
        )  # fmt: skip
        row = await conn.fetchrow(f"{select} name = $1", type)
    else:
        row = await conn.fetchrow(f"{select} is_default")
    if row is None:
        raise NotFoundError(f"no device profile {profile_id!r} (see GET /api/deviceProfiles)")
    return str(row[0]), str(row[1])


async def _profile_by_id(conn: asyncpg.Connection, profile_id: str) -> DeviceProfile:
    row = await conn.fetchrow(
        f"SELECT {PROFILE_COLUMNS} FROM device_profile WHERE id = $1", profile_id
    )
    if row is None:
        raise NotFoundError(f"no device profile with id {profile_id!r}")
    return profile_from(row)


DEVICES_FOUND = "name LIKE $1 AND ($2::text IS NULL OR type = $2)"
"""The devices `list_devices` and `count_devices` page through."""


def _now_ms() -> int:
    return int(time.time() * 1000)
