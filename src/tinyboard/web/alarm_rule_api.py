"""tinyboard's alarm-rule API (`/api/alarmRules`, `/api/alarmRule/...`): list, add, read,
replace and delete the rules the alarm engine evaluates. ThingsBoard has no such controller
(its rules live in device profiles), so these paths and shapes are tinyboard's own; a rule's
document and its validation are `core.alarm_rules`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from tinyboard.core.alarm_engine import AlarmEngine
from tinyboard.core.alarm_rules import Op, RuleError, RuleKind
from tinyboard.core.models import Severity
from tinyboard.errors import NotFoundError
from tinyboard.web.auth import User
from tinyboard.web.context import context_of
from tinyboard.web.models import errors
from tinyboard.web.profiles import profile_by_id

router = APIRouter(tags=["alarms"], responses=errors(400, 401, 404))


class ConditionIn(BaseModel):
    op: Op
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
    kind: RuleKind = "threshold"
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
    kind: RuleKind
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


def _engine(request: Request) -> AlarmEngine:
    return context_of(request).alarms


async def _rule_doc(request: Request, body: RuleIn) -> dict[str, Any]:
    """The rule's document; a `deviceProfileId` scope becomes its profile's name, which is
    the device type the engine matches."""
    doc = body.model_dump(exclude_none=True, exclude={"deviceProfileId"})
    if body.deviceProfileId is not None:
        if body.deviceType is not None:
            raise RuleError("give deviceType or deviceProfileId, not both")
        doc["deviceType"] = (
            await profile_by_id(context_of(request).store, body.deviceProfileId)
        ).name
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
