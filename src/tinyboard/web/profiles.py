"""ThingsBoard's DeviceProfileController: the profiles that group devices and carry their
defaults. Every route needs a JWT (`auth.User`); tinyboard's one role, TENANT_ADMIN, may
call them all, as in ThingsBoard.

A profile's `name` is its devices' `type`. tinyboard's profiles use the default transport
(ThingsBoard's device API on every transport), so `transportType` is DEFAULT; provisioning
settings are checked (core/provisioning.py acts on them), `profileData` is stored as sent (its
`configuration` may carry `units`: docs/protocols.md), and `firmwareId`/`softwareId` are
OTA packages its devices run (checked by the store, told to devices by core/ota_state.py).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from tinyboard.core.alarm_engine import AlarmEngine
from tinyboard.core.models import DeviceProfile, default_profile_data
from tinyboard.core.provisioning import Provisioning
from tinyboard.errors import NotFoundError, PayloadError
from tinyboard.storage.base import Store
from tinyboard.web.auth import User
from tinyboard.web.context import context_of
from tinyboard.web.entities import EntityId, Page, PageData, PageLink, parse_uuid, tenant_id
from tinyboard.web.models import ProfileData, errors, package_id, package_ref

router = APIRouter(tags=["device profiles"], responses=errors(400, 401, 404))

ProvisionType = Literal[
    "DISABLED",
    "ALLOW_CREATE_NEW_DEVICES",
    "CHECK_PRE_PROVISIONED_DEVICES",
    "X509_CERTIFICATE_CHAIN",
]
KEPT = (
    "image",
    "provisionType",
    "provisionDeviceKey",
    "defaultRuleChainId",
    "defaultDashboardId",
    "defaultQueueName",
    "defaultEdgeRuleChainId",
)
"""ThingsBoard fields a profile keeps as sent (`DeviceProfile.settings`). Its firmware and
software are columns of their own (checked, and acted on: core/ota_state.py)."""


class ProfileInfoOut(BaseModel):
    """ThingsBoard's DeviceProfileInfo."""

    id: EntityId
    tenantId: EntityId
    name: str
    image: str | None = None
    defaultDashboardId: EntityId | None = None
    type: Literal["DEFAULT"] = "DEFAULT"
    transportType: Literal["DEFAULT"] = "DEFAULT"

    @classmethod
    def of(cls, profile: DeviceProfile) -> ProfileInfoOut:
        return cls(
            id=EntityId(entityType="DEVICE_PROFILE", id=profile.id),
            tenantId=tenant_id(),
            name=profile.name,
            image=profile.settings.get("image"),
            defaultDashboardId=profile.settings.get("defaultDashboardId"),
        )


class ProfileOut(ProfileInfoOut):
    """ThingsBoard's DeviceProfile."""

    createdTime: int
    description: str
    provisionType: ProvisionType = "DISABLED"
    provisionDeviceKey: str | None = None
    firmwareId: EntityId | None = None
    softwareId: EntityId | None = None
    defaultRuleChainId: EntityId | None = None
    defaultQueueName: str | None = None
    defaultEdgeRuleChainId: EntityId | None = None
    default: bool
    profileData: dict[str, Any]

    @classmethod
    def full(cls, profile: DeviceProfile) -> ProfileOut:
        kept = {k: profile.settings[k] for k in KEPT if profile.settings.get(k) is not None}
        return cls(
            **kept,
            id=EntityId(entityType="DEVICE_PROFILE", id=profile.id),
            tenantId=tenant_id(),
            name=profile.name,
            createdTime=profile.created_ts,
            description=profile.description,
            default=profile.default,
            profileData=profile.profile_data,
            firmwareId=package_id(profile.firmware_id),
            softwareId=package_id(profile.software_id),
        )


class ProfileIn(BaseModel):
    """A DeviceProfile as a client saves it: with `id` an update, without a new profile.
    `default` is ignored here: `POST /api/deviceProfile/{id}/default` changes it."""

    id: EntityId | None = None
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(None, max_length=10_000)
    image: str | None = Field(None, max_length=1_000_000)
    type: Literal["DEFAULT"] = "DEFAULT"
    transportType: Literal["DEFAULT"] = Field(
        "DEFAULT", description="tinyboard serves ThingsBoard's default device API only"
    )
    provisionType: ProvisionType = "DISABLED"
    provisionDeviceKey: str | None = Field(None, max_length=255)
    firmwareId: EntityId | None = None
    softwareId: EntityId | None = None
    defaultRuleChainId: EntityId | None = None
    defaultDashboardId: EntityId | None = None
    defaultQueueName: str | None = Field(None, max_length=255)
    defaultEdgeRuleChainId: EntityId | None = None
    profileData: ProfileData = None


async def profile_by_id(store: Store, profile_id: str) -> DeviceProfile:
    """The profile with this UUID; 400 for text that is no UUID, 404 for an unknown one."""
    canonical = parse_uuid(profile_id, "deviceProfileId")
    profile = await store.get_profile(canonical)
    if profile.id != canonical:
        raise NotFoundError(f"no device profile with id {profile_id!r}")  # it matched a name
    return profile


