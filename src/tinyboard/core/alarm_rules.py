"""Alarm rules as data: what they watch, when they raise and when they clear.

A rule is read from (and written back to) a JSON document, the one the REST API and the
store hold, so a rule has one shape everywhere. Validation errors say what to change.
"""

from __future__ import annotations

import functools
import math
import operator
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tinyboard.core.models import SEVERITIES, Severity
from tinyboard.errors import TinyboardError

Op = Literal[">", ">=", "<", "<=", "==", "!=", "inside", "outside"]
OPS: tuple[Op, ...] = (">", ">=", "<", "<=", "==", "!=", "inside", "outside")
RANGE_OPS = ("inside", "outside")
RuleKind = Literal["threshold", "inactivity"]
MAX_SECONDS = 366 * 86400


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


_FLIPPED: dict[str, Callable[[float, float], bool]] = {
    ">": operator.lt,
    ">=": operator.le,
    "<": operator.gt,
    "<=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


class RuleError(TinyboardError):
    """A rule document that cannot be used (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Condition:
    """`value op threshold`, or for inside/outside: low <= value <= high (inclusive)."""

    op: Op
    value: float = 0.0
    low: float = 0.0
    high: float = 0.0

    def holds(self, x: float) -> bool:
        op = self.op
        if op in RANGE_OPS:
            inside = self.low <= x <= self.high
            return inside if op == "inside" else not inside
        return _COMPARE[op](x, self.value)

    def compiled(self) -> Callable[[float], bool]:
        """`holds` as one C-level call for the comparisons (the alarm engine's hot path):
        `x > v` is `operator.lt(v, x)`."""
        if self.op in RANGE_OPS:
            return self.holds
        return functools.partial(_FLIPPED[self.op], self.value)

    def as_json(self) -> dict[str, Any]:
        if self.op in RANGE_OPS:
            return {"op": self.op, "low": self.low, "high": self.high}
        return {"op": self.op, "value": self.value}

    def __str__(self) -> str:
        if self.op in RANGE_OPS:
            return f"{self.op} [{self.low:g}, {self.high:g}]"
        return f"{self.op} {self.value:g}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    id: str
    name: str
    kind: RuleKind
    device_id: str | None
    """One device, or None for every device of `device_type` (or every device at all)."""
    device_type: str | None
    key: str
    raise_when: Condition | None
    clear_when: Condition | None
    """None: the alarm clears as soon as `raise_when` no longer holds."""
    for_seconds: float
    """The raise condition must hold this long, continuously, before the alarm is raised."""
    inactivity_seconds: float
    severity: Severity
    alarm_type: str
    enabled: bool = True

    def applies_to(self, device_id: str, device_type: str) -> bool:
        if self.device_id is not None:
            return self.device_id == device_id
        return self.device_type is None or self.device_type == device_type

    def clears(self, x: float) -> bool:
        if self.clear_when is not None:
            return self.clear_when.holds(x)
        assert self.raise_when is not None
        return not self.raise_when.holds(x)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "deviceId": self.device_id,
            "deviceType": self.device_type,
            "key": self.key,
            "condition": self.raise_when.as_json() if self.raise_when else None,
            "clearCondition": self.clear_when.as_json() if self.clear_when else None,
            "forSeconds": self.for_seconds,
            "inactivitySeconds": self.inactivity_seconds,
            "severity": self.severity,
            "alarmType": self.alarm_type,
            "enabled": self.enabled,
        }

    def describe(self) -> str:
        """One line for people: 'temperature > 30 for 60 s → MAJOR "Too hot"'."""
        if self.kind == "inactivity":
            what = f"no telemetry for {self.inactivity_seconds:g} s"
        else:
            what = f"{self.key} {self.raise_when}"
            if self.for_seconds:
                what += f" for {self.for_seconds:g} s"
            if self.clear_when is not None:
                what += f", clear when {self.key} {self.clear_when}"
        return f'{what} → {self.severity} "{self.alarm_type}"'


def rule_from_json(doc: Any, *, rule_id: str | None = None) -> Rule:
    """A validated rule from its JSON document (a new id unless one is given or present)."""
    if not isinstance(doc, dict):
        raise RuleError("a rule is a JSON object")
    kind = doc.get("kind", "threshold")
    if kind not in ("threshold", "inactivity"):
        raise RuleError("kind must be 'threshold' or 'inactivity'")
    severity = doc.get("severity", "MAJOR")
    if severity not in SEVERITIES:
        raise RuleError(f"severity must be one of {', '.join(SEVERITIES)}")
    device_id = _optional_text(doc, "deviceId")
    device_type = _optional_text(doc, "deviceType")
    if device_id is not None and device_type is not None:
        raise RuleError("give deviceId (one device) or deviceType (all of a type), not both")
    key = "" if kind == "inactivity" else _text(doc, "key")
    name = _optional_text(doc, "name")
    default_type = "Inactive" if kind == "inactivity" else name or f"{key} alarm"
    alarm_type = _text(doc, "alarmType", default_type)
    common: dict[str, Any] = {
        "id": rule_id or _optional_text(doc, "id") or str(uuid.uuid4()),
        "name": name or alarm_type,
        "kind": kind,
        "device_id": device_id,
        "device_type": device_type,
        "severity": severity,
        "alarm_type": alarm_type,
        "enabled": _flag(doc, "enabled", default=True),
    }
    if kind == "inactivity":
        seconds = _seconds(doc, "inactivitySeconds", required=True)
        if seconds <= 0:
            raise RuleError("inactivitySeconds must be more than 0")
        return Rule(
            **common,
            key="",
            raise_when=None,
            clear_when=None,
            for_seconds=0.0,
            inactivity_seconds=seconds,
        )
    return Rule(
        **common,
        key=key,
        raise_when=_condition(doc.get("condition"), "condition"),
        clear_when=(
            None
            if doc.get("clearCondition") is None
            else _condition(doc["clearCondition"], "clearCondition")
        ),
        for_seconds=_seconds(doc, "forSeconds"),
        inactivity_seconds=0.0,
    )


def _condition(doc: Any, field: str) -> Condition:
    if not isinstance(doc, dict):
        raise RuleError(f'{field} must be an object like {{"op": ">", "value": 30}}')
    op = doc.get("op")
    if op not in OPS:
        raise RuleError(f"{field}.op must be one of {' '.join(OPS)}")
    if op in RANGE_OPS:
        low, high = _number(doc, "low", field), _number(doc, "high", field)
        if low > high:
            raise RuleError(f"{field}: low must not be above high")
        return Condition(op, low=low, high=high)
    return Condition(op, value=_number(doc, "value", field))


def _number(doc: dict[str, Any], name: str, field: str) -> float:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RuleError(f"{field}.{name} must be a finite number")
    return float(value)


def _seconds(doc: dict[str, Any], name: str, *, required: bool = False) -> float:
    value = doc.get(name, None if required else 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(f"{name} must be a number of seconds")
    if not 0 <= value <= MAX_SECONDS:
        raise RuleError(f"{name} must be between 0 and {MAX_SECONDS}")
    return float(value)


def _text(doc: dict[str, Any], name: str, default: str | None = None) -> str:
    value = doc.get(name, default)
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise RuleError(f"{name} must be a non-empty string of at most 255 characters")
    return value.strip()


def _optional_text(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    return _text(doc, name)


def _flag(doc: dict[str, Any], name: str, *, default: bool) -> bool:
    value = doc.get(name, default)
    if not isinstance(value, bool):
        raise RuleError(f"{name} must be true or false")
    return value
