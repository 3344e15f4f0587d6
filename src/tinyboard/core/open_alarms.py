"""The open alarms, at most one per device and type, and the changes that open, escalate,
update and close alarms.

Rules (`RuleEvaluator`) and people (`AlarmEngine`) change the same alarm objects, so these
changes are made and counted in one place; each leaves through one callback, which stores
it and tells the listeners.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tinyboard.core.models import Alarm, AlarmEvent

Changed = Callable[[AlarmEvent, Alarm], None]
"""Told of every alarm change the moment it is made."""


@dataclass(slots=True)
class AlarmStats:
    created: int = 0
    escalated: int = 0
    cleared: int = 0


class OpenAlarms:
    def __init__(self, changed: Changed) -> None:
        self.stats = AlarmStats()
        self._changed = changed
        self._by_device: dict[int, dict[str, Alarm]] = {}

    def get(self, device_key: int, alarm_type: str) -> Alarm | None:
        return self._by_device.get(device_key, {}).get(alarm_type)

    def of(self, device_key: int) -> list[Alarm]:
        return list(self._by_device.get(device_key, {}).values())

    def all(self) -> list[Alarm]:
        return [a for alarms in self._by_device.values() for a in alarms.values()]

    def find(self, alarm_id: str) -> Alarm | None:
        for alarms in self._by_device.values():
            for alarm in alarms.values():
                if alarm.id == alarm_id:
                    return alarm
        return None

    def add(self, alarm: Alarm) -> None:
        """An alarm that is open already (loaded from the store at start)."""
        self._by_device.setdefault(alarm.device_key, {})[alarm.type] = alarm

    def opened(self, alarm: Alarm) -> None:
        """A new alarm, raised by a rule or posted by a REST client."""
        self.add(alarm)
        self.stats.created += 1
        self._changed("ALARM_CREATED", alarm)

    def updated(self, alarm: Alarm, *, escalated: bool) -> None:
        """The alarm (open or not) was changed, to a more severe severity or not."""
        if escalated:
            self.stats.escalated += 1
        self._changed("ALARM_ESCALATED" if escalated else "ALARM_UPDATED", alarm)

    def close(self, alarm: Alarm, now: float, reason: str | None = None) -> None:
        """Clear the alarm at `now` (s); `reason` goes into its details."""
        ms = int(now * 1000)
        alarm.cleared = True
        alarm.clear_ts = alarm.end_ts = ms
        if reason:
            alarm.details = {**alarm.details, "clearReason": reason}
        open_here = self._by_device.get(alarm.device_key, {})
        if open_here.get(alarm.type) is alarm:
            del open_here[alarm.type]
            if not open_here:
                del self._by_device[alarm.device_key]
        self.stats.cleared += 1
        self._changed("ALARM_CLEARED", alarm)

    def discard(self, alarm: Alarm) -> None:
        """The alarm is being deleted: its device and type have no open alarm now."""
        self._by_device.get(alarm.device_key, {}).pop(alarm.type, None)

    def forget_device(self, device_key: int) -> None:
        self._by_device.pop(device_key, None)
