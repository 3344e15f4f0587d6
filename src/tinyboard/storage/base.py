"""The storage contract every backend implements (SQLite now, PostgreSQL later).

All methods are coroutines so an async driver fits as well as a thread-backed one.
`write` is the only hot-path call: one transaction per batch, committed before it returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from tinyboard.core.models import (
    Aggregation,
    Alarm,
    AlarmSort,
    AlarmStatus,
    AttributeRow,
    Device,
    DeviceProfile,
    OtaPackage,
    OtaType,
    Reading,
    Scope,
    Severity,
    TsValue,
    User,
)


class Store(Protocol):
    applied: list[int]
    """Migration versions that the last `open` applied."""
    schema_version: int
    """The schema's migration version once open."""

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None:
        """Finish pending work and release connections."""

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
        """Register a device; raises `ConflictError` if the name or token is taken. Its
        profile is `profile_id`, else the one named `type` (created if missing, as
        ThingsBoard does), else the default profile; its `type` is that profile's name.
        `additional_info` is kept as given (callers bound its size: MAX_ADDITIONAL_INFO).
        `firmware_id`/`software_id` must name packages of that profile, of that type, with
        data or a URL (`DataValidationError` with ThingsBoard's text otherwise)."""

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
        """Rename, relabel or move a device to another profile (chosen as in
        `create_device`) and replace its `additional_info` (None clears it, as a ThingsBoard
        save without it does) and its own packages (checked as in `create_device`, against
        the profile it ends up in); `ConflictError` if the name is taken."""

    async def get_device(self, ref: str) -> Device:
        """A device by id or name; raises `NotFoundError`."""

    async def device_by_token(self, token: str) -> Device | None:
        """The device owning an access token, or None."""

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
        """Devices whose name starts with `text_search` (of `type` only, if given), ordered
        by one of `common.DEVICE_ORDER`'s columns (then in order of creation)."""

    async def count_devices(self, *, text_search: str = "", type: str | None = None) -> int:
        """How many devices `list_devices` would page through."""

    async def device_generation(self) -> int:
        """A number that changes whenever any process adds, changes or deletes a device."""

    async def delete_device(self, ref: str) -> Device:
        """Delete a device and all its data; returns what was deleted."""

    async def profiles(self) -> list[DeviceProfile]:
        """Every device profile, by name (an install has a few, so callers page in memory)."""

    async def get_profile(self, ref: str) -> DeviceProfile:
        """A profile by id or name; raises `NotFoundError`."""

    async def save_profile(self, profile: DeviceProfile) -> DeviceProfile:
        """Insert or update a profile by id (never its default flag); a rename renames its
        devices' `type`. `ConflictError` if the name is taken; its packages are checked as
        a device's (`create_device`)."""

    async def delete_profile(self, profile_id: str) -> DeviceProfile:
        """Delete a profile with its OTA packages (ThingsBoard's cascade); `InUseError`
        while devices use it or it is the default."""

    async def set_default_profile(self, profile_id: str) -> DeviceProfile:
        """Make a profile the default (the one devices get when none is named)."""

    async def write(self, readings: Sequence[Reading], attributes: Sequence[AttributeRow]) -> None:
        """Store readings and attributes in one transaction; returns after commit."""

    async def latest(self, device: int, keys: Sequence[str] | None = None) -> dict[str, TsValue]:
        """The newest value of each (or the given) telemetry key of a device."""

    async def newest_stamps(self, since_ms: int) -> dict[int, int]:
        """The `ts` of each device's newest reading, for the devices that have one at or
        after `since_ms` (a restarted server's clocks start past them: core/clock.py)."""

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
        """Points of one key with start_ts <= ts < end_ts."""

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
        """Numeric points of one key in [start_ts, end_ts) folded into `interval`-ms buckets,
        computed by the database. Each bucket is reported at its middle, as ThingsBoard does;
        empty buckets are left out. COUNT counts every point, the others only numbers."""

    async def delete_history_before(self, ts: int, limit: int) -> int:
        """Delete up to `limit` time-series points older than `ts` (the latest values stay);
        returns how many went. Retention calls it until it returns less than `limit`."""

    async def ts_keys(self, device: int) -> list[str]:
        """Telemetry keys a device has sent, sorted."""

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
        """Delete the points of `keys` with start_ts <= ts < end_ts (ThingsBoard's
        deleteEntityTimeseries); returns how many went. A latest value inside the range is
        deleted too when `delete_latest`, and then, with `rewrite_latest`, replaced by the
        newest point left. A key without a latest value drops out of `ts_keys`."""

    async def delete_attributes(self, device: int, scope: Scope, keys: Sequence[str]) -> list[str]:
        """Delete attributes of one scope; returns the keys that existed."""

    async def attributes(
        self, device: int, scope: Scope, keys: Sequence[str] | None = None
    ) -> dict[str, TsValue]:
        """Attributes of one scope: key → (last update ts, value)."""

    async def create_user(self, email: str, password_hash: str, *, role: str) -> User:
        """Add a user; raises `ConflictError` if the e-mail is taken (case-insensitive)."""

    async def user_by_email(self, email: str) -> User | None: ...

    async def list_users(self) -> list[User]: ...

    async def set_password_hash(self, email: str, password_hash: str) -> None:
        """Replace a user's password hash; raises `NotFoundError`."""

    async def delete_user(self, email: str) -> None:
        """Remove a user (case-insensitive e-mail); raises `NotFoundError`."""

    async def settings(self) -> dict[str, str]:
        """Every stored setting (for `tinyboard copy`)."""

    async def import_device(self, device: Device) -> Device:
        """Insert a device as it is elsewhere (id, token, created time); returns it with
        this store's key."""

    async def import_user(self, user: User) -> None:
        """Insert a user as it is elsewhere (id, password hash, role, created time)."""

    async def setting(self, name: str, default: str) -> str:
        """A stored server-wide value; the first caller stores `default` (atomically)."""

    # -- alarms ----------------------------------------------------------------------------
    async def alarm_rules(self) -> list[dict[str, Any]]:
        """Every alarm rule document, oldest first."""

    async def save_alarm_rule(self, rule_id: str, spec: dict[str, Any]) -> None:
        """Insert or replace a rule document."""

    async def delete_alarm_rule(self, rule_id: str) -> None:
        """Delete a rule and its pending conditions; raises `NotFoundError`."""

    async def save_alarm(self, alarm: Alarm) -> None:
        """Insert or update an alarm by id; `ConflictError` for a second open alarm of the
        same (device, type)."""

    async def get_alarm(self, alarm_id: str) -> Alarm:
        """An alarm by id; raises `NotFoundError`."""

    async def open_alarms(self) -> list[Alarm]:
        """Every alarm not cleared."""

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
        """A page of alarms and how many match in all. `None` filters nothing, an empty
        list everything; `text_search` is a case-insensitive substring of the type, severity,
        status or device name; `start_ts`/`end_ts` bound the creation time; `assignee` is a
        user id."""

    async def alarm_types(self) -> list[str]:
        """Every type that some alarm has, sorted by code point (the same on both stores)."""

    async def delete_alarm(self, alarm_id: str) -> Alarm:
        """Delete an alarm; raises `NotFoundError`."""

    async def alarm_pending(self) -> list[tuple[str, int, int]]:
        """(rule id, device key, since ts) of every pending duration condition."""

    async def set_alarm_pending(self, rule_id: str, device: int, since_ts: int | None) -> None:
        """Record (or with None, drop) a pending duration condition."""

    async def last_telemetry(self) -> dict[int, int]:
        """Device key → the newest telemetry timestamp it has stored."""

    # -- OTA packages ----------------------------------------------------------------------
    async def ota_packages(self) -> list[OtaPackage]:
        """Every OTA package, oldest first (an install has tens, so callers page in
        memory)."""

    async def get_ota_package(self, package_id: str) -> OtaPackage:
        """A package by id; raises `NotFoundError`."""

    async def save_ota_package(self, package: OtaPackage) -> OtaPackage:
        """Insert or update a package's info by id: every field but its bytes (`data_upload`
        is never written here). `DataValidationError` with ThingsBoard's text when the title
        and version are taken or the profile does not exist."""

    async def delete_ota_package(self, package_id: str) -> OtaPackage:
        """Delete a package and its bytes; `InUseError` (ThingsBoard's text) while a profile
        or a device runs it, `NotFoundError` for none."""

    async def save_ota_data(
        self,
        package_id: str,
        chunks: AsyncIterable[bytes],
        complete: Callable[[int], OtaPackage],
    ) -> OtaPackage:
        """Store a package's bytes as `chunks` arrive (any sizes; stored as OTA_CHUNK
        rows, at most 1 MiB per transaction). At their end `complete(size)` checks them and
        gives the package with its data fields (file name, content type, checksum, size);
        one transaction then makes the chunks its data, unless it has data by then
        (`DataValidationError`) or is gone (`NotFoundError`). Whatever raises, in `chunks`,
        `complete` or here, the chunks written are deleted, the package keeps no data and
        the error propagates; chunks of an upload a crash cut off go at the next `open`."""

    def ota_data(self, package: OtaPackage) -> AsyncIterator[bytes]:
        """A package's bytes, chunk by chunk, read a few chunks at a time (nothing for a
        package without data); `NotFoundError` if it is deleted while being read."""

    async def read_ota_range(self, package: OtaPackage, offset: int, size: int) -> bytes:
        """Bytes [offset, offset + size) of a package (shorter at its end, empty past it),
        reading only the chunks covering that range: a device's chunk n of `size` bytes is
        `read_ota_range(package, n * size, size)`."""

    async def devices_following_profile(
        self, profile_id: str, type: OtaType, *, after_key: int = 0, limit: int = 100
    ) -> list[Device]:
        """Devices of a profile without a package of `type` of their own (those the
        profile's package reaches), in key order after `after_key`: a page of them."""