@router.post("/api/deviceProfile", response_model=ProfileOut, responses=errors(409))
async def save_profile(body: ProfileIn, request: Request, _: User) -> ProfileOut:
    """Create a device profile (with `id`: update it; a rename renames its devices' type).
    Missing `profileData` parts get ThingsBoard's defaults. `firmwareId`/`softwareId` name
    OTA packages of this profile; when they change, its devices without packages of their
    own are told (their `fw_*`/`sw_*` shared attributes), 100 at a time."""
    ctx = context_of(request)
    store = ctx.store
    data = {**default_profile_data(), **(body.profileData or {})}
    firmware = package_ref(body.firmwareId, "firmwareId")
    software = package_ref(body.softwareId, "softwareId")
    if body.id is not None and body.id.entityType != "DEVICE_PROFILE":
        raise PayloadError("id must be a DEVICE_PROFILE id")
    async with ctx.ota.lock:
        old = None if body.id is None else await profile_by_id(store, body.id.id)
        profile = old or DeviceProfile(
            id=str(uuid.uuid4()), name=body.name, created_ts=int(time.time() * 1000)
        )
        new = DeviceProfile(
            id=profile.id,
            name=body.name,
            created_ts=profile.created_ts,
            description=body.description or "",
            profile_data=data,
            settings=body.model_dump(include=set(KEPT), exclude_none=True, mode="json"),
            firmware_id=firmware,
            software_id=software,
        )
        Provisioning.check(new, await store.profiles())
        saved = await store.save_profile(new)
        await ctx.ota.profile_saved(old, saved)
    if saved.name != profile.name and body.id is not None:
        await _rules_follow_rename(context_of(request).alarms, profile.name, saved.name)
    return ProfileOut.full(saved)


async def _rules_follow_rename(alarms: AlarmEngine, old: str, new: str) -> None:
    """A rule scoped to a profile holds its name (a device's `type`): the rules of the old
    name move to the new one, as its devices' type did, so they keep applying."""
    alarms.devices_changed()
    for rule in list(alarms.rules.values()):
        if rule.device_type == old:
            await alarms.save_rule({**rule.as_json(), "deviceType": new}, rule_id=rule.id)


@router.get("/api/deviceProfiles", response_model=PageData[ProfileOut])
async def profiles_page(request: Request, _: User, page: Page) -> PageData[ProfileOut]:
    """A page of device profiles (`textSearch` in the name; sort by name, createdTime,
    description, transportType, provisionType or isDefault)."""
    return (await _paged(request, page)).map(ProfileOut.full)


@router.get(
    "/api/deviceProfileInfos", response_model=PageData[ProfileInfoOut] | list[ProfileInfoOut]
)
async def profile_infos(
    request: Request,
    _: User,
    page: Page,
    deviceProfileIds: str | None = None,
    transportType: Literal["DEFAULT", "MQTT", "COAP", "LWM2M", "SNMP"] | None = None,
) -> PageData[ProfileInfoOut] | list[ProfileInfoOut]:
    """A page of profile infos, or with `deviceProfileIds` (comma-separated) those that
    exist. Every tinyboard profile has the DEFAULT transport."""
    if deviceProfileIds is not None:
        ids = {parse_uuid(i.strip(), "deviceProfileIds") for i in deviceProfileIds.split(",")}
        return [
            ProfileInfoOut.of(p) for p in await context_of(request).store.profiles() if p.id in ids
        ]
    if transportType not in (None, "DEFAULT"):
        return page.wrap([], 0)
    return (await _paged(request, page)).map(ProfileInfoOut.of)


async def _paged(request: Request, page: PageLink) -> PageData[DeviceProfile]:
    return page.apply(
        await context_of(request).store.profiles(),
        text=lambda p: p.name,
        sort={
            "name": lambda p: p.name,
            "createdTime": lambda p: p.created_ts,
            "description": lambda p: p.description,
            "transportType": lambda p: "DEFAULT",
            "provisionType": lambda p: p.settings.get("provisionType", "DISABLED"),
            "isDefault": lambda p: p.default,
        },
    )


class EntityInfo(BaseModel):
    id: EntityId
    name: str


@router.get("/api/deviceProfile/names", response_model=list[EntityInfo])
async def profile_names(request: Request, _: User, activeOnly: bool = False) -> list[EntityInfo]:
    """Every profile's id and name (`activeOnly`: only those some device uses)."""
    store = context_of(request).store
    profiles = await store.profiles()
    if activeOnly:
        used = {d.profile_id for d in await store.list_devices(limit=2**31)}
        profiles = [p for p in profiles if p.id in used]
    return [
        EntityInfo(id=EntityId(entityType="DEVICE_PROFILE", id=p.id), name=p.name) for p in profiles
    ]


@router.get("/api/deviceProfileInfo/default", response_model=ProfileInfoOut)
async def default_profile_info(request: Request, _: User) -> ProfileInfoOut:
    """The profile a device gets when it names none."""
    (default,) = [p for p in await context_of(request).store.profiles() if p.default]
    return ProfileInfoOut.of(default)


@router.get("/api/deviceProfileInfo/{profile_id}", response_model=ProfileInfoOut)
async def profile_info(profile_id: str, request: Request, _: User) -> ProfileInfoOut:
    return ProfileInfoOut.of(await profile_by_id(context_of(request).store, profile_id))


@router.get("/api/deviceProfile/{profile_id}", response_model=ProfileOut)
async def get_profile(
    profile_id: str, request: Request, _: User, inlineImages: bool = False
) -> ProfileOut:
    """A device profile (`inlineImages` is accepted; images are kept inline anyway)."""
    return ProfileOut.full(await profile_by_id(context_of(request).store, profile_id))


@router.delete("/api/deviceProfile/{profile_id}", response_class=Response)
async def delete_profile(profile_id: str, request: Request, _: User) -> Response:
    """Delete a profile; 400 while devices use it or while it is the default."""
    store = context_of(request).store
    await store.delete_profile((await profile_by_id(store, profile_id)).id)
    return Response(status_code=200)


@router.post("/api/deviceProfile/{profile_id}/default", response_model=ProfileOut)
async def make_default(profile_id: str, request: Request, _: User) -> ProfileOut:
    """Make a profile the one devices get when they name none."""
    store = context_of(request).store
    profile = await profile_by_id(store, profile_id)
    return ProfileOut.full(await store.set_default_profile(profile.id))
