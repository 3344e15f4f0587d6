"""Alarms on ThingsBoard's paths (`/api/alarm...`, `/api/v2/alarm...`), alarm rules and webhook
status.

Alarms change in the engine first and reach the store a moment later; every read here
waits for `settled()` so a client sees its own changes and the ones before. The alarm's
JSON shape is `web.alarm_info`, shared with the webhooks and the WebSocket.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from tinyboard.core import models
from tinyboard.core.alarm_rules import RuleError
from tinyboard.core.alarms import AlarmEngine, PostedAlarm
from tinyboard.core.models import (
    SEVERITIES,
    Alarm,
    AlarmSort,
    AlarmStatus,
    Severity,
)
from tinyboard.errors import NotFoundError, PayloadError
from tinyboard.web.alarm_info import AlarmInfo, AlarmOut, alarm_info
from tinyboard.web.auth import User
from tinyboard.web.context import WebContext
from tinyboard.web.devices import device_by_id
from tinyboard.web.entities import (
    EntityId,
    PageData,
    PageLink,
    SortOrder,
    parse_uuid,
    tenant_id,
)
from tinyboard.web.models import errors
from tinyboard.web.profiles import profile_by_id

router = APIRouter(tags=["alarms"], responses=errors(400, 401, 404))

SearchStatus = Literal["ANY", "ACTIVE", "CLEARED", "ACK", "UNACK"]
SEARCH: dict[str, tuple[AlarmStatus, ...]] = {
    "ANY": ("ACTIVE_UNACK", "ACTIVE_ACK", "CLEARED_UNACK", "CLEARED_ACK"),
    "ACTIVE": ("ACTIVE_UNACK", "ACTIVE_ACK"),
    "CLEARED": ("CLEARED_UNACK", "CLEARED_ACK"),
    "ACK": ("ACTIVE_ACK", "CLEARED_ACK"),
    "UNACK": ("ACTIVE_UNACK", "CLEARED_UNACK"),
}
MAX_TS = 2**62


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
    details: dict[str, Any] | None = None
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


def _ctx(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


def _engine(request: Request) -> AlarmEngine:
    return _ctx(request).alarms


def _not_device(entity_type: str) -> PayloadError:
    return PayloadError(
        f"tinyboard keeps alarms of devices only, not of {entity_type!r}: use DEVICE"
    )


def _statuses(search: SearchStatus | None, status: AlarmStatus | None) -> tuple[AlarmStatus, ...]:
    """ThingsBoard's v1 filter: one of `searchStatus` and `status`, or neither."""
    if search is not None and status is not None:
        raise PayloadError(
            "Invalid alarms search query: Both parameters 'searchStatus' and 'status' can't "
            "be specified at the same time!"
        )
    if status is not None:
        return (status,)
    return SEARCH[search or "ANY"]


def search_statuses(values: list[str]) -> tuple[AlarmStatus, ...]:
    """ThingsBoard's v2 `statusList`: ACTIVE/CLEARED and ACK/UNACK narrow independently
    (`ACTIVE,UNACK` is ACTIVE_UNACK); ANY, both of a pair or none narrow nothing."""
    statuses = set(SEARCH["ANY"])
    for pair in (("ACTIVE", "CLEARED"), ("ACK", "UNACK")):
        chosen = [p for p in pair if p in values]
        if len(chosen) == 1:
            statuses &= set(SEARCH[chosen[0]])
    return tuple(s for s in SEARCH["ANY"] if s in statuses)


def _split(values: list[str] | None) -> list[str]:
    """A list parameter sent repeated (`a=1&a=2`, the REST client) or comma-separated."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _choices(values: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    for value in values:
        if value not in allowed:
            raise PayloadError(f"unknown {what} {value!r}; use {', '.join(allowed)}")
    return values


SORTS: tuple[AlarmSort, ...] = (
    "createdTime", "startTs", "endTs", "ackTs", "clearTs", "type", "severity", "status"
)  # fmt: skip


def _page(
    pageSize: int = Query(10, ge=1, le=1000),
    page: int = Query(0, ge=0, le=10_000_000),
    textSearch: str = "",
    sortProperty: AlarmSort | None = None,
    sortOrder: SortOrder | None = None,
) -> PageLink:
    """ThingsBoard's page query for alarms: newest created first unless told otherwise."""
    return PageLink(
        pageSize=pageSize,
        page=page,
        textSearch=textSearch,
        sortProperty=sortProperty or "createdTime",
        sortOrder=sortOrder or "DESC",
    )


AlarmPage = Annotated[PageLink, Depends(_page)]


class TimeWindow(BaseModel):
    """Creation times from `start` (inclusive) to `end` (exclusive), in ms."""

    start: int = 0
    end: int = MAX_TS


