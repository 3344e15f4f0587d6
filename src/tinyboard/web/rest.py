"""The REST API for people and scripts, on ThingsBoard's paths where ThingsBoard has one.

Every route here needs a JWT (`auth.User`).
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Query, Request, Response

from tinyboard.core.models import Device
from tinyboard.errors import NotFoundError
from tinyboard.web.auth import User
from tinyboard.web.context import WebContext
from tinyboard.web.models import (
    ClientOut,
    Credentials,
    DeviceIn,
    DeviceOut,
    DevicePage,
    EntityId,
    errors,
)

router = APIRouter(tags=["REST API"], responses=errors(400, 401, 404, 409))


def _ctx(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


async def _device(request: Request, device_id: str) -> Device:
    return await _ctx(request).store.get_device(device_id)


# -- devices -------------------------------------------------------------------------------
@router.post("/api/device", response_model=DeviceOut)
async def create_device(
    body: DeviceIn,
    request: Request,
    _: User,
    accessToken: str | None = None,
) -> DeviceOut:
    """Create a device (optionally with a chosen access token)."""
    device = await _ctx(request).store.create_device(
        body.name, type=body.type, label=body.label, token=accessToken
    )
    return DeviceOut.of(device)


@router.get("/api/tenant/devices", response_model=DevicePage | DeviceOut)
async def list_devices(
    request: Request,
    _: User,
    pageSize: int = Query(10, ge=1, le=1000),
    page: int = Query(0, ge=0, le=10_000_000),
    textSearch: str = "",
    deviceName: str | None = None,
) -> DevicePage | DeviceOut:
    """A page of devices by name, or the one device called `deviceName`."""
    store = _ctx(request).store
    if deviceName is not None:
        device = await store.get_device(deviceName)
        if device.name != deviceName:
            raise NotFoundError(f"no device named {deviceName!r}")
        return DeviceOut.of(device)
    total = await store.count_devices(text_search=textSearch)
    devices = await store.list_devices(
        text_search=textSearch, limit=pageSize, offset=page * pageSize
    )
    return DevicePage(
        data=[DeviceOut.of(d) for d in devices],
        totalPages=math.ceil(total / pageSize),
        totalElements=total,
        hasNext=(page + 1) * pageSize < total,
    )


@router.get("/api/device/{device_id}", response_model=DeviceOut)
async def get_device(device_id: str, request: Request, _: User) -> DeviceOut:
    return DeviceOut.of(await _device(request, device_id))


@router.delete("/api/device/{device_id}", response_class=Response)
async def delete_device(device_id: str, request: Request, _: User) -> Response:
    """Delete a device with all its data; its open connections are closed."""
    ctx = _ctx(request)
    device = await ctx.store.delete_device(device_id)
    ctx.directory.forget(device)
    ctx.disconnect_device(device.id)
    return Response(status_code=200)


@router.get("/api/device/{device_id}/credentials", response_model=Credentials)
async def credentials(device_id: str, request: Request, _: User) -> Credentials:
    device = await _device(request, device_id)
    return Credentials(deviceId=EntityId(id=device.id), credentialsId=device.token)


# -- the client registry -------------------------------------------------------------------
@router.get("/api/clients", response_model=list[ClientOut])
async def clients(request: Request, _: User) -> list[dict[str, object]]:
    """Every live connection of every transport (course milestone 1's client list)."""
    return [c.as_dict() for c in _ctx(request).registry]
