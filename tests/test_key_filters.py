"""ThingsBoard's key filter predicates on plain values (web/key_filters.py), in the JSON the
UI's filter editor builds (ui-ngx shared/models/query/query.models.ts)."""

from __future__ import annotations

from typing import Any

import pytest

from tinyboard.web.key_filters import MAX_PREDICATES, holds, read_predicate
from tinyboard.web.ws_commands import BadCommand


def predicate(kind: str, operation: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "operation": operation, "value": {"defaultValue": value}, **extra}


def check(raw: dict[str, Any], text: str | None) -> bool:
    return holds(read_predicate(raw, [MAX_PREDICATES]), text)


@pytest.mark.parametrize(
    ("operation", "wanted", "text", "expected"),
    [
        ("EQUAL", "Kitchen", "Kitchen", True),
        ("EQUAL", "Kitchen", "kitchen", False),
        ("NOT_EQUAL", "Kitchen", "Hall", True),
        ("STARTS_WITH", "boiler", "boiler-3", True),
        ("ENDS_WITH", "-3", "boiler-3", True),
        ("CONTAINS", "ile", "boiler", True),
        ("NOT_CONTAINS", "ile", "boiler", False),
        ("IN", "a, b ,c", "b", True),
        ("IN", "a,b", "ab", False),
        ("NOT_IN", "a,b", "c", True),
    ],
)
def test_string_operations(operation: str, wanted: str, text: str, expected: bool) -> None:
    assert check(predicate("STRING", operation, wanted, ignoreCase=False), text) is expected


def test_ignore_case_and_user_value() -> None:
    raw = predicate("STRING", "EQUAL", "kitchen", ignoreCase=True)
    assert check(raw, "KITCHEN")
    raw["value"]["userValue"] = "hall"  # what a dashboard user typed wins over the default
    assert check(raw, "Hall") and not check(raw, "kitchen")


@pytest.mark.parametrize(
    ("operation", "text", "expected"),
    [
        ("EQUAL", "20", True),
        ("EQUAL", "20.0", True),
        ("NOT_EQUAL", "21", True),
        ("GREATER", "20.5", True),
        ("GREATER", "20", False),
        ("LESS", "19.9", True),
        ("GREATER_OR_EQUAL", "20", True),
        ("LESS_OR_EQUAL", "20.1", False),
        ("GREATER", "warm", False),  # not a number: never matches
    ],
)
def test_numeric_operations(operation: str, text: str, expected: bool) -> None:
    assert check(predicate("NUMERIC", operation, 20), text) is expected


def test_boolean_operations() -> None:
    assert check(predicate("BOOLEAN", "EQUAL", True), "true")
    assert check(predicate("BOOLEAN", "NOT_EQUAL", True), "false")
    assert not check(predicate("BOOLEAN", "EQUAL", True), "yes")


def test_no_value_never_matches_whatever_the_operation() -> None:
    """As ThingsBoard's SQL: a missing latest value is NULL, and NOT_EQUAL NULL is not true."""
    for raw in (
        predicate("STRING", "NOT_EQUAL", "x", ignoreCase=False),
        predicate("NUMERIC", "NOT_EQUAL", 1),
        predicate("BOOLEAN", "NOT_EQUAL", True),
    ):
        assert not check(raw, None)


def test_complex_predicates_nest_and_or() -> None:
    warm = predicate("NUMERIC", "GREATER", 25)
    cold = predicate("NUMERIC", "LESS", 5)
    extreme = {"type": "COMPLEX", "operation": "OR", "predicates": [warm, cold]}
    assert check(extreme, "30") and check(extreme, "0") and not check(extreme, "15")
    # the UI's KeyFilterPredicateInfo wrapping, inside an AND
    wrapped = {"keyFilterPredicate": extreme, "userInfo": {"editable": True, "label": ""}}
    not_zero = predicate("NUMERIC", "NOT_EQUAL", 0)
    both = {"type": "COMPLEX", "operation": "AND", "predicates": [wrapped, not_zero]}
    assert check(both, "30") and not check(both, "0")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("x", "is an object"),
        (predicate("STRING", "GREATER", "a"), "operation is one of EQUAL"),
        (predicate("STRING", ["EQUAL"], "a"), "operation is one of EQUAL"),
        (predicate("NUMERIC", "EQUAL", "20"), "with a number"),
        (predicate("NUMERIC", "EQUAL", True), "with a number"),
        (predicate("BOOLEAN", "EQUAL", 1), "true or false"),
        # was taken for false: compared case-sensitively, not refused
        (predicate("STRING", "EQUAL", "a", ignoreCase="true"), "ignoreCase is true or false"),
        (predicate("STRING", "EQUAL", "a", ignoreCase=1), "ignoreCase is true or false"),
        (predicate("REGEX", "EQUAL", "a"), "is not STRING"),
        ({"type": "STRING", "operation": "EQUAL"}, "defaultValue"),
        ({"type": "COMPLEX", "operation": "XOR", "predicates": []}, "AND or OR"),
        (
            {
                "type": "NUMERIC",
                "operation": "EQUAL",
                "value": {
                    "defaultValue": 1,
                    "dynamicValue": {"sourceType": "CURRENT_USER", "sourceAttribute": "limit"},
                },
            },
            "dynamicValue is not supported",
        ),
    ],
)
def test_bad_predicates_are_refused_with_what_to_send(raw: Any, problem: str) -> None:
    with pytest.raises(BadCommand, match=problem):
        read_predicate(raw, [MAX_PREDICATES])


def test_predicates_are_bounded_in_number_and_depth() -> None:
    leaf = predicate("NUMERIC", "EQUAL", 1)
    wide = {"type": "COMPLEX", "operation": "OR", "predicates": [leaf] * MAX_PREDICATES}
    with pytest.raises(BadCommand, match=f"at most {MAX_PREDICATES} predicates"):
        read_predicate(wide, [MAX_PREDICATES])
    deep: dict[str, Any] = leaf
    for _ in range(20):
        deep = {"type": "COMPLEX", "operation": "AND", "predicates": [deep]}
    with pytest.raises(BadCommand, match="nested at most"):
        read_predicate(deep, [MAX_PREDICATES])
