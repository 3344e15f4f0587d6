"""The embedded store: one SQLite file in WAL mode.

Strategy (datasette's): every write goes through one writer thread that owns the only
writing connection, so transactions never contend inside the process; reads run on a small
pool of threads with their own read-only connections. SQLite releases the GIL while it
works, so the writer uses the second core. Other processes (the `tinyboard device` CLI)
may write to the same file; `busy_timeout` makes them wait their turn.

Failures: every transaction goes through `_transaction`, which rolls back only if SQLite
has not already done so itself (it does on a full disk), so the error raised is the real
one. The key-id cache only learns ids once their transaction has committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from tinyboard.core.devices import check_name, check_token, new_token
from tinyboard.core.models import (
    OTA_TYPES,
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
from tinyboard.storage.sqlite_ota import (
    SQLiteOtaPackages,
    check_assignment,
    delete_profile_packages,
)
from tinyboard.storage.sqlite_tx import transaction as _transaction

T = TypeVar("T")


UPSERT_TS = (
    "INSERT INTO ts_kv (device, key, ts, kind, v) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (device, key, ts) DO UPDATE SET kind = excluded.kind, v = excluded.v"
)
SPLIT_BUCKETS = 200
"""From this many buckets on, an aggregation is split across the reader threads."""
BUCKET_WALK_LIMIT = 100_000
"""Up to this many buckets, aggregate bucket by bucket; beyond it, one GROUP BY scan."""
_SQL_AGGREGATE = {
    "MIN": "min(v)",
    "MAX": "max(v)",
    "AVG": "avg(v)",
    "SUM": "sum(v)",
    "COUNT": "count(*)",
}
UPSERT_LATEST = (
    "INSERT INTO ts_latest (device, key, ts, kind, v) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (device, key) DO UPDATE SET ts = excluded.ts, kind = excluded.kind, "
    "v = excluded.v WHERE excluded.ts >= ts_latest.ts"
)
UPSERT_ATTRIBUTE = (
    "INSERT INTO attribute (device, scope, key, ts, kind, v) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (device, scope, key) DO UPDATE SET ts = excluded.ts, kind = excluded.kind, "
    "v = excluded.v"
)


def encode(value: Value) -> tuple[int, object]:
    """(kind, column value) for a typed value; bool must be tested before int."""
    if isinstance(value, bool):
        return KIND_BOOL, int(value)
    if isinstance(value, int):
        return KIND_LONG, value
    if isinstance(value, float):
        return KIND_DOUBLE, value
    if isinstance(value, str):
        return KIND_STR, value
    return KIND_JSON, orjson.dumps(value).decode()


def decode(kind: int, v: object) -> Value:
    if kind == KIND_BOOL:
        return bool(v)
    if kind == KIND_JSON:
        result: Value = orjson.loads(v)  # type: ignore[arg-type]
        return result
    if kind == KIND_DOUBLE:
        return float(v)  # type: ignore[arg-type]
    return v  # type: ignore[return-value]


DEVICES_FOUND = "name LIKE :name ESCAPE '\\' AND (:type IS NULL OR type = :type)"
"""The devices `list_devices` and `count_devices` page through."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def migrations() -> list[tuple[int, str]]:
    return common.migrations("sqlite")


ALARM_INSERT = common.alarm_insert(["?"] * 18)


REFUSED_DATA = (sqlite3.IntegrityError, sqlite3.DataError, OverflowError, TypeError, ValueError)
"""What a write raises for the values it was given (a number SQLite cannot hold, JSON
orjson cannot write), not for the database's state."""


def _statements(script: str) -> Iterable[str]:
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip() and not pending.strip().startswith("--"):
        yield pending


