"""The enabled alarm rules, indexed the ways evaluation looks them up.

Threshold rules are indexed by telemetry key and then by device id, device type or "every
device", so a reading costs one dict lookup when no rule watches its key. Rules by alarm
type decide whether another rule still holds an alarm up; inactivity rules are watched on
every device they apply to. The index is rebuilt whole when a rule changes: rules change
rarely, readings all the time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tinyboard.core.alarm_rules import Rule
from tinyboard.core.models import Device


@dataclass(slots=True)
class KeyRules:
    """The threshold rules on one telemetry key, by whom they watch."""

    by_device: dict[str, list[Rule]] = field(default_factory=dict)
    by_type: dict[str, list[Rule]] = field(default_factory=dict)
    every: list[Rule] = field(default_factory=list)

    def add(self, rule: Rule) -> None:
        if rule.device_id is not None:
            self.by_device.setdefault(rule.device_id, []).append(rule)
        elif rule.device_type is not None:
            self.by_type.setdefault(rule.device_type, []).append(rule)
        else:
            self.every.append(rule)

    def matching(self, device: Device) -> list[Rule]:
        found = self.by_device.get(device.id, [])
        typed = self.by_type.get(device.type)
        if typed:
            found = found + typed
        return found + self.every if self.every else found


@dataclass(slots=True)
class RuleIndex:
    """The enabled rules: threshold rules by key, every rule by alarm type, and the
    inactivity rules."""

    by_key: dict[str, KeyRules] = field(default_factory=dict)
    by_alarm_type: dict[str, list[Rule]] = field(default_factory=dict)
    inactivity: list[Rule] = field(default_factory=list)

    @classmethod
    def of(cls, rules: Iterable[Rule]) -> RuleIndex:
        index = cls()
        for rule in rules:
            if not rule.enabled:
                continue
            index.by_alarm_type.setdefault(rule.alarm_type, []).append(rule)
            if rule.kind == "inactivity":
                index.inactivity.append(rule)
            else:
                index.by_key.setdefault(rule.key, KeyRules()).add(rule)
        return index
