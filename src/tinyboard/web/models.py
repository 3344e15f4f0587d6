"""Request and response bodies of the REST API, in ThingsBoard's shapes."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from tinyboard.core.models import Device, Value


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


class EntityId(BaseModel):
    entityType: Literal["DEVICE"] = "DEVICE"
    id: str


class DeviceOut(BaseModel):
    id: EntityId
    createdTime: int
    name: str
    type: str
    label: str

    @classmethod
    def of(cls, device: Device) -> DeviceOut:
        return cls(
            id=EntityId(id=device.id),
            createdTime=device.created_ts,
            name=device.name,
            type=device.type,
            label=device.label,
        )


class DeviceIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    type: str = Field("default", max_length=255)
    label: str = Field("", max_length=255)


class DevicePage(BaseModel):
    data: list[DeviceOut]
    totalPages: int
    totalElements: int
    hasNext: bool


class Credentials(BaseModel):
    deviceId: EntityId
    credentialsType: Literal["ACCESS_TOKEN"] = "ACCESS_TOKEN"
    credentialsId: str
    credentialsValue: None = None


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