class SQLiteStore(SQLiteOtaPackages):
    """`Store` on a SQLite file. Create it, then `await open()`."""

    def __init__(self, path: Path, *, sync: str = "full", readers: int = 2) -> None:
        self.path = path
        self._sync = "FULL" if sync == "full" else "NORMAL"
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="tinyboard-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="tinyboard-reader")
        self._reader_count = readers
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._key_ids: dict[str, int] = {}
        self.applied: list[int] = []
        self.schema_version = 0

    # -- connections ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._sync}")
        with self._lock:
            self._connections.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    async def _on(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> StorageError:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL:
            return StoreFullError(
                f"the disk holding {self.path} is full ({exc}): free space on it or move "
                "--data-dir to a bigger disk; until then readings are refused and devices "
                "are told to send them again"
            )
        return StorageError(f"SQLite error on {self.path}: {exc}")

    async def _write_op(self, fn: Callable[..., T], *args: object) -> T:
        return await self._on(self._writer, fn, *args)

    async def _read_op(self, fn: Callable[..., T], *args: object) -> T:
        return await self._on(self._readers, fn, *args)

    # -- lifecycle -----------------------------------------------------------------------
    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the data directory {self.path.parent}: {exc}"
            ) from None
        self.applied = await self._write_op(self._migrate)
        await self._write_op(self._drop_stale_uploads)

    def _migrate(self) -> list[int]:
        conn = self._conn()
        applied = []
        for version, script in migrations():
            with _transaction(conn):
                (current,) = conn.execute("PRAGMA user_version").fetchone()
                if current < version:
                    for statement in _statements(script):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {version}")
                    applied.append(version)
        self.schema_version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        return applied

    async def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

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
        return await self._write_op(self._insert_device, row, type, profile_id)

    def _insert_device(
        self, row: tuple[object, ...], type: str | None, profile_id: str | None
    ) -> Device:
        conn = self._conn()
        with _transaction(conn):
            profile, profile_name = self._profile_for(conn, type, profile_id)
            _check_packages(conn, row[-2:], profile)
            try:
                cur = conn.execute(
                    "INSERT INTO device (id, name, label, token, created_ts, additional_info, "
                    "firmware_id, software_id, type, profile_id) "
                    f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {DEVICE_COLUMNS}",
                    (*row, profile_name, profile),
                )
            except sqlite3.IntegrityError as exc:
                what = "token" if "token" in str(exc) else "name"
                raise ConflictError(f"a device with this {what} already exists") from None
            return device_from(cur.fetchone())

    def _profile_for(
        self, conn: sqlite3.Connection, type: str | None, profile_id: str | None
    ) -> tuple[str, str]:
        """(id, name) of profile `profile_id`, else of the profile named `type` (created if
        missing: ThingsBoard's findOrCreateDeviceProfile), else of the default profile."""
        select = "SELECT id, name FROM device_profile WHERE"
        if profile_id is not None:
            row = conn.execute(f"{select} id = ?", (profile_id,)).fetchone()
        elif type:
            conn.execute(
                "INSERT INTO device_profile (id, name, created_ts, profile_data) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (str(uuid.uuid4()), type, _now_ms(), default_profile_json()),
            )
            row = conn.execute(f"{select} name = ?", (type,)).fetchone()
        else:
            row = conn.execute(f"{select} is_default").fetchone()
        if row is None:
            raise NotFoundError(f"no device profile {profile_id!r} (see GET /api/deviceProfiles)")
        return str(row[0]), str(row[1])

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
        values = (check_name(name), label, info_json(additional_info), firmware_id, software_id)
        return await self._write_op(self._update_device, device.key, values, type, profile_id)

    def _update_device(
        self, seq: int, values: tuple[object, ...], type: str | None, profile_id: str | None
    ) -> Device:
        conn = self._conn()
        with _transaction(conn):
            profile, profile_name = self._profile_for(conn, type, profile_id)
            _check_packages(conn, values[-2:], profile)
            try:
                cur = conn.execute(
                    "UPDATE device SET name = ?, label = ?, additional_info = ?, "
                    "firmware_id = ?, software_id = ?, type = ?, "
                    f"profile_id = ? WHERE seq = ? RETURNING {DEVICE_COLUMNS}",
                    (*values, profile_name, profile, seq),
                )
            except sqlite3.IntegrityError:
                raise ConflictError("a device with this name already exists") from None
            row = cur.fetchone()
            if row is None:
                raise NotFoundError("the device was deleted meanwhile")
            return device_from(row)

    async def get_device(self, ref: str) -> Device:
        device = await self._read_op(self._find_device, ref)
        if device is None:
            raise NotFoundError(f"no device with id or name {ref!r} (see `tinyboard device list`)")
        return device

    def _find_device(self, ref: str) -> Device | None:
        row = (
            self._conn()
            .execute(f"SELECT {DEVICE_COLUMNS} FROM device WHERE id = ? OR name = ?", (ref, ref))
            .fetchone()
        )
        return device_from(row) if row else None

    async def device_by_token(self, token: str) -> Device | None:
        return await self._read_op(self._device_by_token, token)

    def _device_by_token(self, token: str) -> Device | None:
        row = (
            self._conn()
            .execute(f"SELECT {DEVICE_COLUMNS} FROM device WHERE token = ?", (token,))
            .fetchone()
        )
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
        found = {"name": like_prefix(text_search), "type": type, "limit": limit, "offset": offset}
        return await self._read_op(self._list_devices, found, order)

    def _list_devices(self, found: dict[str, object], order: str) -> list[Device]:
        rows = self._conn().execute(
            f"SELECT {DEVICE_COLUMNS} FROM device WHERE {DEVICES_FOUND} "
            f"ORDER BY {order} LIMIT :limit OFFSET :offset",
            found,
        )
        return [device_from(r) for r in rows]

    async def count_devices(self, *, text_search: str = "", type: str | None = None) -> int:
        found = {"name": like_prefix(text_search), "type": type}
        return await self._read_op(self._count_devices, found)

    def _count_devices(self, found: dict[str, object]) -> int:
        sql = f"SELECT count(*) FROM device WHERE {DEVICES_FOUND}"
        (count,) = self._conn().execute(sql, found).fetchone()
        return int(count)

    async def device_generation(self) -> int:
        return await self._read_op(self._device_generation)

    def _device_generation(self) -> int:
        row = (
            self._conn()
            .execute("SELECT value FROM setting WHERE name = 'device_generation'")
            .fetchone()
        )
        return int(row[0]) if row else 0

    async def delete_device(self, ref: str) -> Device:
        device = await self.get_device(ref)
        await self._write_op(self._delete_device, device.key)
        return device

    def _delete_device(self, seq: int) -> None:
        conn = self._conn()
        with _transaction(conn):
            for table in ("ts_kv", "ts_latest", "attribute", "alarm", "alarm_pending"):
                conn.execute(f"DELETE FROM {table} WHERE device = ?", (seq,))
            conn.execute("DELETE FROM device WHERE seq = ?", (seq,))

    # -- device profiles -----------------------------------------------------------------
    async def profiles(self) -> list[DeviceProfile]:
        return await self._read_op(self._profiles)

    def _profiles(self) -> list[DeviceProfile]:
        rows = self._conn().execute(f"SELECT {PROFILE_COLUMNS} FROM device_profile ORDER BY name")
        return [profile_from(r) for r in rows]

    async def get_profile(self, ref: str) -> DeviceProfile:
        row = await self._read_op(self._find_profile, ref)
        if row is None:
            raise NotFoundError(f"no device profile with id or name {ref!r}")
        return profile_from(row)

    def _find_profile(self, ref: str) -> Any:
        sql = f"SELECT {PROFILE_COLUMNS} FROM device_profile WHERE id = ? OR name = ?"
        return self._conn().execute(sql, (ref, ref)).fetchone()

    async def save_profile(self, profile: DeviceProfile) -> DeviceProfile:
        return await self._write_op(self._save_profile, profile_row(profile))

    def _save_profile(self, row: tuple[object, ...]) -> DeviceProfile:
        conn = self._conn()
        with _transaction(conn):
            _check_packages(conn, row[-2:], str(row[0]))
            try:
                conn.execute(
                    f"INSERT INTO device_profile ({PROFILE_SAVED}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
                    "description = excluded.description, profile_data = excluded.profile_data, "
                    "settings = excluded.settings, firmware_id = excluded.firmware_id, "
                    "software_id = excluded.software_id",
                    row,
                )
            except sqlite3.IntegrityError:
                raise ConflictError("a device profile with this name already exists") from None
            profile_id, name = row[0], row[1]
            conn.execute(
                "UPDATE device SET type = ? WHERE profile_id = ? AND type <> ?",
                (name, profile_id, name),
            )
            return profile_from(self._find_profile(str(profile_id)))

    async def delete_profile(self, profile_id: str) -> DeviceProfile:
        return await self._write_op(self._delete_profile, profile_id)

    def _delete_profile(self, profile_id: str) -> DeviceProfile:
        conn = self._conn()
        with _transaction(conn):
            profile = self._profile_by_id(conn, profile_id)
            if profile.default:
                raise InUseError(DEFAULT_UNDELETABLE)
            if conn.execute("SELECT 1 FROM device WHERE profile_id = ?", (profile_id,)).fetchone():
                raise InUseError(PROFILE_IN_USE)
            delete_profile_packages(conn, profile_id)
            conn.execute("DELETE FROM device_profile WHERE id = ?", (profile_id,))
            return profile

    def _profile_by_id(self, conn: sqlite3.Connection, profile_id: str) -> DeviceProfile:
        sql = f"SELECT {PROFILE_COLUMNS} FROM device_profile WHERE id = ?"
        row = conn.execute(sql, (profile_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no device profile with id {profile_id!r}")
        return profile_from(row)

    async def set_default_profile(self, profile_id: str) -> DeviceProfile:
        return await self._write_op(self._set_default_profile, profile_id)

    def _set_default_profile(self, profile_id: str) -> DeviceProfile:
        conn = self._conn()
        with _transaction(conn):
            self._profile_by_id(conn, profile_id)
            conn.execute("UPDATE device_profile SET is_default = 0 WHERE is_default")
            conn.execute("UPDATE device_profile SET is_default = 1 WHERE id = ?", (profile_id,))
            return self._profile_by_id(conn, profile_id)

    # -- writes (the hot path) -----------------------------------------------------------
    async def write(self, readings: Sequence[Reading], attributes: Sequence[AttributeRow]) -> None:
        await self._write_op(self._write, readings, attributes)

    def _write(self, readings: Sequence[Reading], attributes: Sequence[AttributeRow]) -> None:
        conn = self._conn()
        new_keys: dict[str, int] = {}
        try:
            with _transaction(conn):
                self._write_rows(conn, readings, attributes, new_keys)
        except REFUSED_DATA as exc:
            raise RejectedDataError(f"SQLite cannot store this data: {exc}") from exc
        self._key_ids.update(new_keys)  # committed now: before, a failure would undo them

    def _write_rows(
        self,
        conn: sqlite3.Connection,
        readings: Sequence[Reading],
        attributes: Sequence[AttributeRow],
        new_keys: dict[str, int],
    ) -> None:
        key_ids = self._key_ids
        rows: list[tuple[int, int, int, int, object]] = []
        latest: dict[tuple[int, int], tuple[int, int, int, int, object]] = {}
        for device, key, ts, value in readings:
            key_id = key_ids.get(key)
            if key_id is None:
                key_id = _key_id(conn, key, new_keys)
            kind, v = encode(value)
            row = (device, key_id, ts, kind, v)
            rows.append(row)
            newest = latest.get((device, key_id))
            if newest is None or ts >= newest[2]:
                latest[device, key_id] = row
        conn.executemany(UPSERT_TS, rows)
        conn.executemany(UPSERT_LATEST, latest.values())
        if attributes:
            conn.executemany(
                UPSERT_ATTRIBUTE,
                [(d, s, k, ts, *encode(v)) for d, s, k, ts, v in attributes],
            )

    # -- reads ---------------------------------------------------------------------------
    async def latest(self, device: int, keys: Sequence[str] | None = None) -> dict[str, TsValue]:
        return await self._read_op(self._latest, device, keys)

    async def newest_stamps(self, since_ms: int) -> dict[int, int]:
        return await self._read_op(self._newest_stamps, since_ms)

    def _newest_stamps(self, since_ms: int) -> dict[int, int]:
        rows = self._conn().execute(
            "SELECT device, MAX(ts) FROM ts_latest WHERE ts >= ? GROUP BY device", (since_ms,)
        )
        return dict(rows.fetchall())

    def _latest(self, device: int, keys: Sequence[str] | None) -> dict[str, TsValue]:
        rows = self._conn().execute(
            "SELECT k.key, l.ts, l.kind, l.v FROM ts_latest l JOIN ts_key k ON k.id = l.key "
            "WHERE l.device = ?",
            (device,),
        )
        wanted = set(keys) if keys is not None else None
        return {
            key: (ts, decode(kind, v))
            for key, ts, kind, v in rows
            if wanted is None or key in wanted
        }

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
        return await self._read_op(self._history, device, key, start_ts, end_ts, limit, descending)

    def _history(
        self, device: int, key: str, start: int, end: int, limit: int, descending: bool
    ) -> list[TsValue]:
        order = "DESC" if descending else "ASC"
        rows = self._conn().execute(
            "SELECT ts, kind, v FROM ts_kv WHERE device = ? "
            "AND key = (SELECT id FROM ts_key WHERE key = ?) AND ts >= ? AND ts < ? "
            f"ORDER BY ts {order} LIMIT ?",
            (device, key, start, end, limit),
        )
        return [(ts, decode(kind, v)) for ts, kind, v in rows]

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
        if end_ts <= start_ts:
            return []  # an empty range has no buckets (and nothing to split into parts)
        buckets = -(-(end_ts - start_ts) // interval)
        parts = self._reader_count if buckets >= SPLIT_BUCKETS else 1
        # A long range is cut at bucket boundaries and the parts run on the reader threads at
        # once: SQLite releases the GIL while it scans, so a big query uses every core.
        step = -(-buckets // parts) * interval
        bounds = [(lo, min(lo + step, end_ts)) for lo in range(start_ts, end_ts, step)]
        results = await asyncio.gather(
            *(
                self._read_op(
                    self._aggregate, device, key, lo, hi, interval, agg, limit, descending
                )
                for lo, hi in bounds
            )
        )
        merged = [
            point for part in (reversed(results) if descending else results) for point in part
        ]
        return merged[:limit]

    def _aggregate(
        self,
        device: int,
        key: str,
        start: int,
        end: int,
        interval: int,
        agg: Aggregation,
        limit: int,
        descending: bool,
    ) -> list[TsValue]:
        numeric = "" if agg == "COUNT" else f"AND kind IN ({KIND_LONG}, {KIND_DOUBLE})"
        value = "nullif(count(*), 0)" if agg == "COUNT" else _SQL_AGGREGATE[agg]
        order = "DESC" if descending else "ASC"
        buckets = -(-(end - start) // interval)
        conn = self._conn()
        (key_id,) = conn.execute("SELECT id FROM ts_key WHERE key = ?", (key,)).fetchone() or (
            None,
        )
        if key_id is None:
            return []
        if buckets <= BUCKET_WALK_LIMIT:
            # One indexed range scan per bucket: rows come in ts order and no GROUP BY sorter
            # is needed. Each bucket's bounds are computed once, in the CTE, not per row
            # scanned; empty buckets are dropped here, not by an outer SQL WHERE, which would
            # make SQLite evaluate the correlated subquery twice.
            walked = conn.execute(
                "WITH RECURSIVE b(i, lo, hi) AS (SELECT 0, :start, min(:start + :step, :end) "
                "UNION ALL SELECT i + 1, hi, min(hi + :step, :end) FROM b WHERE i + 1 < :n) "
                f"SELECT i, (SELECT {value} FROM ts_kv WHERE device = :device AND key = :key "
                f"AND ts >= b.lo AND ts < b.hi {numeric}) FROM b",
                {
                    "start": start,
                    "step": interval,
                    "end": end,
                    "n": buckets,
                    "device": device,
                    "key": key_id,
                },
            ).fetchall()
            found = [row for row in walked if row[1] is not None]
            rows = (found[::-1] if descending else found)[:limit]
        else:
            rows = conn.execute(
                f"SELECT (ts - ?) / ? AS bucket, {value} FROM ts_kv "
                f"WHERE device = ? AND key = ? AND ts >= ? AND ts < ? {numeric} "
                f"GROUP BY bucket ORDER BY bucket {order} LIMIT ?",
                (start, interval, device, key_id, start, end, limit),
            ).fetchall()
        out: list[TsValue] = []
        for bucket, result in rows:
            first = start + bucket * interval
            out.append(((first + min(first + interval, end)) // 2, result))
        return out

    async def delete_history_before(self, ts: int, limit: int) -> int:
        return await self._write_op(self._delete_history_before, ts, limit)

    def _delete_history_before(self, ts: int, limit: int) -> int:
        cur = self._conn().execute(
            "DELETE FROM ts_kv WHERE (device, key, ts) IN "
            "(SELECT device, key, ts FROM ts_kv WHERE ts < ? LIMIT ?)",
            (ts, limit),
        )
        return int(cur.rowcount)

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
        return await self._write_op(
            self._delete_timeseries, device, keys, start_ts, end_ts, delete_latest, rewrite_latest
        )

    def _delete_timeseries(
        self,
        device: int,
        keys: Sequence[str],
        start: int,
        end: int,
        delete_latest: bool,
        rewrite_latest: bool,
    ) -> int:
        conn = self._conn()
        deleted = 0
        with _transaction(conn):
            for key in keys:
                row = conn.execute("SELECT id FROM ts_key WHERE key = ?", (key,)).fetchone()
                if row is None:
                    continue
                where = (device, row[0], start, end)
                cur = conn.execute(
                    "DELETE FROM ts_kv WHERE device = ? AND key = ? AND ts >= ? AND ts < ?", where
                )
                deleted += cur.rowcount
                if delete_latest:
                    self._delete_latest(conn, where, rewrite_latest)
        return deleted

    @staticmethod
    def _delete_latest(
        conn: sqlite3.Connection, where: tuple[int, int, int, int], rewrite: bool
    ) -> None:
        cur = conn.execute(
            "DELETE FROM ts_latest WHERE device = ? AND key = ? AND ts >= ? AND ts < ?", where
        )
        if cur.rowcount and rewrite:
            conn.execute(
                "INSERT INTO ts_latest (device, key, ts, kind, v) SELECT device, key, ts, kind, v "
                "FROM ts_kv WHERE device = ? AND key = ? ORDER BY ts DESC LIMIT 1",
                where[:2],
            )

    async def delete_attributes(self, device: int, scope: Scope, keys: Sequence[str]) -> list[str]:
        return await self._write_op(self._delete_attributes, device, scope, keys)

    def _delete_attributes(self, device: int, scope: Scope, keys: Sequence[str]) -> list[str]:
        conn = self._conn()
        gone: list[str] = []
        with _transaction(conn):
            for key in dict.fromkeys(keys):
                cur = conn.execute(
                    "DELETE FROM attribute WHERE device = ? AND scope = ? AND key = ?",
                    (device, scope, key),
                )
                if cur.rowcount:
                    gone.append(key)
        return gone

    async def ts_keys(self, device: int) -> list[str]:
        return await self._read_op(self._ts_keys, device)

    def _ts_keys(self, device: int) -> list[str]:
        rows = self._conn().execute(
            "SELECT k.key FROM ts_latest l JOIN ts_key k ON k.id = l.key WHERE l.device = ? "
            "ORDER BY k.key",
            (device,),
        )
        return [key for (key,) in rows]

    async def attributes(
        self, device: int, scope: Scope, keys: Sequence[str] | None = None
    ) -> dict[str, TsValue]:
        return await self._read_op(self._attributes, device, scope, keys)

    def _attributes(
        self, device: int, scope: Scope, keys: Sequence[str] | None
    ) -> dict[str, TsValue]:
        rows = self._conn().execute(
            "SELECT key, ts, kind, v FROM attribute WHERE device = ? AND scope = ?",
            (device, scope),
        )
        wanted = set(keys) if keys is not None else None
        return {
            key: (ts, decode(kind, v))
            for key, ts, kind, v in rows
            if wanted is None or key in wanted
        }

    # -- users and settings --------------------------------------------------------------
    async def create_user(self, email: str, password_hash: str, *, role: str) -> User:
        row = (str(uuid.uuid4()), email, password_hash, role, int(time.time() * 1000))
        return await self._write_op(self._insert_user, row)

    def _insert_user(self, row: tuple[object, ...]) -> User:
        try:
            cur = self._conn().execute(
                f"INSERT INTO users ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?) "
                f"RETURNING {USER_COLUMNS}",
                row,
            )
        except sqlite3.IntegrityError:
            raise ConflictError(f"a user with e-mail {row[1]} already exists") from None
        return user_from(cur.fetchone())

    async def user_by_email(self, email: str) -> User | None:
        return await self._read_op(self._user_by_email, email)

    def _user_by_email(self, email: str) -> User | None:
        row = (
            self._conn()
            .execute(f"SELECT {USER_COLUMNS} FROM users WHERE email = ?", (email,))
            .fetchone()
        )
        return user_from(row) if row else None

    async def list_users(self) -> list[User]:
        return await self._read_op(self._list_users)

    def _list_users(self) -> list[User]:
        rows = self._conn().execute(f"SELECT {USER_COLUMNS} FROM users ORDER BY email")
        return [user_from(r) for r in rows]

    async def set_password_hash(self, email: str, password_hash: str) -> None:
        await self._write_op(self._set_password_hash, email, password_hash)

    def _set_password_hash(self, email: str, password_hash: str) -> None:
        cur = self._conn().execute(
            "UPDATE users SET password_hash = ? WHERE email = ?", (password_hash, email)
        )
        if cur.rowcount == 0:
            raise NotFoundError(f"no user with e-mail {email} (see `tinyboard user list`)")

    async def delete_user(self, email: str) -> None:
        await self._write_op(self._delete_user, email)

    def _delete_user(self, email: str) -> None:
        cur = self._conn().execute("DELETE FROM users WHERE email = ?", (email,))
        if cur.rowcount == 0:
            raise NotFoundError(f"no user with e-mail {email} (see `tinyboard user list`)")

    async def settings(self) -> dict[str, str]:
        return await self._read_op(self._settings)

    def _settings(self) -> dict[str, str]:
        return dict(self._conn().execute("SELECT name, value FROM setting").fetchall())

    async def import_device(self, device: Device) -> Device:
        row = (device.id, device.name, device.label, device.token, device.created_ts,
               info_json(device.additional_info), device.firmware_id,
               device.software_id)  # fmt: skip
        return await self._write_op(self._insert_device, row, device.type, None)

    async def import_user(self, user: User) -> None:
        row = (user.id, user.email, user.password_hash, user.role, user.created_ts)
        await self._write_op(self._insert_user, row)

    async def setting(self, name: str, default: str) -> str:
        return await self._write_op(self._setting, name, default)

    def _setting(self, name: str, default: str) -> str:
        conn = self._conn()
        conn.execute("INSERT OR IGNORE INTO setting (name, value) VALUES (?, ?)", (name, default))
        (value,) = conn.execute("SELECT value FROM setting WHERE name = ?", (name,)).fetchone()
        return str(value)

    # -- alarms --------------------------------------------------------------------------
    async def alarm_rules(self) -> list[dict[str, Any]]:
        return await self._read_op(self._alarm_rules)

    def _alarm_rules(self) -> list[dict[str, Any]]:
        rows = self._conn().execute("SELECT spec FROM alarm_rule ORDER BY created_ts, id")
        return [orjson.loads(spec) for (spec,) in rows]

    async def save_alarm_rule(self, rule_id: str, spec: dict[str, Any]) -> None:
        await self._write_op(self._save_alarm_rule, rule_id, orjson.dumps(spec).decode())

    def _save_alarm_rule(self, rule_id: str, spec: str) -> None:
        self._conn().execute(
            "INSERT INTO alarm_rule (id, spec, created_ts) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET spec = excluded.spec",
            (rule_id, spec, int(time.time() * 1000)),
        )

    async def delete_alarm_rule(self, rule_id: str) -> None:
        if not await self._write_op(self._delete_alarm_rule, rule_id):
            raise NotFoundError(f"no alarm rule {rule_id!r}")

    def _delete_alarm_rule(self, rule_id: str) -> bool:
        conn = self._conn()
        with _transaction(conn):
            conn.execute("DELETE FROM alarm_pending WHERE rule = ?", (rule_id,))
            deleted = conn.execute("DELETE FROM alarm_rule WHERE id = ?", (rule_id,)).rowcount
        return deleted > 0

    async def save_alarm(self, alarm: Alarm) -> None:
        await self._write_op(self._save_alarm, common.alarm_row(alarm))

    def _save_alarm(self, row: tuple[object, ...]) -> None:
        try:
            self._conn().execute(ALARM_INSERT, row)
        except sqlite3.IntegrityError:
            raise ConflictError("this device already has an open alarm of this type") from None

    async def get_alarm(self, alarm_id: str) -> Alarm:
        alarm = await self._read_op(self._get_alarm, alarm_id)
        if alarm is None:
            raise NotFoundError(f"no alarm {alarm_id!r}")
        return alarm

    def _get_alarm(self, alarm_id: str) -> Alarm | None:
        row = (
            self._conn()
            .execute(f"SELECT {ALARM_COLUMNS} {ALARM_FROM} WHERE a.id = ?", (alarm_id,))
            .fetchone()
        )
        return alarm_from(row) if row else None

    async def open_alarms(self) -> list[Alarm]:
        return await self._read_op(self._open_alarms)

    def _open_alarms(self) -> list[Alarm]:
        rows = self._conn().execute(f"SELECT {ALARM_COLUMNS} {ALARM_FROM} WHERE a.cleared = 0")
        return [alarm_from(r) for r in rows]

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
        where = common.AlarmWhere(lambda _: "?")
        condition = where.build(
            device=device, statuses=statuses, severities=severities, types=types, assignee=assignee,
            text_search=text_search, start_ts=start_ts, end_ts=end_ts,
        )  # fmt: skip
        if condition is None:
            return [], 0
        order = common.alarm_order(sort, descending)
        return await self._read_op(self._list_alarms, condition, where.args, order, limit, offset)

    def _list_alarms(
        self, where: str, args: list[object], order: str, limit: int, offset: int
    ) -> tuple[list[Alarm], int]:
        conn = self._conn()
        (total,) = conn.execute(f"SELECT count(*) {ALARM_FROM} WHERE {where}", args).fetchone()
        rows = conn.execute(
            f"SELECT {ALARM_COLUMNS} {ALARM_FROM} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
            [*args, limit, offset],
        )
        return [alarm_from(r) for r in rows], int(total)

    async def alarm_types(self) -> list[str]:
        return await self._read_op(self._alarm_types)

    def _alarm_types(self) -> list[str]:
        return sorted(r[0] for r in self._conn().execute("SELECT DISTINCT type FROM alarm"))

    async def delete_alarm(self, alarm_id: str) -> Alarm:
        alarm = await self.get_alarm(alarm_id)
        await self._write_op(self._delete_alarm, alarm_id)
        return alarm

    def _delete_alarm(self, alarm_id: str) -> None:
        self._conn().execute("DELETE FROM alarm WHERE id = ?", (alarm_id,))

    async def alarm_pending(self) -> list[tuple[str, int, int]]:
        return await self._read_op(self._alarm_pending)

    def _alarm_pending(self) -> list[tuple[str, int, int]]:
        rows = self._conn().execute("SELECT rule, device, since_ts FROM alarm_pending")
        return [(r[0], r[1], r[2]) for r in rows]

    async def set_alarm_pending(self, rule_id: str, device: int, since_ts: int | None) -> None:
        await self._write_op(self._set_alarm_pending, rule_id, device, since_ts)

    def _set_alarm_pending(self, rule_id: str, device: int, since_ts: int | None) -> None:
        if since_ts is None:
            self._conn().execute(
                "DELETE FROM alarm_pending WHERE rule = ? AND device = ?", (rule_id, device)
            )
        else:
            self._conn().execute(
                "INSERT OR REPLACE INTO alarm_pending (rule, device, since_ts) VALUES (?, ?, ?)",
                (rule_id, device, since_ts),
            )

    async def last_telemetry(self) -> dict[int, int]:
        return await self._read_op(self._last_telemetry)

    def _last_telemetry(self) -> dict[int, int]:
        rows = self._conn().execute("SELECT device, max(ts) FROM ts_latest GROUP BY device")
        return {device: ts for device, ts in rows}


def _check_packages(conn: sqlite3.Connection, ids: Sequence[object], profile: str) -> None:
    """The (firmware, software) a profile or a device of `profile` is given must fit it."""
    for type, package in zip(OTA_TYPES, ids, strict=True):
        check_assignment(conn, type, None if package is None else str(package), profile)


def _key_id(conn: sqlite3.Connection, key: str, new_keys: dict[str, int]) -> int:
    """The id of a key not in the cache, added to the open transaction if new; noted in
    `new_keys` (for the cache once committed, and for the key's next reading in the batch)."""
    key_id = new_keys.get(key)
    if key_id is None:
        conn.execute("INSERT OR IGNORE INTO ts_key (key) VALUES (?)", (key,))
        (key_id,) = conn.execute("SELECT id FROM ts_key WHERE key = ?", (key,)).fetchone()
        new_keys[key] = key_id
    return int(key_id)
