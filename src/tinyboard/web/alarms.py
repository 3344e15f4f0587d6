"""Alarms on ThingsBoard's paths (`/api/alarm...`), alarm rules and webhook status.

Alarms change in the engine first and reach the store a moment later; every read here
waits for `settled()` so a client sees its own changes and the ones before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from tinyboard.core.alarm_rules import RuleError
from tinyboard.core.alarms import AlarmEngine
from tinyboard.core.models import Alarm, AlarmStatus, Severity, more_severe
from tinyboard.errors import NotFoundError
from tinyboard.web.auth import User
from tinyboard.web.context import WebContext
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


class AlarmId(BaseModel):
    entityType: Literal["ALARM"] = "ALARM"
    id: str


class Originator(BaseModel):
    entityType: Literal["DEVICE"] = "DEVICE"
    id: str


class AlarmOut(BaseModel):
    id: AlarmId
    createdTime: int
    type: str
    originator: Originator
    originatorName: str
    severity: Severity
    status: AlarmStatus
    acknowledged: bool
    cleared: bool
    startTs: int
    endTs: int
    ackTs: int
    clearTs: int
    details: dict[str, Any]


class AlarmPage(BaseModel):
    data: list[AlarmOut]
    totalPages: int
    totalElements: int
    hasNext: bool


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


def _ctx(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


def _engine(request: Request) -> AlarmEngine:
    return _ctx(request).alarms


@dataclass
class AlarmQuery:
    """ThingsBoard's alarm list parameters."""

    pageSize: int = Query(10, ge=1, le=1000)
    page: int = Query(0, ge=0, le=10_000_000)
    searchStatus: SearchStatus = "ANY"
    status: AlarmStatus | None = None
    textSearch: str = ""
    startTime: int = Query(0, ge=0, le=MAX_TS)
    endTime: int = Query(MAX_TS, ge=0, le=MAX_TS)

    async def run(self, request: Request, device: int | None) -> tuple[list[Alarm], int]:
        statuses = [s for s in SEARCH[self.searchStatus] if self.status in (None, s)]
        await _engine(request).settled()
        return await _ctx(request).store.list_alarms(
            device=device,
            statuses=statuses,
            text_search=self.textSearch,
            start_ts=self.startTime,
            end_ts=self.endTime,
            limit=self.pageSize,
            offset=self.page * self.pageSize,
        )

    async def page_of(self, request: Request, device: int | None) -> dict[str, Any]:
        alarms, total = await self.run(request, device)
        return {
            "data": [a.as_json() for a in alarms],
            "totalPages": math.ceil(total / self.pageSize),
            "totalElements": total,
            "hasNext": (self.page + 1) * self.pageSize < total,
        }


Alarms = Annotated[AlarmQuery, Depends()]


@router.get("/api/alarms", response_model=AlarmPage)
async def all_alarms(request: Request, _: User, query: Alarms) -> dict[str, Any]:
    """Alarms of every device, newest first."""
    return await query.page_of(request, None)


@router.get("/api/alarm/info/{alarmId}", response_model=AlarmOut)
async def alarm_info(alarmId: str, request: Request, _: User) -> dict[str, Any]:
    return (await _engine(request).get(alarmId)).as_json()


@router.get("/api/alarm/highestSeverity/{entityType}/{entityId}", response_model=Severity | None)
async def highest_severity(
    entityType: Literal["DEVICE"],
    entityId: str,
    request: Request,
    _: User,
    searchStatus: SearchStatus = "ANY",
) -> Severity | None:
    """The most severe alarm of the device among those matching `searchStatus`."""
    device = await _ctx(request).store.get_device(entityId)
    query = AlarmQuery(1000, 0, searchStatus, None, "", 0, MAX_TS)
    highest: Severity | None = None
    while True:
        alarms, total = await query.run(request, device.key)
        for alarm in alarms:
            if highest is None or more_severe(alarm.severity, highest):
                highest = alarm.severity
        query.page += 1
        if query.page * query.pageSize >= total or highest == "CRITICAL":
            return highest


@router.get("/api/alarm/{entityType}/{entityId}", response_model=AlarmPage)
async def device_alarms(
    entityType: Literal["DEVICE"], entityId: str, request: Request, _: User, query: Alarms
) -> dict[str, Any]:
    """One device's alarms, newest first."""
    device = await _ctx(request).store.get_device(entityId)
    return await query.page_of(request, device.key)


@router.get("/api/alarm/{alarmId}", response_model=AlarmOut)
async def get_alarm(alarmId: str, request: Request, _: User) -> dict[str, Any]:
    return (await _engine(request).get(alarmId)).as_json()


@router.post("/api/alarm/{alarmId}/ack", response_model=AlarmOut)
async def acknowledge(alarmId: str, request: Request, _: User) -> dict[str, Any]:
    """Acknowledge: ACTIVE_UNACK → ACTIVE_ACK, CLEARED_UNACK → CLEARED_ACK."""
    return (await _engine(request).acknowledge(alarmId)).as_json()


@router.post("/api/alarm/{alarmId}/clear", response_model=AlarmOut)
async def clear(alarmId: str, request: Request, _: User) -> dict[str, Any]:
    """Clear by hand. If its condition still holds, the next reading raises a new alarm."""
    return (await _engine(request).clear(alarmId)).as_json()


@router.delete("/api/alarm/{alarmId}", response_model=bool)
async def delete(alarmId: str, request: Request, _: User) -> bool:
    await _engine(request).delete(alarmId)
    return True


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
