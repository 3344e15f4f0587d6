"""What every store shares: value kinds, alarm status flags, search patterns, migrations."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson

from tinyboard.core.models import (
    Alarm,
    AlarmStatus,
    Device,
    DeviceProfile,
    OtaPackage,
    OtaType,
    Severity,
    User,
    default_profile_data,
)

KIND_BOOL, KIND_LONG, KIND_DOUBLE, KIND_STR, KIND_JSON = range(5)

STATUS_FLAGS: dict[str, tuple[int, int]] = {
    "ACTIVE_UNACK": (0, 0),
    "ACTIVE_ACK": (0, 1),
    "CLEARED_UNACK": (1, 0),
    "CLEARED_ACK": (1, 1),
}
"""Alarm status → (cleared, acknowledged)."""


DEVICE_COLUMNS = (
    "seq, id, name, type, label, token, created_ts, profile_id, additional_info, "
    "firmware_id, software_id"
)
PROFILE_COLUMNS = (
    "id, name, created_ts, is_default, description, profile_data, settings, firmware_id, "
    "software_id"
)
DEVICE_ORDER = {"name": "name", "createdTime": "created_ts", "type": "type", "label": "label"}
"""ThingsBoard's device `sortProperty` → our column (`deviceProfileName` is `type`)."""
PROFILE_IN_USE = "The device profile referenced by the devices cannot be deleted!"
DEFAULT_UNDELETABLE = "Deletion of Default Device Profile is prohibited!"
"""ThingsBoard's own texts (DeviceProfileServiceImpl), answered with 400 as there."""
USER_COLUMNS = "id, email, password_hash, role, created_ts"
ALARM_COLUMNS = (
    "a.id, a.device, d.id, d.name, a.type, a.severity, a.acknowledged, a.cleared, "
    "a.start_ts, a.end_ts, a.ack_ts, a.clear_ts, a.details, a.created_ts, d.label, "
    "a.propagate, a.propagate_to_owner, a.propagate_to_tenant, a.propagate_relation_types, "
    "a.assignee, u.email, a.assign_ts"
)
ALARM_FROM = "FROM alarm a JOIN device d ON d.seq = a.device LEFT JOIN users u ON u.id = a.assignee"
"""Both stores select these columns in this order; the `*_from` functions read such rows
(SQLite tuples and asyncpg records alike)."""


def device_from(row: Sequence[Any]) -> Device:
    return Device(
        key=int(row[0]),
        id=str(row[1]),
        name=str(row[2]),
        type=str(row[3]),
        label=str(row[4]),
        token=str(row[5]),
        created_ts=int(row[6]),
        profile_id=str(row[7]),
        additional_info=None if row[8] is None else orjson.loads(row[8]),
        firmware_id=row[9],
        software_id=row[10],
    )


def info_json(additional_info: dict[str, Any] | None) -> str | None:
    """A device's `additionalInfo` as its column holds it (NULL: never had one)."""
    return None if additional_info is None else orjson.dumps(additional_info).decode()


def profile_from(row: Sequence[Any]) -> DeviceProfile:
    return DeviceProfile(
        id=str(row[0]),
        name=str(row[1]),
        created_ts=int(row[2]),
        default=bool(row[3]),
        description=str(row[4]),
        profile_data=orjson.loads(row[5]),
        settings=orjson.loads(row[6]),
        firmware_id=row[7],
        software_id=row[8],
    )


PROFILE_SAVED = (
    "id, name, created_ts, description, profile_data, settings, firmware_id, software_id"
)
"""The columns `save_profile` writes (`is_default` changes only by `set_default_profile`)."""


def profile_row(profile: DeviceProfile) -> tuple[object, ...]:
    """A profile as the values of PROFILE_SAVED."""
    return (
        profile.id,
        profile.name,
        profile.created_ts,
        profile.description,
        orjson.dumps(profile.profile_data).decode(),
        orjson.dumps(profile.settings).decode(),
        profile.firmware_id,
        profile.software_id,
    )


def user_from(row: Sequence[Any]) -> User:
    return User(
        id=str(row[0]),
        email=str(row[1]),
        password_hash=str(row[2]),
        role=str(row[3]),
        created_ts=int(row[4]),
    )