def _window(
    startTime: int | None = Query(None, ge=0, le=MAX_TS),
    endTime: int | None = Query(None, ge=0, le=MAX_TS),
) -> TimeWindow:
    """`startTime`/`endTime` bound the creation time (ms), both inclusive, as ThingsBoard's
    alarm queries do."""
    return TimeWindow(start=startTime or 0, end=MAX_TS if endTime is None else endTime + 1)


Window = Annotated[TimeWindow, Depends(_window)]


async def alarm_page(
    ctx: WebContext,
    page: PageLink,
    window: TimeWindow,
    *,
    device: int | None,
    statuses: Sequence[AlarmStatus],
    severities: Sequence[Severity] | None = None,
    types: Sequence[str] | None = None,
    assignee: str | None = None,
) -> PageData[AlarmInfo]:
    """One page of alarms in ThingsBoard's shape, after every decision so far is stored: the
    REST lists and the WebSocket's ALARM_DATA. `page.sortProperty` is one of `SORTS`."""
    if page.sortProperty not in SORTS:
        raise PayloadError(f"cannot sort alarms by {page.sortProperty!r}; use {', '.join(SORTS)}")
    await ctx.alarms.settled()
    alarms, total = await ctx.store.list_alarms(
        device=device,
        statuses=statuses,
        severities=severities,
        types=types,
        assignee=assignee,
        text_search=page.textSearch,
        start_ts=window.start,
        end_ts=window.end,
        sort=page.sortProperty,
        descending=page.sortOrder == "DESC",
        limit=page.pageSize,
        offset=page.offset,
    )
    return page.wrap([alarm_info(a) for a in alarms], total)


async def _device_key(request: Request, entity_type: str, entity_id: str) -> int:
    """The device an alarm path names: 400 for another entity type or a bad id, 404 for no
    such device."""
    if entity_type != "DEVICE":
        raise _not_device(entity_type)
    return (await device_by_id(_ctx(request).store, entity_id)).key


def _assignee_id(assignee_id: str | None) -> str | None:
    return None if assignee_id is None else parse_uuid(assignee_id, "assigneeId")


