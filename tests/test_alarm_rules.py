"""Alarm rules as data: conditions, defaults, the JSON round trip and the descriptions."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyboard.core.alarm_rules import Condition, RuleError, rule_from_json


@pytest.mark.parametrize(
    ("condition", "holds", "fails"),
    [
        (Condition(">", 30), [30.01, 99], [30, -1]),
        (Condition(">=", 30), [30, 31], [29.99]),
        (Condition("<", 0), [-0.5], [0, 1]),
        (Condition("<=", 0), [0, -3], [0.1]),
        (Condition("==", 1), [1.0], [1.0001]),
        (Condition("!=", 1), [2], [1]),
        (Condition("inside", low=10, high=20), [10, 15, 20], [9.99, 20.01]),
        (Condition("outside", low=10, high=20), [9.99, 20.01], [10, 20]),
    ],
)
def test_conditions(condition: Condition, holds: list[float], fails: list[float]) -> None:
    assert all(condition.holds(x) for x in holds)
    assert not any(condition.holds(x) for x in fails)


def test_a_rule_without_a_clear_condition_clears_when_it_stops_holding() -> None:
    rule = rule_from_json({"key": "t", "condition": {"op": ">", "value": 30}})
    assert rule.clears(30) and not rule.clears(31)
    assert rule.alarm_type == "t alarm" and rule.name == "t alarm" and rule.severity == "MAJOR"
    hysteresis = rule_from_json(
        {
            "key": "t",
            "condition": {"op": ">", "value": 30},
            "clearCondition": {"op": "<", "value": 28},
        }
    )
    assert not hysteresis.clears(29) and hysteresis.clears(27.9)


def test_inactivity_rules_have_their_own_defaults() -> None:
    rule = rule_from_json({"kind": "inactivity", "inactivitySeconds": 60, "deviceType": "esp"})
    assert rule.alarm_type == "Inactive" and rule.key == ""
    assert rule.applies_to("any-id", "esp") and not rule.applies_to("any-id", "other")
    assert rule.describe() == 'no telemetry for 60 s → MAJOR "Inactive"'


def test_scope_one_device_a_type_or_every_device() -> None:
    one = rule_from_json({"key": "t", "condition": {"op": ">", "value": 1}, "deviceId": "d1"})
    assert one.applies_to("d1", "x") and not one.applies_to("d2", "x")
    every = rule_from_json({"key": "t", "condition": {"op": ">", "value": 1}})
    assert every.applies_to("d2", "whatever")


@given(
    st.fixed_dictionaries(
        {
            "key": st.text(min_size=1, max_size=20).filter(str.strip),
            "condition": st.fixed_dictionaries(
                {
                    "op": st.sampled_from([">", ">=", "<", "<=", "==", "!="]),
                    "value": st.floats(allow_nan=False, allow_infinity=False),
                }
            ),
            "forSeconds": st.integers(0, 3600),
            "severity": st.sampled_from(["CRITICAL", "MAJOR", "MINOR", "WARNING"]),
        }
    )
)
def test_a_rule_survives_its_json_round_trip(doc: dict[str, object]) -> None:
    rule = rule_from_json(doc)
    assert rule_from_json(rule.as_json()) == rule


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
)


@given(st.dictionaries(st.sampled_from(["key", "kind", "condition", "forSeconds"]), JSON) | JSON)
def test_any_json_is_a_rule_or_a_rule_error(doc: object) -> None:
    """Nothing but RuleError (a 400 with a message) may come out of bad input."""
    with contextlib.suppress(RuleError):
        rule_from_json(doc)