def alarm_from(row: Sequence[Any]) -> Alarm:
    return Alarm(
        id=row[0],
        device_key=row[1],
        device_id=row[2],
        device_name=row[3],
        type=row[4],
        severity=row[5],
        acknowledged=bool(row[6]),
        cleared=bool(row[7]),
        start_ts=row[8],
        end_ts=row[9],
        ack_ts=row[10],
        clear_ts=row[11],
        details=orjson.loads(row[12]),
        created_ts=row[13],
        device_label=row[14],
        propagate=bool(row[15]),
        propagate_to_owner=bool(row[16]),
        propagate_to_tenant=bool(row[17]),
        propagate_relation_types=tuple(orjson.loads(row[18])),
        assignee_id=row[19],
        assignee_email=row[20],
        assign_ts=row[21],
    )


def alarm_row(alarm: Alarm) -> tuple[object, ...]:
    """The values of `ALARM_INSERT`'s placeholders, in order (both stores)."""
    return (
        alarm.id, alarm.device_key, alarm.type, alarm.severity, alarm.acknowledged,
        alarm.cleared, alarm.start_ts, alarm.end_ts, alarm.ack_ts, alarm.clear_ts,
        orjson.dumps(alarm.details).decode(), alarm.created_ts, alarm.propagate,
        alarm.propagate_to_owner, alarm.propagate_to_tenant,
        orjson.dumps(alarm.propagate_relation_types).decode(), alarm.assignee_id,
        alarm.assign_ts,
    )  # fmt: skip


def alarm_insert(placeholders: Sequence[str]) -> str:
    """Insert or update an alarm by id: its originator, type and creation never change."""
    return (
        "INSERT INTO alarm (id, device, type, severity, acknowledged, cleared, start_ts, "
        "end_ts, ack_ts, clear_ts, details, created_ts, propagate, propagate_to_owner, "
        "propagate_to_tenant, propagate_relation_types, assignee, assign_ts) "
        f"VALUES ({', '.join(placeholders)}) "
        "ON CONFLICT (id) DO UPDATE SET severity = excluded.severity, "
        "acknowledged = excluded.acknowledged, cleared = excluded.cleared, "
        "start_ts = excluded.start_ts, end_ts = excluded.end_ts, ack_ts = excluded.ack_ts, "
        "clear_ts = excluded.clear_ts, details = excluded.details, "
        "propagate = excluded.propagate, propagate_to_owner = excluded.propagate_to_owner, "
        "propagate_to_tenant = excluded.propagate_to_tenant, "
        "propagate_relation_types = excluded.propagate_relation_types, "
        "assignee = excluded.assignee, assign_ts = excluded.assign_ts"
    )


ALARM_STATUS_SQL = (
    "CASE WHEN a.cleared THEN 'CLEARED_' ELSE 'ACTIVE_' END || "
    "CASE WHEN a.acknowledged THEN 'ACK' ELSE 'UNACK' END"
)
"""An alarm's status as text, for the text search and sorting."""

ALARM_SORT: dict[str, tuple[str, ...]] = {
    "createdTime": ("a.created_ts",),
    "startTs": ("a.start_ts",),
    "endTs": ("a.end_ts",),
    "ackTs": ("a.ack_ts",),
    "clearTs": ("a.clear_ts",),
    "type": ("a.type",),
    # by name, as ThingsBoard (which keeps both as text): CRITICAL, INDETERMINATE, MAJOR, ...
    "severity": ("a.severity",),
    "status": (f"({ALARM_STATUS_SQL})",),
}
"""ThingsBoard's alarm sort properties → SQL; the id breaks ties so pages never overlap."""


def alarm_order(sort: str, descending: bool) -> str:
    direction = " DESC" if descending else ""
    terms = [f"{expr}{direction}" for expr in ALARM_SORT[sort]]
    return ", ".join([*terms, f"a.id{direction}"])


