"""ThingsBoard's key filters (`keyFilters` of an entity query): predicates on a device's
entity fields, latest time series or attributes, read and checked once, then evaluated on
each candidate's values with no I/O here.

Semantics as ThingsBoard's SQL (EntityKeyMapping): filters combine with AND; a device with
no value for a filtered key never matches, whatever the operation (NOT_EQUAL too: SQL's
NULL); STRING compares the value's text (`IN` and `NOT_IN` take a comma-separated list,
trimmed), NUMERIC (and DATE_TIME) compares numbers (a value that is not one never matches),
BOOLEAN compares true/false; COMPLEX joins its predicates with AND or OR. A predicate value
is its `userValue`, else its `defaultValue`; a `dynamicValue` (an attribute of the current
tenant, customer or user) is refused, since tinyboard keeps no such attributes.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tinyboard.web.ws_commands import BadCommand, shown

MAX_DEPTH = 8
"""Nesting of COMPLEX predicates (the UI builds two or three levels)."""
MAX_PREDICATES = 1000
"""Predicates in one query, over all its filters."""
T = TypeVar("T")

TEXT_TESTS: dict[str, Callable[[str, str], bool]] = {
    "EQUAL": lambda value, wanted: value == wanted,
    "NOT_EQUAL": lambda value, wanted: value != wanted,
    "STARTS_WITH": str.startswith,
    "ENDS_WITH": str.endswith,
    "CONTAINS": lambda value, wanted: wanted in value,
    "NOT_CONTAINS": lambda value, wanted: wanted not in value,
    "IN": lambda value, wanted: value in {w.strip() for w in wanted.split(",")},
    "NOT_IN": lambda value, wanted: value not in {w.strip() for w in wanted.split(",")},
}
NUMBER_TESTS: dict[str, Callable[[float, float], bool]] = {
    "EQUAL": operator.eq,
    "NOT_EQUAL": operator.ne,
    "GREATER": operator.gt,
    "LESS": operator.lt,
    "GREATER_OR_EQUAL": operator.ge,
    "LESS_OR_EQUAL": operator.le,
}
FLAG_TESTS: dict[str, Callable[[bool, bool], bool]] = {
    "EQUAL": operator.eq,
    "NOT_EQUAL": operator.ne,
}


@dataclass(frozen=True, slots=True)
class Text:
    test: Callable[[str, str], bool]
    value: str
    ignore_case: bool

    def holds(self, text: str) -> bool:
        if self.ignore_case:
            return self.test(text.lower(), self.value.lower())
        return self.test(text, self.value)


@dataclass(frozen=True, slots=True)
class Number:
    test: Callable[[float, float], bool]
    value: float

    def holds(self, text: str) -> bool:
        try:
            return self.test(float(text), self.value)
        except ValueError:
            return False


@dataclass(frozen=True, slots=True)
class Flag:
    test: Callable[[bool, bool], bool]
    value: bool

    def holds(self, text: str) -> bool:
        return text in ("true", "false") and self.test(text == "true", self.value)


@dataclass(frozen=True, slots=True)
class Complex:
    any: bool
    """OR (True) or AND (False)."""
    parts: tuple[Predicate, ...]

    def holds(self, text: str) -> bool:
        results = (p.holds(text) for p in self.parts)
        return any(results) if self.any else all(results)


Predicate = Text | Number | Flag | Complex


def holds(predicate: Predicate, text: str | None) -> bool:
    """Whether a value (as ThingsBoard's APIs answer it: text; None when the device has
    none) satisfies `predicate`."""
    return text is not None and predicate.holds(text)


def read_predicate(raw: object, budget: list[int], depth: int = 0) -> Predicate:
    """One KeyFilterPredicate (or a KeyFilterPredicateInfo wrapping one); `budget` holds
    how many predicates the query may still have."""
    if isinstance(raw, dict) and isinstance(raw.get("keyFilterPredicate"), dict):
        raw = raw["keyFilterPredicate"]
    if not isinstance(raw, dict):
        raise BadCommand(f"a key filter predicate is an object, not {shown(raw)}")
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise BadCommand(
            f"key filters hold at most {MAX_PREDICATES} predicates, nested at most {MAX_DEPTH} deep"
        )
    kind = raw.get("type")
    if kind == "COMPLEX":
        parts = raw.get("predicates")
        if raw.get("operation") not in ("AND", "OR") or not isinstance(parts, list):
            raise BadCommand('a COMPLEX predicate has "operation": AND or OR and "predicates"')
        return Complex(
            raw["operation"] == "OR", tuple(read_predicate(p, budget, depth + 1) for p in parts)
        )
    reader = _READERS.get(kind) if isinstance(kind, str) else None
    if reader is None:
        raise BadCommand(f"predicate type {shown(kind)} is not STRING, NUMERIC, BOOLEAN or COMPLEX")
    return reader(raw, _value(raw))


def _operation(raw: dict[str, Any], tests: dict[str, T]) -> T:
    op = raw.get("operation")
    test = tests.get(op) if isinstance(op, str) else None
    if test is None:
        raise BadCommand(f"a {raw['type']} predicate's operation is one of {', '.join(tests)}")
    return test


def _text(raw: dict[str, Any], value: object) -> Predicate:
    if not isinstance(value, str):
        raise BadCommand(f"a STRING predicate compares with text, not {shown(value)}")
    ignore_case = raw.get("ignoreCase")
    if ignore_case is not None and not isinstance(ignore_case, bool):
        raise BadCommand(f"ignoreCase is true or false, not {shown(ignore_case)}")
    return Text(_operation(raw, TEXT_TESTS), value, ignore_case is True)


def _number(raw: dict[str, Any], value: object) -> Predicate:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise BadCommand(f"a NUMERIC predicate compares with a number, not {shown(value)}")
    return Number(_operation(raw, NUMBER_TESTS), float(value))


def _flag(raw: dict[str, Any], value: object) -> Predicate:
    if not isinstance(value, bool):
        raise BadCommand(f"a BOOLEAN predicate compares with true or false, not {shown(value)}")
    return Flag(_operation(raw, FLAG_TESTS), value)


_READERS: dict[str, Callable[[dict[str, Any], object], Predicate]] = {
    "STRING": _text,
    "NUMERIC": _number,
    "BOOLEAN": _flag,
}


def _value(raw: dict[str, Any]) -> object:
    spec = raw.get("value")
    if not isinstance(spec, dict):
        raise BadCommand('a predicate\'s value is {"defaultValue": ...}')
    dynamic = spec.get("dynamicValue")
    if isinstance(dynamic, dict) and dynamic.get("sourceType"):
        raise BadCommand(
            "dynamicValue is not supported: tinyboard keeps no tenant, customer or user "
            "attributes; give the value as defaultValue"
        )
    user = spec.get("userValue")
    return user if user is not None else spec.get("defaultValue")
