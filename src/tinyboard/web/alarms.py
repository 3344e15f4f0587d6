"""ThingsBoard's AlarmController: one alarm (`/api/alarm...`: get, save, acknowledge,
clear, assign, delete, the highest severity, the alarm types) and the lists (`/api/alarms`,
`/api/alarm/{entityType}/{entityId}` and their `/api/v2/...` forms).

Alarms change in the engine first and reach the store a moment later; every read here
waits for `settled()` so a client sees its own changes and the ones before. The alarm's
JSON shape is `web.alarm_info`, shared with the webhooks and the WebSocket; the lists' query
parameters are `web.alarm_queries`. Routes are matched in the order below, so the fixed
paths (`/api/alarm/types`, `/api/alarm/info/...`, `/api/alarm/highestSeverity/...`) come
before `/api/alarm/{alarmId}` and `/api/alarm/{entityType}/{entityId}`.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from tinyboard.core import models
from tinyboard.core.alarm_engine import AlarmEngine, PostedAlarm
from tinyboard.core.models import SEVERITIES, Alarm, AlarmStatus, Severity
from tinyboard.errors import NotFoundError, PayloadError
from tinyboard.web.alarm_info import AlarmInfo, AlarmOut, alarm_info
from tinyboard.web.alarm_queries import (
    V2,
    AlarmPage,
    SearchStatus,
    Window,
    alarm_page,
    assignee_id,
    v1_statuses,
)
from tinyboard.web.auth import User
from tinyboard.web.context import context_of
from tinyboard.web.devices import device_by_id
from tinyboard.web.entities import EntityId, PageData, PageLink, SortOrder, parse_uuid, tenant_id
from tinyboard.web.models import AlarmDetails, errors
from tinyboard.web.telemetry import MAX_TS

router = APIRouter(tags=["alarms"], responses=errors(400, 401, 404))


class IdIn(BaseModel):
    """An entity id in a request body; its type is checked where it matters."""

    entityType: str
    id: str


class AlarmIn(BaseModel):
    """`POST /api/alarm`: ThingsBoard's `Alarm`. Without `id` it raises an alarm (or updates
    the open one of the same originator and type); with `id` it updates that alarm.
    Read-only fields (`name`, `status`, `createdTime`, `tenantId`, ...) are ignored."""

    model_config = {"extra": "ignore"}

    id: IdIn | None = None
    type: str = Field(min_length=1, max_length=255)
    originator: IdIn
    severity: Severity
    acknowledged: bool = False
    cleared: bool = False
    startTs: int = Field(0, ge=0, le=MAX_TS)
    endTs: int = Field(0, ge=0, le=MAX_TS)
    details: AlarmDetails = None
    propagate: bool = False
    propagateToOwner: bool = False
    propagateToTenant: bool = False
    propagateRelationTypes: list[str] | None = None
    assigneeId: IdIn | None = None

    def posted(self, assignee: models.User | None) -> PostedAlarm:
        if self.originator.entityType != "DEVICE":
            raise _not_device(self.originator.entityType)
        return PostedAlarm(
            id=parse_uuid(self.id.id, "alarm id") if self.id else None,
            device_id=parse_uuid(self.originator.id, "originator id"),
            type=self.type,
            severity=self.severity,
            start_ts=self.startTs,
            end_ts=self.endTs,
            details=self.details,
            acknowledged=self.acknowledged,
            cleared=self.cleared,
            propagate=self.propagate,
            propagate_to_owner=self.propagateToOwner,
            propagate_to_tenant=self.propagateToTenant,
            propagate_relation_types=tuple(self.propagateRelationTypes or ()),
            assignee=assignee,
        )


def _engine(request: Request) -> AlarmEngine:
    return context_of(request).alarms


def _not_device(entity_type: str) -> PayloadError:
    return PayloadError(
        f"tinyboard keeps alarms of devices only, not of {entity_type!r}: use DEVICE"
    )


async def _device_key(request: Request, entity_type: str, entity_id: str) -> int:
    """The device an alarm path names: 400 for another entity type or a bad id, 404 for no
    such device."""
    if entity_type != "DEVICE":
        raise _not_device(entity_type)
    return (await device_by_id(context_of(request).store, entity_id)).key


async def _user(request: Request, user_id: str) -> models.User:
    """A user by id (an alarm's assignee); 404 when there is none."""
    wanted = parse_uuid(user_id, "assigneeId")
    for user in await context_of(request).store.list_users():
        if user.id == wanted:
            return user
    raise NotFoundError(f"no user {wanted!r} (see `tinyboard user list`)")


# -- one alarm -----------------------------------------------------------------------------
async def _alarm(request: Request, alarm_id: str) -> Alarm:
    return await _engine(request).get(parse_uuid(alarm_id, "alarmId"))


class AlarmType(BaseModel):
    """ThingsBoard's `EntitySubtype` of an alarm type."""

    tenantId: EntityId
    entityType: Literal["ALARM"] = "ALARM"
    type: str


@router.get("/api/alarm/types", response_model=PageData[AlarmType])
async def alarm_types(
    request: Request,
    _: User,
    pageSize: int = Query(10, ge=1, le=1000),
    page: int = Query(0, ge=0, le=10_000_000),
    textSearch: str = "",
    sortOrder: SortOrder = "ASC",
) -> PageData[AlarmType]:
    """Any signed-in user: the types that alarms have (ThingsBoard's getAlarmTypes)."""
    await _engine(request).settled()
    found = [
        AlarmType(tenantId=tenant_id(), type=t)
        for t in await context_of(request).store.alarm_types()
    ]
    link = PageLink(
        pageSize=pageSize, page=page, textSearch=textSearch, sortProperty="type",
        sortOrder=sortOrder,
    )  # fmt: skip
    return link.apply(found, text=lambda t: t.type, sort={"type": lambda t: t.type})


@router.get("/api/alarm/info/{alarmId}", response_model=AlarmInfo)
async def get_alarm_info(alarmId: str, request: Request, _: User) -> AlarmInfo:
    """Any signed-in user: the alarm with its originator's name (ThingsBoard's AlarmInfo)."""
    return alarm_info(await _alarm(request, alarmId))


@router.post("/api/alarm", response_model=AlarmOut)
async def save_alarm(body: AlarmIn, request: Request, _: User) -> AlarmInfo:
    """Any signed-in user: raise an alarm on a device, or update one (ThingsBoard's
    saveAlarm). The alarm engine owns it from then on: the dashboard and the webhooks see it,
    and a rule of the same type that starts to hold takes it over."""
    assignee = await _user(request, body.assigneeId.id) if body.assigneeId else None
    return alarm_info(await _engine(request).post(body.posted(assignee)))


@router.get("/api/alarm/highestSeverity/{entityType}/{entityId}", response_model=Severity | None)
async def highest_severity(
    entityType: str,
    entityId: str,
    request: Request,
    _: User,
    searchStatus: SearchStatus | None = None,
    status: AlarmStatus | None = None,
    assigneeId: str | None = None,
) -> Severity | None:
    """Any signed-in user: the most severe of the device's alarms that match, or null."""
    device = await _device_key(request, entityType, entityId)
    statuses = v1_statuses(searchStatus, status)
    await _engine(request).settled()
    for severity in SEVERITIES:  # most severe first
        _found, total = await context_of(request).store.list_alarms(
            device=device,
            statuses=statuses,
            severities=[severity],
            assignee=assignee_id(assigneeId),
            limit=1,
        )
        if total:
            return severity
    return None


@router.get("/api/alarm/{alarmId}", response_model=AlarmOut)
async def get_alarm(alarmId: str, request: Request, _: User) -> AlarmInfo:
    """Any signed-in user: one alarm (ThingsBoard's Alarm)."""
    return alarm_info(await _alarm(request, alarmId))


@router.post("/api/alarm/{alarmId}/ack", response_model=AlarmInfo)
async def acknowledge(alarmId: str, request: Request, _: User) -> AlarmInfo:
    """Any signed-in user: ACTIVE_UNACK → ACTIVE_ACK, CLEARED_UNACK → CLEARED_ACK."""
    alarm = await _engine(request).acknowledge(parse_uuid(alarmId, "alarmId"))
    return alarm_info(alarm)


@router.post("/api/alarm/{alarmId}/clear", response_model=AlarmInfo)
async def clear(alarmId: str, request: Request, _: User) -> AlarmInfo:
    """Any signed-in user: clear by hand. If its condition still holds, the next reading
    raises a new alarm."""
    return alarm_info(await _engine(request).clear(parse_uuid(alarmId, "alarmId")))


@router.delete("/api/alarm/{alarmId}", response_model=bool)
async def delete(alarmId: str, request: Request, _: User) -> bool:
    """Any signed-in user: delete the alarm; `true`."""
    await _engine(request).delete(parse_uuid(alarmId, "alarmId"))
    return True


@router.post("/api/alarm/{alarmId}/assign/{assigneeId}", response_model=AlarmOut)
async def assign(alarmId: str, assigneeId: str, request: Request, _: User) -> AlarmInfo:
    """Any signed-in user: assign the alarm to a user (ThingsBoard 3.5+)."""
    user = await _user(request, assigneeId)
    return alarm_info(await _engine(request).assign(parse_uuid(alarmId, "alarmId"), user))


@router.delete("/api/alarm/{alarmId}/assign", response_model=AlarmOut)
async def unassign(alarmId: str, request: Request, _: User) -> AlarmInfo:
    """Any signed-in user: assign the alarm to nobody."""
    return alarm_info(await _engine(request).assign(parse_uuid(alarmId, "alarmId"), None))


# -- lists ---------------------------------------------------------------------------------
@router.get("/api/alarms", response_model=PageData[AlarmInfo])
async def all_alarms(
    request: Request,
    _: User,
    page: AlarmPage,
    window: Window,
    searchStatus: SearchStatus | None = None,
    status: AlarmStatus | None = None,
    assigneeId: str | None = None,
    fetchOriginator: bool | None = None,
) -> PageData[AlarmInfo]:
    """Any signed-in user: alarms of every device. The originator's name is always there
    (`fetchOriginator` is accepted for ThingsBoard's clients)."""
    statuses = v1_statuses(searchStatus, status)
    return await alarm_page(
        context_of(request), page, window, device=None, statuses=statuses,
        assignee=assignee_id(assigneeId),
    )  # fmt: skip


@router.get("/api/alarm/{entityType}/{entityId}", response_model=PageData[AlarmInfo])
async def entity_alarms(
    entityType: str,
    entityId: str,
    request: Request,
    _: User,
    page: AlarmPage,
    window: Window,
    searchStatus: SearchStatus | None = None,
    status: AlarmStatus | None = None,
    assigneeId: str | None = None,
    fetchOriginator: bool | None = None,
) -> PageData[AlarmInfo]:
    """Any signed-in user: one device's alarms (same parameters as `/api/alarms`)."""
    device = await _device_key(request, entityType, entityId)
    statuses = v1_statuses(searchStatus, status)
    return await alarm_page(
        context_of(request), page, window, device=device, statuses=statuses,
        assignee=assignee_id(assigneeId),
    )  # fmt: skip


@router.get("/api/v2/alarms", response_model=PageData[AlarmInfo])
async def all_alarms_v2(
    request: Request, _: User, page: AlarmPage, window: Window, query: V2
) -> PageData[AlarmInfo]:
    """Any signed-in user: alarms of every device, filtered by `statusList` (ANY, ACTIVE,
    CLEARED, ACK, UNACK), `severityList` and `typeList`."""
    return await alarm_page(
        context_of(request), page, window, device=None, statuses=query.statuses,
        severities=query.severities, types=query.types, assignee=query.assignee,
    )  # fmt: skip


@router.get("/api/v2/alarm/{entityType}/{entityId}", response_model=PageData[AlarmInfo])
async def entity_alarms_v2(
    entityType: str,
    entityId: str,
    request: Request,
    _: User,
    page: AlarmPage,
    window: Window,
    query: V2,
) -> PageData[AlarmInfo]:
    """Any signed-in user: one device's alarms, with the v2 filters."""
    device = await _device_key(request, entityType, entityId)
    return await alarm_page(
        context_of(request), page, window, device=device, statuses=query.statuses,
        severities=query.severities, types=query.types, assignee=query.assignee,
    )  # fmt: skip
