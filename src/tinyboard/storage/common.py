"""What every store shares: value kinds, alarm status flags, search patterns, migrations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson

from tinyboard.core.models import (
    Alarm,
    AlarmStatus,
    Device,
    DeviceProfile,
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


DEVICE_COLUMNS = "seq, id, name, type, label, token, created_ts, profile_id, additional_info"
PROFILE_COLUMNS = "id, name, created_ts, is_default, description, profile_data, settings"
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
    )


PROFILE_SAVED = "id, name, created_ts, description, profile_data, settings"
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