@dataclass(slots=True)
class AlarmWhere:
    """The WHERE clause of an alarm list and its arguments, for either store: `mark` gives
    the placeholder of the n-th argument (`?` for SQLite, `$n` for PostgreSQL)."""

    mark: Callable[[int], str]
    like: str = "LIKE"
    terms: list[str] = field(default_factory=list)
    args: list[object] = field(default_factory=list)

    def arg(self, value: object) -> str:
        self.args.append(value)
        return self.mark(len(self.args))

    def any_of(self, column: str, values: Sequence[object]) -> None:
        self.terms.append(f"{column} IN ({', '.join(self.arg(v) for v in values)})")

    def build(
        self,
        *,
        device: int | None,
        statuses: Sequence[AlarmStatus] | None,
        severities: Sequence[Severity] | None,
        types: Sequence[str] | None,
        assignee: str | None,
        text_search: str,
        start_ts: int,
        end_ts: int,
    ) -> str | None:
        """The condition, or None when nothing can match (an empty list filter)."""
        if any(f is not None and not f for f in (statuses, severities, types)):
            return None
        self.terms += [
            f"a.created_ts >= {self.arg(start_ts)}",
            f"a.created_ts < {self.arg(end_ts)}",
        ]
        if device is not None:
            self.terms.append(f"a.device = {self.arg(device)}")
        if statuses is not None:
            pairs = [STATUS_FLAGS[s] for s in statuses]
            self.terms.append(
                "("
                + " OR ".join(
                    f"(a.cleared = {self.arg(bool(c))} AND a.acknowledged = {self.arg(bool(k))})"
                    for c, k in pairs
                )
                + ")"
            )
        if severities is not None:
            self.any_of("a.severity", severities)
        if types is not None:
            self.any_of("a.type", types)
        if assignee is not None:
            self.terms.append(f"a.assignee = {self.arg(assignee)}")
        if text_search:
            pattern = like_anywhere(text_search)
            searched = ("a.type", "a.severity", f"({ALARM_STATUS_SQL})", "d.name")
            self.terms.append(
                "("
                + " OR ".join(f"{e} {self.like} {self.arg(pattern)} ESCAPE '\\'" for e in searched)
                + ")"
            )
        return " AND ".join(self.terms)


def like_anywhere(text: str) -> str:
    """A LIKE pattern matching text that contains `text` (wildcards escaped with \\)."""
    return "%" + like_prefix(text)


def default_profile_json() -> str:
    return orjson.dumps(default_profile_data()).decode()


def order_column(order_by: str) -> str:
    """The device column to sort by; only DEVICE_ORDER's (never text from a request)."""
    if order_by not in DEVICE_ORDER.values():
        raise ValueError(f"cannot order devices by {order_by!r}")
    return order_by


def like_prefix(text: str) -> str:
    """A LIKE pattern matching names that start with `text` (wildcards escaped with \\)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def migrations(backend: str) -> list[tuple[int, str]]:
    """(version, SQL script) of every migration of a backend, in order."""
    folder = resources.files("tinyboard.storage") / "migrations" / backend
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


# -- OTA packages --------------------------------------------------------------------------
OTA_CHUNK = 65_536
"""Bytes per stored chunk of a package (the last one may be shorter): a device's chunk
request reads only the rows covering its range, and no request holds a whole image."""
OTA_CHUNKS_PER_WRITE = 16
"""Chunks written (and read while streaming) per transaction: 1 MiB, so an upload never
holds the writer for long and other devices' readings commit in between."""
OTA_UPLOAD_STALE_MS = 3_600_000
"""An upload started this long ago and not finished was cut off by a crash: its chunks go
(at the next start, on any node, so one still running elsewhere is never touched)."""
OTA_COLUMNS = (
    "id, created_ts, profile_id, type, title, version, tag, url, file_name, content_type, "
    "checksum_algorithm, checksum, data_size, additional_info, data_upload"
)
OTA_INFO_SAVED = (
    "id, created_ts, profile_id, type, title, version, tag, url, file_name, content_type, "
    "checksum_algorithm, checksum, data_size, additional_info"
)
"""The columns `save_ota_package` writes: never `data_upload`, which only a completed
upload sets."""
OTA_TITLE_TAKEN = "OtaPackage with such title and version already exists!"
OTA_DATA_SET = "Updating otaPackage data is prohibited!"
OTA_GONE = "The OTA package was deleted meanwhile"
OTA_HAS_DATA = "data_upload IS NOT NULL OR (url IS NOT NULL AND url <> '')"
"""SQL for ThingsBoard's hasData: bytes stored, or a URL."""


