"""The rule evaluator on its own: readings in, decisions out, with no store and no event
loop (the engine's store and write-behind are tested in test_alarm_engine.py)."""

from __future__ import annotations

from typing import Any

from tinyboard.core.alarm_evaluator import RuleEvaluator
from tinyboard.core.alarm_rules import rule_from_json
from tinyboard.core.models import Alarm, AlarmEvent, Device
from tinyboard.core.open_alarms import OpenAlarms

T0 = 1_800_000_000.0
DEVICE = Device(
    id="d1", key=1, name="boiler", type="default", label="", token="t" * 20, created_ts=0,
    profile_id="p",
)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Decisions:
    """An evaluator on one device, and what it decided."""

    def __init__(self, *rules: dict[str, Any]) -> None:
        self.clock = Clock()
        self.changes: list[tuple[AlarmEvent, Alarm]] = []
        self.pending: list[tuple[str, int, int | None]] = []
        self.alarms = OpenAlarms(lambda event, alarm: self.changes.append((event, alarm)))
        self.evaluator = RuleEvaluator(
            clock=self.clock,
            alarms=self.alarms,
            pending=lambda rule, device, since: self.pending.append((rule, device, since)),
        )
        parsed = [rule_from_json(r) for r in rules]
        self.evaluator.load([DEVICE], {}, parsed, self.clock.now)

    def read(self, key: str, value: float) -> None:
        assert self.evaluator.evaluate([(DEVICE.key, key, int(self.clock.now * 1000), value)]) == []

    def events(self) -> list[AlarmEvent]:
        return [event for event, _ in self.changes]


def test_a_threshold_raises_escalates_and_clears_with_hysteresis() -> None:
    hot = {"key": "t", "condition": {"op": ">", "value": 30}, "alarmType": "Hot"}
    decisions = Decisions(
        {**hot, "clearCondition": {"op": "<", "value": 25}},
        {**hot, "condition": {"op": ">", "value": 40}, "severity": "CRITICAL"},
    )
    decisions.read("t", 31)
    decisions.read("t", 41)
    decisions.read("t", 28)  # below both raise tests, above the clear test: still held
    assert decisions.events() == ["ALARM_CREATED", "ALARM_ESCALATED"]
    decisions.read("t", 20)
    assert decisions.events()[-1] == "ALARM_CLEARED"
    assert decisions.alarms.of(DEVICE.key) == []
    assert (decisions.alarms.stats.created, decisions.alarms.stats.escalated) == (1, 1)


def test_a_duration_is_pending_until_the_sweep_finds_it_held() -> None:
    decisions = Decisions(
        {"id": "r", "key": "t", "condition": {"op": ">", "value": 30}, "forSeconds": 60}
    )
    decisions.read("t", 31)
    assert decisions.pending == [("r", DEVICE.key, int(T0 * 1000))]
    decisions.clock.now += 59
    decisions.evaluator.sweep()
    assert decisions.changes == []
    decisions.clock.now += 1
    decisions.evaluator.sweep()
    assert decisions.events() == ["ALARM_CREATED"]
    assert decisions.pending[-1] == ("r", DEVICE.key, None)


def test_silence_raises_and_the_next_message_clears() -> None:
    decisions = Decisions({"kind": "inactivity", "inactivitySeconds": 10})
    decisions.clock.now += 10
    decisions.evaluator.sweep()
    assert decisions.events() == ["ALARM_CREATED"]
    assert decisions.evaluator.inactive(DEVICE) is True
    decisions.read("t", 1)
    assert decisions.events() == ["ALARM_CREATED", "ALARM_CLEARED"]
    assert decisions.evaluator.inactive(DEVICE) is False
