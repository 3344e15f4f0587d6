"""Alarm rules evaluated in memory: which rule holds on which device, when to raise,
escalate and clear their alarms, and the due times of durations and silences.

Strategy: every decision is made here at once: alarm changes go to `OpenAlarms`, a duration
that starts or ends to the `pending` callback, so evaluating needs no store and no event
loop; `AlarmEngine` loads this from the store and writes the decisions behind. A reading is
looked up by key in the rule index and, per (device, key), in a cache of its rules with
their compiled raise tests. Durations ("for at least N s") and inactivity timeouts are due
times in one heap that `sweep` checks.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tinyboard.core.alarm_index import KeyRules, RuleIndex
from tinyboard.core.alarm_rules import Rule
from tinyboard.core.models import Alarm, Device, Reading, more_severe
from tinyboard.core.open_alarms import OpenAlarms

Pending = Callable[[str, int, int | None], None]
"""(rule id, device key, since when in ms): a duration started; None instead: it ended."""


@dataclass(slots=True)
class _State:
    """One rule on one device."""

    raised: bool = False
    pending_since: float | None = None
    value: float = 0.0


class RuleEvaluator:
    def __init__(self, *, clock: Callable[[], float], alarms: OpenAlarms, pending: Pending) -> None:
        self.clock = clock
        self.rules: dict[str, Rule] = {}
        self.devices: dict[int, Device] = {}
        """Every device by key: a reading names its device by key only."""
        self.open = alarms
        self._pending = pending
        self._index = RuleIndex()
        self._state: dict[tuple[str, int], _State] = {}
        self._watch: dict[tuple[int, str], list[tuple[Callable[[float], bool], Rule, _State]]] = {}
        """(device, key) → its rules, each with its compiled raise test and its state: built
        on the first reading, dropped whenever the rules change."""
        self._heap: list[tuple[float, int, str, int]] = []
        self._seq = itertools.count()
        self._last_seen: dict[int, float] = {}
        self._armed: set[int] = set()
        """Devices whose inactivity rules all have a due time in the heap (or have fired)."""
        self._inactive: dict[int, set[str]] = {}
        """Device → inactivity rules that fired and wait for the next message to clear."""

    # -- start-up ----------------------------------------------------------------------------
    def load(
        self,
        devices: Iterable[Device],
        heard_ms: Mapping[int, int],
        rules: Iterable[Rule],
        now: float,
    ) -> None:
        """Start from what the store holds: the devices, when each last sent telemetry (a
        time ahead of `now` counts as `now`) and the rules."""
        self.devices = {d.key: d for d in devices}
        for device, ts in heard_ms.items():
            self._last_seen[device] = min(ts / 1000, now)
        for rule in rules:
            self.rules[rule.id] = rule
        self._reindex()

    def pending_key(self, rule_id: str) -> str | None:
        """The key whose newest value decides whether a stored duration of the rule resumes;
        None when none can (the rule is gone, disabled or not a threshold rule)."""
        rule = self.rules.get(rule_id)
        if rule is not None and rule.enabled and rule.raise_when is not None:
            return rule.key
        return None

    def resume_pending(self, rule_id: str, device_key: int, since_ms: int, value: object) -> None:
        """Resume a stored duration only while its condition holds for `value`, the newest
        stored value: the write that ended it may have been lost, or the rule changed since."""
        rule = self.rules.get(rule_id)
        if (
            rule is None
            or rule.raise_when is None
            or not isinstance(value, int | float)
            or isinstance(value, bool)
            or not rule.raise_when.holds(float(value))
        ):
            self._pending(rule_id, device_key, None)
            return
        state = self._state_of(rule, device_key)
        state.pending_since = since_ms / 1000
        state.value = float(value)
        self._push(state.pending_since + rule.for_seconds, rule_id, device_key)

    def holding_rules(self, alarm: Alarm) -> list[Rule]:
        """The enabled rules that can hold the alarm up: of its type, on its device."""
        device = self.devices.get(alarm.device_key)
        if device is None:
            return []
        return [
            r
            for r in self._index.by_alarm_type.get(alarm.type, [])
            if r.applies_to(device.id, device.type)
        ]

    def recover(
        self, alarm: Alarm, rules: list[Rule], latest: Mapping[str, object], now: float
    ) -> None:
        """Rebuild which of `rules` hold the alarm up from the newest stored value of each
        threshold rule's key (`latest`, by rule id); clear it if none does (a clear lost in
        a crash)."""
        device_key = alarm.device_key
        for rule in rules:
            state = self._state_of(rule, device_key)
            if rule.kind == "inactivity":
                state.raised = True
                self._inactive.setdefault(device_key, set()).add(rule.id)
                continue
            value = latest.get(rule.id)
            if isinstance(value, int | float) and not isinstance(value, bool):
                state.value = float(value)
                state.raised = not rule.clears(state.value)
        if not any(self._state_of(r, device_key).raised for r in rules):
            self.open.close(alarm, now, reason="cleared while tinyboard was down")

    # -- rules and devices -------------------------------------------------------------------
    def put_rule(self, rule: Rule) -> None:
        """Add or replace a rule. A replaced rule's pending durations start over; one that
        raises the same alarm type still holds the alarms it raised, so it can clear them."""
        old = self.rules.get(rule.id)
        holding = [k[1] for k, s in self._state.items() if k[0] == rule.id and s.raised]
        self._forget_rule(rule.id)
        self.rules[rule.id] = rule
        self._reindex()
        if old is not None and old.alarm_type == rule.alarm_type and rule.enabled:
            for device_key in holding:
                if self.open.get(device_key, rule.alarm_type) is not None:
                    self._state_of(rule, device_key).raised = True

    def remove_rule(self, rule_id: str) -> None:
        self._forget_rule(rule_id)
        self.rules.pop(rule_id, None)
        self._reindex()

    def forget_device(self, device_id: str) -> None:
        """A device was deleted (with its alarms): drop everything kept for it."""
        gone = [key for key, device in self.devices.items() if device.id == device_id]
        for key in gone:
            del self.devices[key]
            self.open.forget_device(key)
            self._last_seen.pop(key, None)
            self._inactive.pop(key, None)
            self._armed.discard(key)
            for state_key in [k for k in self._state if k[1] == key]:
                del self._state[state_key]
            for watch_key in [k for k in self._watch if k[0] == key]:
                del self._watch[watch_key]

    def replace_devices(self, devices: Iterable[Device]) -> None:
        """The devices as the store has them now; the ones gone from it are forgotten."""
        known = {d.key: d for d in devices}
        for gone in [d for key, d in self.devices.items() if key not in known]:
            self.forget_device(gone.id)  # deleted by another process (`tinyboard device rm`)
        self.devices = known

    def _forget_rule(self, rule_id: str) -> None:
        for key in [k for k in self._state if k[0] == rule_id]:
            if self._state[key].pending_since is not None:
                self._pending(rule_id, key[1], None)
            del self._state[key]
        for fired in self._inactive.values():
            fired.discard(rule_id)

    def _reindex(self) -> None:
        self._watch = {}
        self._index = RuleIndex.of(self.rules.values())
        self._armed.clear()
        watched = {r.id for r in self._index.inactivity}  # their due times are pushed again
        self._heap = [e for e in self._heap if e[2] in self.rules and e[2] not in watched]
        heapq.heapify(self._heap)
        now = self.clock()
        for device_key in self.devices:
            self._arm(device_key, now)

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, readings: Sequence[Reading]) -> list[Reading]:
        """Decide on committed readings; return those of devices not known here (yet)."""
        now = self.clock()
        unknown: list[Reading] = []
        last_seen = self._last_seen
        for reading in readings:  # who was heard from when: inactivity rules, even later ones
            last_seen[reading[0]] = now
        if not self.rules:
            return unknown
        by_key = self._index.by_key
        watch_activity = bool(self._index.inactivity)
        devices = self.devices
        for reading in readings:
            device_key = reading[0]
            device = devices.get(device_key)
            if device is None:
                unknown.append(reading)
                continue
            if watch_activity:
                self._seen(device_key, now)
            rules = by_key.get(reading[1])
            value = reading[3]
            if rules is None or not isinstance(value, int | float) or isinstance(value, bool):
                continue
            self._check(rules, device, reading[1], float(value), now)
        return unknown

    def _check(self, rules: KeyRules, device: Device, key: str, x: float, now: float) -> None:
        watch = self._watch.get((device.key, key))
        if watch is None:
            watch = self._watch[(device.key, key)] = [
                (r.raise_when.compiled(), r, self._state_of(r, device.key))  # type: ignore[union-attr]
                for r in rules.matching(device)
            ]
        for test, rule, state in watch:
            # the common cases decide here: nothing raised and nothing to raise, or already
            # raised and still holding
            if test(x):
                if state.raised:
                    continue
            elif not state.raised and state.pending_since is None:
                continue
            self._evaluate(rule, device.key, x, now)

    def _evaluate(self, rule: Rule, device_key: int, x: float, now: float) -> None:
        state = self._state_of(rule, device_key)
        state.value = x
        assert rule.raise_when is not None
        if rule.raise_when.holds(x):
            if state.raised:
                return
            if rule.for_seconds > 0:
                if state.pending_since is None:
                    state.pending_since = now
                    self._pending(rule.id, device_key, int(now * 1000))
                    self._push(now + rule.for_seconds, rule.id, device_key)
                    return
                if now - state.pending_since < rule.for_seconds:
                    return
            self._raise(rule, device_key, now, {"key": rule.key, "value": x})
            return
        if state.pending_since is not None:  # it stopped holding before its time was up
            state.pending_since = None
            self._pending(rule.id, device_key, None)
        if state.raised and rule.clears(x):
            state.raised = False
            self._maybe_clear(rule, device_key, now, x)

    def _raise(self, rule: Rule, device_key: int, now: float, facts: dict[str, Any]) -> None:
        state = self._state_of(rule, device_key)
        state.raised = True
        if state.pending_since is not None:
            state.pending_since = None
            self._pending(rule.id, device_key, None)
        device = self.devices.get(device_key)
        if device is None:
            return
        ms = int(now * 1000)
        details = {"ruleId": rule.id, "ruleName": rule.name, "rule": rule.describe(), **facts}
        alarm = self.open.get(device_key, rule.alarm_type)
        if alarm is None:
            self.open.opened(
                Alarm(
                    id=str(uuid.uuid4()),
                    device_key=device_key,
                    device_id=device.id,
                    device_name=device.name,
                    device_label=device.label,
                    type=rule.alarm_type,
                    severity=rule.severity,
                    start_ts=ms,
                    end_ts=ms,
                    details=details,
                )
            )
        elif more_severe(rule.severity, alarm.severity):
            alarm.severity = rule.severity
            alarm.end_ts = ms
            alarm.details = details
            self.open.updated(alarm, escalated=True)

    def _maybe_clear(self, rule: Rule, device_key: int, now: float, value: float) -> None:
        """Clear the rule's alarm on this device unless another rule of its type holds it."""
        alarm = self.open.get(device_key, rule.alarm_type)
        if alarm is None:
            return
        for other in self._index.by_alarm_type.get(rule.alarm_type, []):
            held = self._state.get((other.id, device_key))
            if held is not None and held.raised:
                return
        alarm.details = {**alarm.details, "clearedBy": {"key": rule.key, "value": value}}
        self.open.close(alarm, now)

    # -- clears and deletes by hand ----------------------------------------------------------
    def release(self, alarm: Alarm) -> None:
        """A person clears or deletes the alarm: the rules that held it up start over (if
        their condition still holds, the next reading raises a new alarm)."""
        for rule in self._index.by_alarm_type.get(alarm.type, []):
            state = self._state.get((rule.id, alarm.device_key))
            if state is not None:
                state.raised = False
        fired = self._inactive.get(alarm.device_key)
        if fired:
            released = {r.id for r in self._index.by_alarm_type.get(alarm.type, [])} & fired
            fired.difference_update(released)
            now = self.clock()
            for rule_id in released:  # watch the silence again from now
                self._push(now + self.rules[rule_id].inactivity_seconds, rule_id, alarm.device_key)

    # -- inactivity --------------------------------------------------------------------------
    def _seen(self, device_key: int, now: float) -> None:
        self._last_seen[device_key] = now
        fired = self._inactive.pop(device_key, None)
        if fired:
            for rule_id in fired:
                rule = self.rules.get(rule_id)
                state = self._state.get((rule_id, device_key))
                if state is not None:
                    state.raised = False
                if rule is not None:
                    self._maybe_clear(rule, device_key, now, 0.0)
                    self._push(now + rule.inactivity_seconds, rule_id, device_key)
        if device_key not in self._armed:
            self._arm(device_key, now)

    def _arm(self, device_key: int, now: float) -> None:
        device = self.devices.get(device_key)
        if device is None or not self._index.inactivity:
            return
        self._armed.add(device_key)
        last = self._last_seen.setdefault(device_key, now)
        fired = self._inactive.get(device_key, set())
        for rule in self._index.inactivity:
            if rule.applies_to(device.id, device.type) and rule.id not in fired:
                self._push(last + rule.inactivity_seconds, rule.id, device_key)

    def inactive(self, device: Device) -> bool | None:
        """None if no inactivity rule watches the device, else whether one has fired."""
        if not any(r.applies_to(device.id, device.type) for r in self._index.inactivity):
            return None
        return bool(self._inactive.get(device.key))

    # -- timers ------------------------------------------------------------------------------
    def _push(self, due: float, rule_id: str, device_key: int) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), rule_id, device_key))

    def sweep(self) -> None:
        """Raise what is due: durations that held long enough, devices silent too long."""
        now = self.clock()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, rule_id, device_key = heapq.heappop(heap)
            rule = self.rules.get(rule_id)
            if rule is None or not rule.enabled or device_key not in self.devices:
                continue
            if rule.kind == "inactivity":
                last = self._last_seen.get(device_key, now)
                if last + rule.inactivity_seconds > now:
                    self._push(last + rule.inactivity_seconds, rule_id, device_key)
                elif rule_id not in self._inactive.get(device_key, set()):
                    self._inactive.setdefault(device_key, set()).add(rule_id)
                    silent = {
                        "lastSeen": int(last * 1000),
                        "inactivitySeconds": rule.inactivity_seconds,
                    }
                    self._raise(rule, device_key, now, silent)
                continue
            state = self._state.get((rule_id, device_key))
            if (
                state is not None
                and not state.raised
                and state.pending_since is not None
                and now - state.pending_since >= rule.for_seconds - 1e-6
            ):
                facts = {"key": rule.key, "value": state.value, "forSeconds": rule.for_seconds}
                self._raise(rule, device_key, now, facts)

    def _state_of(self, rule: Rule, device_key: int) -> _State:
        key = (rule.id, device_key)
        state = self._state.get(key)
        if state is None:
            state = self._state[key] = _State()
        return state
