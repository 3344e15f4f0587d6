"""The records that cross module boundaries.

Strategy: readings are plain tuples (one per key and timestamp), because the hot path makes
tens of thousands of them per second; devices and clients are dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    profile_id: str
    """Its device profile; `type` is that profile's name (as in ThingsBoard)."""
    additional_info: dict[str, Any] | None = None
    """ThingsBoard's `additionalInfo`: a JSON object kept as a client saved it (e.g. its
    `description`), None for a device that never had one."""
    firmware_id: str | None = None
    software_id: str | None = None
    """OTA packages assigned to this device itself; None: its profile's (ThingsBoard's
    `firmwareId`/`softwareId`, the device's own winning over its profile's)."""

    def package_id(self, type: OtaType) -> str | None:
        return self.firmware_id if type == "FIRMWARE" else self.software_id

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "label": self.label,
            "token": self.token,
            "createdTime": self.created_ts,
        }


MAX_ADDITIONAL_INFO = 16_384
"""Bytes of a device's `additionalInfo` as compact JSON: every device read carries it, and
the device directory keeps every device in memory."""

DEFAULT_PROFILE = "default"
"""The name of the profile every install starts with (ThingsBoard's too)."""


def default_profile_data() -> dict[str, Any]:
    """ThingsBoard's `profileData` of a new profile: default transport, no provisioning, no
    alarm rules."""
    return {
        "configuration": {"type": "DEFAULT"},
        "transportConfiguration": {"type": "DEFAULT"},
        "provisionConfiguration": {"type": "DISABLED", "provisionDeviceSecret": None},
        "alarms": None,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceProfile:
    """ThingsBoard's device profile: the defaults its devices share. `profile_data` is
    ThingsBoard's `profileData` document (its `configuration` may carry `units`, see
    docs/protocols.md); `settings` keeps the other ThingsBoard fields a client sends
    (provisioning, firmware, image, queue), stored for later issues."""

    id: str
    name: str
    created_ts: int
    default: bool = False
    description: str = ""
    profile_data: dict[str, Any] = field(default_factory=default_profile_data)
    settings: dict[str, Any] = field(default_factory=dict)
    firmware_id: str | None = None
    software_id: str | None = None
    """The OTA packages its devices run unless they have their own."""

    def package_id(self, type: OtaType) -> str | None:
        return self.firmware_id if type == "FIRMWARE" else self.software_id


OtaType = Literal["FIRMWARE", "SOFTWARE"]
OTA_TYPES: tuple[OtaType, ...] = ("FIRMWARE", "SOFTWARE")
ChecksumAlgorithm = Literal[
    "MD5", "SHA256", "SHA384", "SHA512", "CRC32", "MURMUR3_32", "MURMUR3_128"
]
CHECKSUM_ALGORITHMS: tuple[ChecksumAlgorithm, ...] = (
    "MD5", "SHA256", "SHA384", "SHA512", "CRC32", "MURMUR3_32", "MURMUR3_128"
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class OtaPackage:
    """ThingsBoard's OtaPackageInfo: a firmware or software image for the devices of one
    profile. Its bytes (if it has any; a package may give a `url` instead) are stored in
    fixed-size chunks under `data_upload`, the upload that completed."""

    id: str
    created_ts: int
    profile_id: str | None
    type: OtaType
    title: str
    version: str
    tag: str | None = None
    url: str | None = None
    file_name: str | None = None
    content_type: str | None = None
    checksum_algorithm: ChecksumAlgorithm | None = None
    checksum: str | None = None
    data_size: int | None = None
    additional_info: dict[str, Any] | None = None
    data_upload: str | None = None
    """The completed upload whose chunks are the package's bytes; None: no bytes stored."""

    @property
    def has_url(self) -> bool:
        return bool(self.url)

    @property
    def has_data(self) -> bool:
        """ThingsBoard's `hasData`: bytes stored, or a URL to fetch them from (only such a
        package can be assigned)."""
        return self.data_upload is not None or self.has_url


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    id: str
    email: str
    password_hash: str
    role: str
    created_ts: int


Aggregation = Literal["MIN", "MAX", "AVG", "SUM", "COUNT", "NONE"]
AGGREGATIONS: tuple[Aggregation, ...] = ("MIN", "MAX", "AVG", "SUM", "COUNT", "NONE")

Severity = Literal["CRITICAL", "MAJOR", "MINOR", "WARNING", "INDETERMINATE"]
SEVERITIES: tuple[Severity, ...] = ("CRITICAL", "MAJOR", "MINOR", "WARNING", "INDETERMINATE")
"""Most severe first (ThingsBoard's order)."""

AlarmStatus = Literal["ACTIVE_UNACK", "ACTIVE_ACK", "CLEARED_UNACK", "CLEARED_ACK"]
AlarmSort = Literal[
    "createdTime", "startTs", "endTs", "ackTs", "clearTs", "type", "severity", "status"
]
"""ThingsBoard's alarm list sort properties."""
AlarmEvent = Literal[
    "ALARM_CREATED",
    "ALARM_ESCALATED",
    "ALARM_UPDATED",
    "ALARM_CLEARED",
    "ALARM_ACKNOWLEDGED",
    "ALARM_ASSIGNED",
    "ALARM_UNASSIGNED",
    "ALARM_DELETED",
]
"""What happened to an alarm: what the engine's listeners (webhooks, the WebSocket, the
dashboard) are told."""


def more_severe(a: Severity, b: Severity) -> bool:
    return SEVERITIES.index(a) < SEVERITIES.index(b)


@dataclass(slots=True, kw_only=True)
class Alarm:
    """One alarm, as ThingsBoard keeps it: at most one not cleared per (device, type)."""

    id: str
    device_key: int
    device_id: str
    device_name: str
    type: str
    severity: Severity
    acknowledged: bool = False
    cleared: bool = False
    start_ts: int
    end_ts: int
    ack_ts: int = 0
    clear_ts: int = 0
    details: dict[str, Any]
    created_ts: int = 0
    """When tinyboard created it: its startTs, unless a REST client gave an older start."""
    device_label: str = ""
    propagate: bool = False
    propagate_to_owner: bool = False
    propagate_to_tenant: bool = False
    propagate_relation_types: tuple[str, ...] = ()
    """ThingsBoard's propagation settings: kept and returned as a client set them (tinyboard
    has no entity relations to propagate along)."""
    assignee_id: str | None = None
    """The user it is assigned to (ThingsBoard 3.5+), with their e-mail while they exist."""
    assignee_email: str | None = None
    assign_ts: int = 0

    def __post_init__(self) -> None:
        if not self.created_ts:
            self.created_ts = self.start_ts

    @property
    def status(self) -> AlarmStatus:
        if self.cleared:
            return "CLEARED_ACK" if self.acknowledged else "CLEARED_UNACK"
        return "ACTIVE_ACK" if self.acknowledged else "ACTIVE_UNACK"
