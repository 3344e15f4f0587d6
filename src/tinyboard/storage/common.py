"""What every store shares: value kinds, alarm status flags, search patterns, migrations."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

import orjson

from tinyboard.core.models import Alarm, Device, DeviceProfile, User, default_profile_data

KIND_BOOL, KIND_LONG, KIND_DOUBLE, KIND_STR, KIND_JSON = range(5)

STATUS_FLAGS: dict[str, tuple[int, int]] = {
    "ACTIVE_UNACK": (0, 0),
    "ACTIVE_ACK": (0, 1),
    "CLEARED_UNACK": (1, 0),
    "CLEARED_ACK": (1, 1),
}
"""Alarm status → (cleared, acknowledged)."""


DEVICE_COLUMNS = "seq, id, name, type, label, token, created_ts, profile_id"
PROFILE_COLUMNS = "id, name, created_ts, is_default, description, profile_data, settings"
DEVICE_ORDER = {"name": "name", "createdTime": "created_ts", "type": "type", "label": "label"}
"""ThingsBoard's device `sortProperty` → our column (`deviceProfileName` is `type`)."""
PROFILE_IN_USE = "The device profile referenced by the devices cannot be deleted!"
DEFAULT_UNDELETABLE = "Deletion of Default Device Profile is prohibited!"
"""ThingsBoard's own texts (DeviceProfileServiceImpl), answered with 400 as there."""
USER_COLUMNS = "id, email, password_hash, role, created_ts"
ALARM_COLUMNS = (
    "a.id, a.device, d.id, d.name, a.type, a.severity, a.acknowledged, a.cleared, "
    "a.start_ts, a.end_ts, a.ack_ts, a.clear_ts, a.details"
)
ALARM_FROM = "FROM alarm a JOIN device d ON d.seq = a.device"
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
    )


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
    )


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
