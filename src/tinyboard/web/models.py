"""Request and response bodies of the REST API, in ThingsBoard's shapes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from tinyboard.core.models import MAX_ADDITIONAL_INFO, Device, Value
from tinyboard.errors import PayloadError
from tinyboard.web.entities import EntityId, TenantEntity, customer_id, parse_uuid, tenant_id


def as_text(value: Value, *, strict: bool = False) -> Any:
    """A value as ThingsBoard's APIs answer it: a string, unless strict data types are asked
    for (booleans as true/false, JSON as JSON text)."""
    if strict:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _an_object(value: object) -> object:
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"must be a JSON object or null, not {type(value).__name__}")
    return value


def _storable(limit: int) -> Callable[[dict[str, Any] | None], dict[str, Any] | None]:
    def check(value: dict[str, Any] | None) -> dict[str, Any] | None:
        try:
            size = 0 if value is None else len(orjson.dumps(value))
        except orjson.JSONEncodeError as exc:  # integers over 64 bits, lone surrogates, depth
            raise ValueError(f"cannot be stored as JSON ({exc}); send plain JSON") from None
        if size > limit:
            raise ValueError(f"is {size} bytes as JSON; at most {limit}")
        return value

    return check


MAX_ALARM_DETAILS = 65_536
"""Bytes of an alarm's details as JSON (a rule's are a few hundred)."""
MAX_PROFILE_DATA = 262_144
"""Bytes of a profile's profileData as JSON: ThingsBoard's alarm rules and provisioning
settings fit in a few KiB, so this leaves room for many."""

# Free JSON objects a client stores: an object or null, bounded as JSON, and one orjson can
# write back (an integer over 64 bits or a lone surrogate is a 400, not a 500 when read).
AdditionalInfo = Annotated[
    dict[str, Any] | None,
    BeforeValidator(_an_object),
    AfterValidator(_storable(MAX_ADDITIONAL_INFO)),
    Field(description=f"a JSON object, at most {MAX_ADDITIONAL_INFO} bytes as JSON"),
]
AlarmDetails = Annotated[
    dict[str, Any] | None,
    BeforeValidator(_an_object),
    AfterValidator(_storable(MAX_ALARM_DETAILS)),
    Field(description=f"a JSON object, at most {MAX_ALARM_DETAILS} bytes as JSON"),
]
ProfileData = Annotated[
    dict[str, Any] | None,
    BeforeValidator(_an_object),
    AfterValidator(_storable(MAX_PROFILE_DATA)),
    Field(description=f"a JSON object, at most {MAX_PROFILE_DATA} bytes as JSON"),
]


DEVICE_DATA: dict[str, Any] = {
    "configuration": {"type": "DEFAULT"},
    "transportConfiguration": {"type": "DEFAULT"},
}
"""ThingsBoard's `deviceData` of a device on a default-transport profile."""


class DeviceOut(TenantEntity):
    """ThingsBoard's Device."""

    type: str
    label: str
    deviceProfileId: EntityId
    deviceData: dict[str, Any]
    firmwareId: EntityId | None = None
    softwareId: EntityId | None = None
    externalId: EntityId | None = None
    additionalInfo: dict[str, Any] | None = None

    @classmethod
    def fields_of(cls, device: Device) -> dict[str, Any]:
        return {
            "id": EntityId(entityType="DEVICE", id=device.id),
            "createdTime": device.created_ts,
            "tenantId": tenant_id(),
            "customerId": customer_id(),
            "name": device.name,
            "type": device.type,
            "label": device.label,
            "deviceProfileId": EntityId(entityType="DEVICE_PROFILE", id=device.profile_id),
            "deviceData": DEVICE_DATA,
            "firmwareId": package_id(device.firmware_id),
            "softwareId": package_id(device.software_id),
            "additionalInfo": device.additional_info,
        }

    @classmethod
    def of(cls, device: Device) -> DeviceOut:
        return cls(**cls.fields_of(device))


class DeviceInfoOut(DeviceOut):
    """ThingsBoard's DeviceInfo: a Device with its customer, profile name and whether it is
    connected now."""

    customerTitle: str | None = None
    customerIsPublic: bool = False
    deviceProfileName: str
    active: bool

    @classmethod
    def info(cls, device: Device, *, active: bool) -> DeviceInfoOut:
        return cls(**cls.fields_of(device), deviceProfileName=device.type, active=active)


class DeviceIn(BaseModel):
    """ThingsBoard's Device as a client saves it: with `id` an update, without a new device.
    The profile is `deviceProfileId`, else the one named `type` (made if missing), else the
    default profile. `firmwareId`/`softwareId`: OTA packages of that profile the device runs
    instead of the profile's (an update without them clears them, as in ThingsBoard)."""

    id: EntityId | None = None
    name: str = Field(min_length=1, max_length=255)
    type: str | None = Field(None, max_length=255)
    label: str | None = Field("", max_length=255)
    deviceProfileId: EntityId | None = None
    firmwareId: EntityId | None = None
    softwareId: EntityId | None = None
    additionalInfo: AdditionalInfo = None


def package_id(package: str | None) -> EntityId | None:
    """An assigned OTA package's id as ThingsBoard answers it (null for none)."""
    return None if package is None else EntityId(entityType="OTA_PACKAGE", id=package)


def package_ref(ref: EntityId | None, what: str) -> str | None:
    """The package a client names in `firmwareId`/`softwareId` (null: none of its own)."""
    if ref is None:
        return None
    if ref.entityType != "OTA_PACKAGE":
        raise PayloadError(f"{what} must be an OTA_PACKAGE id")
    return parse_uuid(ref.id, what)


class IdOnly(BaseModel):
    """An id ThingsBoard answers without an entity type (DeviceCredentialsId)."""

    id: str


class Credentials(BaseModel):
    """ThingsBoard's DeviceCredentials (access tokens only)."""

    id: IdOnly
    createdTime: int
    deviceId: EntityId
    credentialsType: Literal["ACCESS_TOKEN"] = "ACCESS_TOKEN"
    credentialsId: str
    credentialsValue: None = None

    @classmethod
    def of(cls, device: Device) -> Credentials:
        return cls(
            id=IdOnly(id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"credentials:{device.id}"))),
            createdTime=device.created_ts,
            deviceId=EntityId(entityType="DEVICE", id=device.id),
            credentialsId=device.token,
        )


class TsPoint(BaseModel):
    ts: int
    value: Any


class AttributeOut(BaseModel):
    key: str
    value: Any
    lastUpdateTs: int


class RpcIn(BaseModel):
    method: str = Field(min_length=1, max_length=255)
    params: Any = None
    timeout: int = Field(10_000, ge=100, le=300_000, description="milliseconds")


class ClientOut(BaseModel):
    id: int
    transport: str
    peer: str
    who: str
    deviceId: str | None
    since: int
    bytesIn: int
    bytesOut: int
    messagesIn: int
    messagesOut: int


class ErrorOut(BaseModel):
    """Every error, in ThingsBoard's shape."""

    status: int
    message: str
    errorCode: int
    timestamp: int


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer with."""
    return {status: {"model": ErrorOut} for status in statuses}
