"""The records that cross module boundaries.

Strategy: readings are plain tuples (one per key and timestamp), because the hot path makes
tens of thousands of them per second; devices and clients are dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

JsonValue = dict[str, Any] | list[Any]
Value = bool | int | float | str | JsonValue
"""A telemetry or attribute value: ThingsBoard's boolean, long, double, string or JSON."""

Reading = tuple[int, str, int, Value]
"""One time-series point: (device key, telemetry key, ts in Unix ms, value)."""

Scope = Literal["CLIENT", "SHARED", "SERVER"]
SCOPES: tuple[Scope, ...] = ("CLIENT", "SHARED", "SERVER")

AttributeRow = tuple[int, Scope, str, int, Value]
"""One attribute write: (device key, scope, attribute key, last update ts in ms, value)."""

TsValue = tuple[int, Value]
"""A stored point read back: (ts in Unix ms, value)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """A registered device. `key` is the compact internal id used in time-series rows."""

    id: str
    key: int
    name: str
    type: str
    label: str
    token: str
    created_ts: int

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "label": self.label,
            "token": self.token,
            "createdTime": self.created_ts,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    id: str
    email: str
    password_hash: str
    role: str
    created_ts: int


Aggregation = Literal["MIN", "MAX", "AVG", "SUM", "COUNT", "NONE"]
AGGREGATIONS: tuple[Aggregation, ...] = ("MIN", "MAX", "AVG", "SUM", "COUNT", "NONE")