async def _user(request: Request, user_id: str) -> models.User:
    """A user by id (an alarm's assignee); 404 when there is none."""
    wanted = parse_uuid(user_id, "assigneeId")
    for user in await _ctx(request).store.list_users():
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
        AlarmType(tenantId=tenant_id(), type=t) for t in await _ctx(request).store.alarm_types()
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
    statuses = _statuses(searchStatus, status)
    await _engine(request).settled()
    for severity in SEVERITIES:  # most severe first
        _found, total = await _ctx(request).store.list_alarms(
            device=device,
            statuses=statuses,
            severities=[severity],
            assignee=_assignee_id(assigneeId),
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
    statuses = _statuses(searchStatus, status)
    return await alarm_page(
        _ctx(request), page, window, device=None, statuses=statuses,
        assignee=_assignee_id(assigneeId),
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
    statuses = _statuses(searchStatus, status)
    return await alarm_page(
        _ctx(request), page, window, device=device, statuses=statuses,
        assignee=_assignee_id(assigneeId),
    )  # fmt: skip


class V2Filter(BaseModel):
    statuses: tuple[AlarmStatus, ...]
    severities: list[Severity] | None
    types: list[str] | None
    assignee: str | None


def _v2_filter(
    statusList: Annotated[list[str] | None, Query()] = None,
    severityList: Annotated[list[str] | None, Query()] = None,
    typeList: Annotated[list[str] | None, Query()] = None,
    assigneeId: str | None = None,
) -> V2Filter:
    """ThingsBoard's v2 list filters; each list repeated or comma-separated."""
    wanted = _choices(_split(statusList), tuple(SEARCH), "status")
    severities = _choices(_split(severityList), SEVERITIES, "severity")
    types = _split(typeList)
    return V2Filter(
        statuses=search_statuses(wanted),
        assignee=_assignee_id(assigneeId),
        severities=severities or None,  # type: ignore[arg-type]  # checked by _choices
        types=types or None,
    )


V2 = Annotated[V2Filter, Depends(_v2_filter)]


@router.get("/api/v2/alarms", response_model=PageData[AlarmInfo])
async def all_alarms_v2(
    request: Request, _: User, page: AlarmPage, window: Window, query: V2
) -> PageData[AlarmInfo]:
    """Any signed-in user: alarms of every device, filtered by `statusList` (ANY, ACTIVE,
    CLEARED, ACK, UNACK), `severityList` and `typeList`."""
    return await alarm_page(
        _ctx(request), page, window, device=None, statuses=query.statuses,
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
        _ctx(request), page, window, device=device, statuses=query.statuses,
        severities=query.severities, types=query.types, assignee=query.assignee,
    )  # fmt: skip


class ConditionIn(BaseModel):
    op: Literal[">", ">=", "<", "<=", "==", "!=", "inside", "outside"]
    value: float | None = None
    low: float | None = None
    high: float | None = None


class RuleIn(BaseModel):
    """An alarm rule. Threshold: `key`, `condition`, optional `clearCondition` (hysteresis;
    default: the condition no longer holds) and `forSeconds`. Inactivity: `inactivitySeconds`
    without telemetry. Scope: `deviceId` (one device), `deviceType` (the devices of the
    profile of that name) or `deviceProfileId` (the same, by the profile's id) or none (every
    device)."""

    name: str | None = None
    kind: Literal["threshold", "inactivity"] = "threshold"
    deviceId: str | None = None
    deviceType: str | None = None
    deviceProfileId: str | None = Field(None, description="stored as its profile's name")
    key: str | None = None
    condition: ConditionIn | None = None
    clearCondition: ConditionIn | None = None
    forSeconds: float = 0
    inactivitySeconds: float | None = None
    severity: Severity = "MAJOR"
    alarmType: str | None = None
    enabled: bool = True


class ConditionOut(BaseModel):
    op: str
    value: float | None = None
    low: float | None = None
    high: float | None = None


class RuleOut(BaseModel):
    id: str
    name: str
    kind: Literal["threshold", "inactivity"]
    deviceId: str | None
    deviceType: str | None
    key: str
    condition: ConditionOut | None
    clearCondition: ConditionOut | None
    forSeconds: float
    inactivitySeconds: float
    severity: Severity
    alarmType: str
    enabled: bool
    description: str


class WebhookOut(BaseModel):
    url: str
    pending: int
    delivered: int
    failed: int
    retries: int
    dropped: int
    failing: bool
    lastError: str
    lastErrorTs: int


# -- rules ---------------------------------------------------------------------------------
async def _rule_doc(request: Request, body: RuleIn) -> dict[str, Any]:
    """The rule's document; a `deviceProfileId` scope becomes its profile's name, which is
    the device type the engine matches."""
    doc = body.model_dump(exclude_none=True, exclude={"deviceProfileId"})
    if body.deviceProfileId is not None:
        if body.deviceType is not None:
            raise RuleError("give deviceType or deviceProfileId, not both")
        doc["deviceType"] = (await profile_by_id(_ctx(request).store, body.deviceProfileId)).name
    return doc


def _rule_out(engine: AlarmEngine, rule_id: str) -> dict[str, Any]:
    rule = engine.rules[rule_id]
    return {**rule.as_json(), "description": rule.describe()}


@router.get("/api/alarmRules", response_model=list[RuleOut])
async def rules(request: Request, _: User) -> list[dict[str, Any]]:
    engine = _engine(request)
    return [_rule_out(engine, rule_id) for rule_id in engine.rules]


@router.post("/api/alarmRule", response_model=RuleOut)
async def create_rule(body: RuleIn, request: Request, _: User) -> dict[str, Any]:
    """Add a rule; it applies to the next reading."""
    engine = _engine(request)
    rule = await engine.save_rule(await _rule_doc(request, body))
    return _rule_out(engine, rule.id)


@router.get("/api/alarmRule/{ruleId}", response_model=RuleOut)
async def get_rule(ruleId: str, request: Request, _: User) -> dict[str, Any]:
    engine = _engine(request)
    if ruleId not in engine.rules:
        raise _no_rule(ruleId)
    return _rule_out(engine, ruleId)


@router.put("/api/alarmRule/{ruleId}", response_model=RuleOut)
async def replace_rule(ruleId: str, body: RuleIn, request: Request, _: User) -> dict[str, Any]:
    """Replace a rule. Its pending durations start over; open alarms stay open."""
    engine = _engine(request)
    if ruleId not in engine.rules:
        raise _no_rule(ruleId)
    await engine.save_rule(await _rule_doc(request, body), rule_id=ruleId)
    return _rule_out(engine, ruleId)


@router.delete("/api/alarmRule/{ruleId}", response_model=bool)
async def delete_rule(ruleId: str, request: Request, _: User) -> bool:
    """Delete a rule. Alarms it raised stay until someone clears them."""
    await _engine(request).delete_rule(ruleId)
    return True


def _no_rule(rule_id: str) -> NotFoundError:
    return NotFoundError(f"no alarm rule {rule_id!r}")


# -- webhooks ------------------------------------------------------------------------------
@router.get("/api/webhooks", response_model=list[WebhookOut])
async def webhooks(request: Request, _: User) -> list[dict[str, Any]]:
    """Delivery state of each `--alarm-webhook` URL."""
    return [
        {
            "url": t.url,
            "pending": len(t.queue),
            "delivered": t.delivered,
            "failed": t.failed,
            "retries": t.retries,
            "dropped": t.dropped,
            "failing": t.failing,
            "lastError": t.last_error,
            "lastErrorTs": t.last_error_ts,
        }
        for t in _ctx(request).webhooks.targets
    ]