def ota_from(row: Sequence[Any]) -> OtaPackage:
    return OtaPackage(
        id=str(row[0]),
        created_ts=int(row[1]),
        profile_id=row[2],
        type=row[3],
        title=str(row[4]),
        version=str(row[5]),
        tag=row[6],
        url=row[7],
        file_name=row[8],
        content_type=row[9],
        checksum_algorithm=row[10],
        checksum=row[11],
        data_size=None if row[12] is None else int(row[12]),
        additional_info=None if row[13] is None else orjson.loads(row[13]),
        data_upload=row[14],
    )


def ota_row(package: OtaPackage) -> tuple[object, ...]:
    """A package as the values of OTA_INFO_SAVED."""
    return (
        package.id, package.created_ts, package.profile_id, package.type, package.title,
        package.version, package.tag, package.url, package.file_name, package.content_type,
        package.checksum_algorithm, package.checksum, package.data_size,
        info_json(package.additional_info),
    )  # fmt: skip


OTA_ASSIGNABLE = f"SELECT type, profile_id, ({OTA_HAS_DATA}) FROM ota_package WHERE id ="
"""What `assignment_refusal` needs to know about a package (the id's placeholder follows)."""


def assignment_refusal(
    found: Sequence[Any] | None, type: OtaType, profile_id: str | None
) -> str | None:
    """ThingsBoard's reason (AbstractHasOtaPackageValidator) why a package, read with
    OTA_ASSIGNABLE, cannot be assigned as `type` to a profile or to a device of a profile;
    None if it can."""
    what = type.lower()
    if found is None:
        return f"Can't assign non-existent {what}!"
    package_type, package_profile, has_data = found
    if package_type != type:
        return f"Can't assign {what} with type: {package_type}"
    if not has_data:
        return f"Can't assign {what} with empty data!"
    if package_profile != profile_id:
        return f"Can't assign {what} with different deviceProfile!"
    return None


def ota_in_use(type: OtaType, by_profile: bool) -> str:
    """ThingsBoard's text (BaseOtaPackageService.deleteOtaPackage) for a package that a
    profile or a device still runs."""
    what = "otaPackage" if type == "FIRMWARE" else "software"
    whom = "device profile" if by_profile else "devices"
    return f"The {what} referenced by the {whom} cannot be deleted!"


def ota_column(type: OtaType) -> str:
    """The column of a profile or device naming its package of `type`."""
    return "firmware_id" if type == "FIRMWARE" else "software_id"


def chunk_span(offset: int, size: int) -> tuple[int, int]:
    """The first and last chunk index holding bytes [offset, offset + size)."""
    return offset // OTA_CHUNK, (offset + max(size, 1) - 1) // OTA_CHUNK


class Rechunker:
    """Cuts a stream of byte strings of any length into OTA_CHUNK pieces (the last one
    shorter), numbered from 0, without holding more than one chunk and one piece."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self.index = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._pending += data
        out = []
        while len(self._pending) >= OTA_CHUNK:
            out.append((self.index, bytes(self._pending[:OTA_CHUNK])))
            del self._pending[:OTA_CHUNK]
            self.index += 1
        return out

    def rest(self) -> list[tuple[int, bytes]]:
        if not self._pending:
            return []
        out = [(self.index, bytes(self._pending))]
        self._pending.clear()
        self.index += 1
        return out


async def write_chunks(
    source: AsyncIterable[bytes], write: Callable[[list[tuple[int, bytes]]], Awaitable[None]]
) -> int:
    """Cut `source` into chunks and hand them to `write` OTA_CHUNKS_PER_WRITE at a time;
    returns the number of bytes. Holds at most one batch in memory."""
    cutter = Rechunker()
    size = 0
    batch: list[tuple[int, bytes]] = []
    async for piece in source:
        size += len(piece)
        batch += cutter.feed(piece)
        if len(batch) >= OTA_CHUNKS_PER_WRITE:
            await write(batch)
            batch = []
    batch += cutter.rest()
    if batch:
        await write(batch)
    return size


def chunk_count(package: OtaPackage) -> int:
    return -(-(package.data_size or 0) // OTA_CHUNK)


def cut_range(rows: Sequence[Any], first: int, offset: int, size: int) -> bytes:
    """Bytes [offset, offset + size) out of consecutive chunk rows (idx, data) starting at
    chunk `first`."""
    start = offset - first * OTA_CHUNK
    return b"".join(bytes(r[1]) for r in rows)[start : start + size]
