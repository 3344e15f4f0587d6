"""ThingsBoard's DeviceController: create, update, find, list and delete devices, and their
credentials. Every route needs a JWT (`auth.User`); tinyboard's one role, TENANT_ADMIN, may
call them all, as in ThingsBoard.

Ids in paths are UUIDs (400 otherwise, as ThingsBoard). Shapes come from `web/models.py`
and ids and pages from `web/entities.py`.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from tinyboard.core.models import Device
from tinyboard.errors import NotFoundError, PayloadError
from tinyboard.storage.base import Store
from tinyboard.storage.common import DEVICE_ORDER
from tinyboard.web.auth import User
from tinyboard.web.context import WebContext, context_of
from tinyboard.web.entities import EntityId, Page, PageData, PageLink, parse_uuid, tenant_id
from tinyboard.web.models import (
    Credentials,
    DeviceIn,
    DeviceInfoOut,
    DeviceOut,
    errors,
    package_ref,
)
from tinyboard.web.profiles import profile_by_id

router = APIRouter(tags=["devices"], responses=errors(400, 401, 404))

SORTS = {**DEVICE_ORDER, "deviceProfileName": "type"}
"""ThingsBoard's device sort properties → the store's columns."""
MAX_IDS = 1000


async def device_by_id(store: Store, device_id: str) -> Device:
    """The device with this UUID; 400 for text that is no UUID, 404 for an unknown one."""
    canonical = parse_uuid(device_id, "deviceId")
    device = await store.get_device(canonical)
    if device.id != canonical:
        raise NotFoundError(f"no device with id {device_id!r}")  # it matched a name
    return device


def _profile_ref(body: DeviceIn) -> str | None:
    if body.deviceProfileId is None:
        return None
    if body.deviceProfileId.entityType != "DEVICE_PROFILE":
        raise PayloadError("deviceProfileId must be a DEVICE_PROFILE id")
    return parse_uuid(body.deviceProfileId.id, "deviceProfileId")


@router.post("/api/device", response_model=DeviceOut, responses=errors(409))
async def save_device(
    body: DeviceIn, request: Request, _: User, accessToken: str | None = None
) -> DeviceOut:
    """Create a device (with `id`: update it). Its profile is `deviceProfileId`, else the
    profile named `type` (created if missing), else the default one; `type` becomes the
    profile's name. `additionalInfo` (a JSON object or null) is stored as sent; an update
    replaces it, as ThingsBoard's does. `accessToken` chooses the new device's token.
    `firmwareId`/`softwareId` name OTA packages of its profile that it runs instead of the
    profile's; when what it runs changes, it is told (its `fw_*`/`sw_*` shared
    attributes)."""
    ctx = context_of(request)
    store = ctx.store
    profile = _profile_ref(body)
    packages = {
        "firmware_id": package_ref(body.firmwareId, "firmwareId"),
        "software_id": package_ref(body.softwareId, "softwareId"),
    }
    async with ctx.ota.lock:
        old = None if body.id is None else await device_by_id(store, body.id.id)
        if old is None:
            device = await store.create_device(
                body.name,
                type=body.type,
                label=body.label or "",
                token=accessToken,
                profile_id=profile,
                additional_info=body.additionalInfo,
                **packages,
            )
        else:
            device = await store.update_device(
                old.id,
                name=body.name,
                label=body.label or "",
                type=body.type,
                profile_id=profile,
                additional_info=body.additionalInfo,
                **packages,
            )
        await ctx.ota.device_saved(old, device)
    return DeviceOut.of(device)


@router.get("/api/tenant/devices", response_model=PageData[DeviceOut] | DeviceOut)
async def tenant_devices(
    request: Request,
    _: User,
    page: Page,
    deviceName: str | None = None,
    type: str | None = None,
) -> PageData[DeviceOut] | DeviceOut:
    """A page of devices (`textSearch`: names starting with it; `type`: of that profile;
    `sortProperty`: name, createdTime, type, label, deviceProfileName), or with
    `deviceName` that one device."""
    store = context_of(request).store
    if deviceName is not None:
        device = await store.get_device(deviceName)
        if device.name != deviceName:
            raise NotFoundError(f"no device named {deviceName!r}")
        return DeviceOut.of(device)
    devices, total = await _page(store, page, type)
    return page.wrap([DeviceOut.of(d) for d in devices], total)


@router.get("/api/tenant/deviceInfos", response_model=PageData[DeviceInfoOut])
async def tenant_device_infos(
    request: Request,
    _: User,
    page: Page,
    type: str | None = None,
    deviceProfileId: str | None = None,
    active: bool | None = None,
) -> PageData[DeviceInfoOut]:
    """A page of devices with their profile's name and whether they are connected now
    (`active`), optionally of one profile (`deviceProfileId`, or its name as `type`)."""
    ctx = context_of(request)
    if deviceProfileId is not None:
        type = (await profile_by_id(ctx.store, deviceProfileId)).name
    if active is None:
        devices, total = await _page(ctx.store, page, type)
        return page.wrap([_info(ctx, d) for d in devices], total)
    # Whether a device is connected is known only here: filter the whole list, then page.
    everything = page.model_copy(update={"page": 0, "pageSize": 2**31})
    devices, _total = await _page(ctx.store, everything, type)
    infos = [i for i in (_info(ctx, d) for d in devices) if i.active == active]
    return page.wrap(infos[page.offset : page.offset + page.pageSize], len(infos))


async def _page(store: Store, page: PageLink, type: str | None) -> tuple[list[Device], int]:
    column = SORTS.get(page.sortProperty or "name")
    if column is None:
        known = ", ".join(sorted(SORTS))
        raise PayloadError(f"cannot sort devices by {page.sortProperty!r}; sort by {known}")
    total = await store.count_devices(text_search=page.textSearch, type=type)
    devices = await store.list_devices(
        text_search=page.textSearch,
        type=type,
        limit=page.pageSize,
        offset=page.offset,
        order_by=column,
        descending=page.sortOrder == "DESC",
    )
    return devices, total


def _info(ctx: WebContext, device: Device) -> DeviceInfoOut:
    return DeviceInfoOut.info(device, active=bool(ctx.registry.for_device(device.id)))


@router.get("/api/devices", response_model=list[DeviceOut])
async def devices_by_ids(
    request: Request, _: User, deviceIds: str = Query(description="comma-separated UUIDs")
) -> list[DeviceOut]:
    """The devices among `deviceIds` that exist (unknown ids are left out, as ThingsBoard)."""
    ids = [parse_uuid(i.strip(), "deviceIds") for i in deviceIds.split(",") if i.strip()]
    if len(ids) > MAX_IDS:
        raise PayloadError(f"ask for at most {MAX_IDS} devices at a time")
    store = context_of(request).store
    found = []
    for device_id in dict.fromkeys(ids):
        try:
            found.append(DeviceOut.of(await device_by_id(store, device_id)))
        except NotFoundError:
            continue
    return found


class EntitySubtype(BaseModel):
    tenantId: EntityId
    entityType: Literal["DEVICE"] = "DEVICE"
    type: str


@router.get("/api/device/types", response_model=list[EntitySubtype])
async def device_types(request: Request, _: User) -> list[EntitySubtype]:
    """Every device type, i.e. every device profile's name."""
    profiles = await context_of(request).store.profiles()
    return [EntitySubtype(tenantId=tenant_id(), type=p.name) for p in profiles]


@router.get("/api/device/info/{device_id}", response_model=DeviceInfoOut)
async def device_info(device_id: str, request: Request, _: User) -> DeviceInfoOut:
    ctx = context_of(request)
    return _info(ctx, await device_by_id(ctx.store, device_id))


@router.get("/api/device/{device_id}", response_model=DeviceOut)
async def get_device(device_id: str, request: Request, _: User) -> DeviceOut:
    return DeviceOut.of(await device_by_id(context_of(request).store, device_id))


@router.delete("/api/device/{device_id}", response_class=Response)
async def delete_device(device_id: str, request: Request, _: User) -> Response:
    """Delete a device with all its data; its open connections are closed."""
    ctx = context_of(request)
    device = await ctx.store.delete_device((await device_by_id(ctx.store, device_id)).id)
    ctx.directory.forget(device)
    ctx.device_deleted(device)
    return Response(status_code=200)


@router.get("/api/device/{device_id}/credentials", response_model=Credentials)
async def credentials(device_id: str, request: Request, _: User) -> Credentials:
    return Credentials.of(await device_by_id(context_of(request).store, device_id))
