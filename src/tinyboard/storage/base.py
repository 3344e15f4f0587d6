"""The storage contract every backend implements (SQLite now, PostgreSQL later).

All methods are coroutines so an async driver fits as well as a thread-backed one.
`write` is the only hot-path call: one transaction per batch, committed before it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tinyboard.core.models import (
    Aggregation,
    AttributeRow,
    Device,
    Reading,
    Scope,
    TsValue,
    User,
)


class Store(Protocol):
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None:
        """Finish pending work and release connections."""

    async def create_device(
        self, name: str, *, type: str = "default", label: str = "", token: str | None = None
    ) -> Device:
        """Register a device; raises `ConflictError` if the name or token is taken."""

    async def get_device(self, ref: str) -> Device:
        """A device by id or name; raises `NotFoundError`."""

    async def device_by_token(self, token: str) -> Device | None:
        """The device owning an access token, or None."""

    async def list_devices(
        self, *, text_search: str = "", limit: int = 1000, offset: int = 0
    ) -> list[Device]:
        """Devices ordered by name, optionally filtered by a substring of the name."""

    async def count_devices(self, *, text_search: str = "") -> int:
        """How many devices `list_devices` would page through."""

    async def device_generation(self) -> int:
        """A number that changes whenever any process adds, changes or deletes a device."""

    async def delete_device(self, ref: str) -> Device:
        """Delete a device and all its data; returns what was deleted."""

    async def write(self, readings: Sequence[Reading], attributes: Sequence[AttributeRow]) -> None:
        """Store readings and attributes in one transaction; returns after commit."""

    async def latest(self, device: int, keys: Sequence[str] | None = None) -> dict[str, TsValue]:
        """The newest value of each (or the given) telemetry key of a device."""

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

    async def ts_keys(self, device: int) -> list[str]:
        """Telemetry keys a device has sent, sorted."""

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

    async def setting(self, name: str, default: str) -> str:
        """A stored server-wide value; the first caller stores `default` (atomically)."""
