"""Alarm rules evaluated after every commit, and the alarms they raise, escalate and clear.

Strategy: the pipeline calls `on_commit` on the event loop after each transaction. Rules are
indexed by telemetry key and then by device id, device type or "every device", so a reading
costs one dict lookup when no rule watches its key. Decisions are made in memory at once;
the store is written afterwards by one task, in order, so ingestion never waits for an alarm
write. Durations ("for at least N s") and inactivity timeouts are due times in one heap that
a sweep checks a few times a second.

Restart safety: open alarms, pending durations and the newest telemetry time of each device
are in the store. On start the engine re-evaluates every open alarm against the latest value
of its rules' keys, so a clear that was committed but not yet written is not lost, and the
partial unique index (one open alarm per device and type) forbids duplicates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tinyboard.core.alarm_rules import Rule, RuleError, rule_from_json
from tinyboard.core.models import (
    Alarm,
    AttributeRow,
    Device,
    Reading,
    Severity,
    User,
    more_severe,
)
from tinyboard.errors import NotFoundError
from tinyboard.storage.base import Store

log = logging.getLogger(__name__)

SWEEP_SECONDS = 0.2
AlarmEvent = Literal[
    "ALARM_CREATED",
    "ALARM_ESCALATED",
    "ALARM_UPDATED",
    "ALARM_CLEARED",
    "ALARM_ACKNOWLEDGED",
    "ALARM_ASSIGNED",
    "ALARM_UNASSIGNED",
    "ALARM_DELETED",
]
Listener = Callable[[AlarmEvent, Alarm], None]
"""Told of every alarm change, on the event loop; must not block (webhooks, the dashboard)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PostedAlarm:
    """An alarm a REST client raises or updates (ThingsBoard's `POST /api/alarm`). Without
    `id` it joins the open alarm of its device and type, if there is one, as ThingsBoard
    deduplicates; zero times mean "now"."""

    id: str | None = None
    device_id: str
    type: str
    severity: Severity
    start_ts: int = 0
    end_ts: int = 0
    details: dict[str, Any] | None = None
    acknowledged: bool = False
    cleared: bool = False
    propagate: bool = False
    propagate_to_owner: bool = False
    propagate_to_tenant: bool = False
    propagate_relation_types: tuple[str, ...] = ()
    assignee: User | None = None
    """Whom it is assigned to; an update without one unassigns, as in ThingsBoard."""


@dataclass(slots=True)
class AlarmStats:
    created: int = 0
    escalated: int = 0
    cleared: int = 0
    write_errors: int = 0


@dataclass(slots=True)
class _State:
    """One rule on one device."""

    raised: bool = False
    pending_since: float | None = None
    value: float = 0.0


@dataclass(slots=True)
class _KeyRules:
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


class AlarmEngine:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.rules: dict[str, Rule] = {}
        self.listeners: list[Listener] = []
        self.stats = AlarmStats()
        self._by_key: dict[str, _KeyRules] = {}
        self._by_alarm_type: dict[str, list[Rule]] = {}
        self._inactivity: list[Rule] = []
        self._devices: dict[int, Device] = {}
        self._state: dict[tuple[str, int], _State] = {}
        self._watch: dict[tuple[int, str], list[tuple[Callable[[float], bool], Rule, _State]]] = {}
        """(device, key) → its rules, each with its compiled raise test and its state: built
        on the first reading, dropped whenever the rules change."""
        self._open: dict[int, dict[str, Alarm]] = {}
        self._heap: list[tuple[float, int, str, int]] = []
        self._seq = itertools.count()
        self._last_seen: dict[int, float] = {}
        self._armed: set[int] = set()
        """Devices whose inactivity rules all have a due time in the heap (or have fired)."""
        self._inactive: dict[int, set[str]] = {}
        """Device → inactivity rules that fired and wait for the next message to clear."""
        self._unknown: list[Reading] = []
        self._writes: asyncio.Queue[tuple[Callable[[], Coroutine[Any, Any, Any]], Any]] = (
            asyncio.Queue()
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._refreshing: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        now = self.clock()
        self._devices = {d.key: d for d in await self.store.list_devices(limit=2**31)}
        for device, ts in (await self.store.last_telemetry()).items():
            self._last_seen[device] = min(ts / 1000, now)
        for doc in await self.store.alarm_rules():
            try:
                rule = rule_from_json(doc)
            except RuleError as exc:
                log.error("skipping stored alarm rule %s: %s", doc.get("id"), exc)
                continue
            self.rules[rule.id] = rule
        self._reindex()
        for alarm in await self.store.open_alarms():
            self._open.setdefault(alarm.device_key, {})[alarm.type] = alarm
        for rule_id, device, since_ms in await self.store.alarm_pending():
            # kept only while its condition still holds for the newest stored value: the
            # write that ended it may have been lost, or the rule changed since
            pending = self.rules.get(rule_id)
            value = None
            if pending is not None and pending.enabled and pending.raise_when is not None:
                latest = await self.store.latest(device, [pending.key])
                value = latest.get(pending.key, (0, None))[1]
            if (
                pending is None
                or pending.raise_when is None
                or not isinstance(value, int | float)
                or isinstance(value, bool)
                or not pending.raise_when.holds(float(value))
            ):
                self._write(self.store.set_alarm_pending, rule_id, device, None)
                continue
            state = self._state_of(pending, device)
            state.pending_since = since_ms / 1000
            state.value = float(value)
            self._push(state.pending_since + pending.for_seconds, rule_id, device)
        await self._recover(now)
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="tinyboard-alarm-writer"),
            asyncio.create_task(self._sweep_loop(), name="tinyboard-alarm-sweep"),
        ]

    async def _recover(self, now: float) -> None:
        """Rebuild which rules hold their alarm up, from the latest stored values; clear the
        alarms none holds up any more (a clear lost in a crash)."""
        for device_key, alarms in list(self._open.items()):
            device = self._devices.get(device_key)
            if device is None:
                continue
            for alarm in list(alarms.values()):
                rules = [
                    r
                    for r in self._by_alarm_type.get(alarm.type, [])
                    if r.applies_to(device.id, device.type)
                ]
                if not rules:
                    continue  # its rules were deleted: only a person clears it now
                for rule in rules:
                    state = self._state_of(rule, device_key)
                    if rule.kind == "inactivity":
                        state.raised = True
                        self._inactive.setdefault(device_key, set()).add(rule.id)
                        continue
                    latest = await self.store.latest(device_key, [rule.key])
                    value = latest.get(rule.key, (0, None))[1]
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        state.value = float(value)
                        state.raised = not rule.clears(state.value)
                if not any(self._state_of(r, device_key).raised for r in rules):
                    self._close(alarm, now, reason="cleared while tinyboard was down")

    async def stop(self) -> None:
        if self._tasks:
            await self.settled()  # the writer finishes what was decided, nothing cut in half
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        while not self._writes.empty():  # what was decided is written before the store closes
            write, done = self._writes.get_nowait()
            await self._run_write(write, done)

    async def settled(self) -> None:
        """Return once every decision made so far is in the store (read-your-writes)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writes.put_nowait((_nothing, done))
        await done

    # -- rules -------------------------------------------------------------------------------
    async def save_rule(self, doc: Any, rule_id: str | None = None) -> Rule:
        rule = rule_from_json(doc, rule_id=rule_id)
        if rule.device_id is not None:
            try:
                await self.store.get_device(rule.device_id)
            except NotFoundError:
                raise RuleError(f"deviceId {rule.device_id!r} is not a device") from None
        await self.store.save_alarm_rule(rule.id, rule.as_json())
        old = self.rules.get(rule.id)
        holding = [k[1] for k, s in self._state.items() if k[0] == rule.id and s.raised]
        self._forget_rule(rule.id)
        self.rules[rule.id] = rule
        self._reindex()
        if old is not None and old.alarm_type == rule.alarm_type and rule.enabled:
            # an edited rule still holds the alarms it raised, so it can clear them
            for device_key in holding:
                if rule.alarm_type in self._open.get(device_key, {}):
                    self._state_of(rule, device_key).raised = True
        return rule

    async def delete_rule(self, rule_id: str) -> None:
        await self.store.delete_alarm_rule(rule_id)
        self._forget_rule(rule_id)
        self.rules.pop(rule_id, None)
        self._reindex()

    def forget_device(self, device_id: str) -> None:
        """A device was deleted (with its alarms): drop everything kept for it."""
        gone = [key for key, device in self._devices.items() if device.id == device_id]
        for key in gone:
            del self._devices[key]
            self._open.pop(key, None)
            self._last_seen.pop(key, None)
            self._inactive.pop(key, None)
            self._armed.discard(key)
            for state_key in [k for k in self._state if k[1] == key]:
                del self._state[state_key]
            for watch_key in [k for k in self._watch if k[0] == key]:
                del self._watch[watch_key]

    def _forget_rule(self, rule_id: str) -> None:
        for key in [k for k in self._state if k[0] == rule_id]:
            if self._state[key].pending_since is not None:
                self._write(self.store.set_alarm_pending, rule_id, key[1], None)
            del self._state[key]
        for fired in self._inactive.values():
            fired.discard(rule_id)

    def _reindex(self) -> None:
        self._watch = {}
        self._by_key = {}
        self._by_alarm_type = {}
        self._inactivity = []
        for rule in self.rules.values():
            if not rule.enabled:
                continue
            self._by_alarm_type.setdefault(rule.alarm_type, []).append(rule)
            if rule.kind == "inactivity":
                self._inactivity.append(rule)
            else:
                self._by_key.setdefault(rule.key, _KeyRules()).add(rule)
        self._armed.clear()
        watched = {r.id for r in self._inactivity}  # their due times are pushed again below
        self._heap = [e for e in self._heap if e[2] in self.rules and e[2] not in watched]
        heapq.heapify(self._heap)
        now = self.clock()
        for device_key in self._devices:
            self._arm(device_key, now)

    # -- evaluation (the pipeline's after-commit listener) -----------------------------------
    def on_commit(self, readings: Sequence[Reading], attributes: Sequence[AttributeRow]) -> None:
        now = self.clock()
        last_seen = self._last_seen
        for reading in readings:  # who was heard from when: inactivity rules, even later ones
            last_seen[reading[0]] = now
        if not self.rules:
            return
        by_key = self._by_key
        watch_activity = bool(self._inactivity)
        devices = self._devices
        for reading in readings:
            device_key = reading[0]
            device = devices.get(device_key)
            if device is None:  # created after start-up: learn it, then look again
                self._unknown.append(reading)
                self._refresh_devices()
                continue
            if watch_activity:
                self._seen(device_key, now)
            rules = by_key.get(reading[1])
            value = reading[3]
            if rules is None or not isinstance(value, int | float) or isinstance(value, bool):
                continue
            self._check(rules, device, reading[1], float(value), now)

    def _check(self, rules: _KeyRules, device: Device, key: str, x: float, now: float) -> None:
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
                    self._write(self.store.set_alarm_pending, rule.id, device_key, int(now * 1000))
                    self._push(now + rule.for_seconds, rule.id, device_key)
                    return
                if now - state.pending_since < rule.for_seconds:
                    return
            self._raise(rule, device_key, now, {"key": rule.key, "value": x})
            return
        if state.pending_since is not None:  # it stopped holding before its time was up
            state.pending_since = None
            self._write(self.store.set_alarm_pending, rule.id, device_key, None)
        if state.raised and rule.clears(x):
            state.raised = False
            self._maybe_clear(rule, device_key, now, x)

    def _raise(self, rule: Rule, device_key: int, now: float, facts: dict[str, Any]) -> None:
        state = self._state_of(rule, device_key)
        state.raised = True
        if state.pending_since is not None:
            state.pending_since = None
            self._write(self.store.set_alarm_pending, rule.id, device_key, None)
        device = self._devices.get(device_key)
        if device is None:
            return
        ms = int(now * 1000)
        details = {"ruleId": rule.id, "ruleName": rule.name, "rule": rule.describe(), **facts}
        alarm = self._open.get(device_key, {}).get(rule.alarm_type)
        if alarm is None:
            alarm = Alarm(
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
            self._open.setdefault(device_key, {})[rule.alarm_type] = alarm
            self.stats.created += 1
            self._changed("ALARM_CREATED", alarm)
        elif more_severe(rule.severity, alarm.severity):
            alarm.severity = rule.severity
            alarm.end_ts = ms
            alarm.details = details
            self.stats.escalated += 1
            self._changed("ALARM_ESCALATED", alarm)

    def _maybe_clear(self, rule: Rule, device_key: int, now: float, value: float) -> None:
        """Clear the rule's alarm on this device unless another rule of its type holds it."""
        alarm = self._open.get(device_key, {}).get(rule.alarm_type)
        if alarm is None:
            return
        for other in self._by_alarm_type.get(rule.alarm_type, []):
            held = self._state.get((other.id, device_key))
            if held is not None and held.raised:
                return
        alarm.details = {**alarm.details, "clearedBy": {"key": rule.key, "value": value}}
        self._close(alarm, now)

    def _close(self, alarm: Alarm, now: float, reason: str | None = None) -> None:
        ms = int(now * 1000)
        alarm.cleared = True
        alarm.clear_ts = alarm.end_ts = ms
        if reason:
            alarm.details = {**alarm.details, "clearReason": reason}
        open_here = self._open.get(alarm.device_key, {})
        if open_here.get(alarm.type) is alarm:
            del open_here[alarm.type]
            if not open_here:
                del self._open[alarm.device_key]
        self.stats.cleared += 1
        self._changed("ALARM_CLEARED", alarm)

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
        device = self._devices.get(device_key)
        if device is None or not self._inactivity:
            return
        self._armed.add(device_key)
        last = self._last_seen.setdefault(device_key, now)
        fired = self._inactive.get(device_key, set())
        for rule in self._inactivity:
            if rule.applies_to(device.id, device.type) and rule.id not in fired:
                self._push(last + rule.inactivity_seconds, rule.id, device_key)

    def inactive(self, device: Device) -> bool | None:
        """None if no inactivity rule watches the device, else whether one has fired."""
        if not any(r.applies_to(device.id, device.type) for r in self._inactivity):
            return None
        return bool(self._inactive.get(device.key))

    # -- timers ------------------------------------------------------------------------------
    def _push(self, due: float, rule_id: str, device_key: int) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), rule_id, device_key))

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                self.sweep()
            except Exception:
                log.exception("alarm sweep failed")

    def sweep(self) -> None:
        """Raise what is due: durations that held long enough, devices silent too long."""
        now = self.clock()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, rule_id, device_key = heapq.heappop(heap)
            rule = self.rules.get(rule_id)
            if rule is None or not rule.enabled or device_key not in self._devices:
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

    # -- people ------------------------------------------------------------------------------
    def open_alarms(self, device_key: int) -> list[Alarm]:
        return list(self._open.get(device_key, {}).values())

    def _find_open(self, alarm_id: str) -> Alarm | None:
        for alarms in self._open.values():
            for alarm in alarms.values():
                if alarm.id == alarm_id:
                    return alarm
        return None

    async def get(self, alarm_id: str) -> Alarm:
        found = self._find_open(alarm_id)
        if found is not None:
            return found
        await self.settled()  # the store may not have the latest change of this alarm yet
        return await self.store.get_alarm(alarm_id)

    async def acknowledge(self, alarm_id: str) -> Alarm:
        alarm = await self.get(alarm_id)
        if not alarm.acknowledged:
            alarm.acknowledged = True
            alarm.ack_ts = int(self.clock() * 1000)
            self._changed("ALARM_ACKNOWLEDGED", alarm)
            await self.settled()
        return alarm

    async def clear(self, alarm_id: str) -> Alarm:
        """Clear by hand. The rules that raised it start over: if their condition still
        holds, the next reading raises a new alarm."""
        alarm = await self.get(alarm_id)
        if not alarm.cleared:
            self._release(alarm)
            self._close(alarm, self.clock(), reason="cleared by a user")
            await self.settled()
        return alarm

    async def assign(self, alarm_id: str, user: User | None) -> Alarm:
        """Assign the alarm to a user, or to nobody (ThingsBoard 3.5+)."""
        alarm = await self.get(alarm_id)
        user_id = user.id if user else None
        if alarm.assignee_id != user_id:
            alarm.assignee_id = user_id
            alarm.assignee_email = user.email if user else None
            alarm.assign_ts = int(self.clock() * 1000)
            self._changed("ALARM_ASSIGNED" if user else "ALARM_UNASSIGNED", alarm)
            await self.settled()
        return alarm

    async def delete(self, alarm_id: str) -> Alarm:
        alarm = await self.get(alarm_id)
        if not alarm.cleared:
            self._release(alarm)
            open_here = self._open.get(alarm.device_key, {})
            open_here.pop(alarm.type, None)
        await self.settled()
        await self.store.delete_alarm(alarm_id)
        for listener in self.listeners:
            listener("ALARM_DELETED", alarm)
        return alarm

    async def post(self, posted: PostedAlarm) -> Alarm:
        """Raise or update an alarm for a REST client; its assignee and its `acknowledged`
        and `cleared` flags act as assign, ack and clear do (ThingsBoard's
        `TbAlarmService.save`)."""
        if posted.id is not None:
            alarm = await self.get(posted.id)
            self._update(alarm, posted)
        else:
            device = await self.store.get_device(posted.device_id)
            found = self._open.get(device.key, {}).get(posted.type)
            if found is None:
                alarm = self._create(device, posted)
            else:
                alarm = found
                self._update(alarm, posted)
        await self.assign(alarm.id, posted.assignee)
        if posted.acknowledged:
            await self.acknowledge(alarm.id)
        if posted.cleared:
            await self.clear(alarm.id)
        await self.settled()
        return alarm

    def _create(self, device: Device, posted: PostedAlarm) -> Alarm:
        ms = int(self.clock() * 1000)
        start = posted.start_ts or ms
        alarm = Alarm(
            id=str(uuid.uuid4()),
            device_key=device.key,
            device_id=device.id,
            device_name=device.name,
            device_label=device.label,
            type=posted.type,
            severity=posted.severity,
            created_ts=ms,
            start_ts=start,
            end_ts=max(posted.end_ts, start),
            details=posted.details or {},
            propagate=posted.propagate,
            propagate_to_owner=posted.propagate_to_owner,
            propagate_to_tenant=posted.propagate_to_tenant,
            propagate_relation_types=posted.propagate_relation_types,
        )
        self._devices.setdefault(device.key, device)
        self._open.setdefault(device.key, {})[posted.type] = alarm
        self.stats.created += 1
        self._changed("ALARM_CREATED", alarm)
        return alarm

    def _update(self, alarm: Alarm, posted: PostedAlarm) -> None:
        escalated = more_severe(posted.severity, alarm.severity)
        alarm.severity = posted.severity
        if posted.start_ts:
            alarm.start_ts = posted.start_ts
        alarm.end_ts = max(posted.end_ts or int(self.clock() * 1000), alarm.start_ts)
        if posted.details is not None:
            alarm.details = posted.details
        alarm.propagate = posted.propagate
        alarm.propagate_to_owner = posted.propagate_to_owner
        alarm.propagate_to_tenant = posted.propagate_to_tenant
        alarm.propagate_relation_types = posted.propagate_relation_types
        if escalated:
            self.stats.escalated += 1
        self._changed("ALARM_ESCALATED" if escalated else "ALARM_UPDATED", alarm)

    def _release(self, alarm: Alarm) -> None:
        for rule in self._by_alarm_type.get(alarm.type, []):
            state = self._state.get((rule.id, alarm.device_key))
            if state is not None:
                state.raised = False
        fired = self._inactive.get(alarm.device_key)
        if fired:
            released = {r.id for r in self._by_alarm_type.get(alarm.type, [])} & fired
            fired.difference_update(released)
            now = self.clock()
            for rule_id in released:  # watch the silence again from now
                self._push(now + self.rules[rule_id].inactivity_seconds, rule_id, alarm.device_key)

    # -- persistence and listeners -----------------------------------------------------------
    def _changed(self, event: AlarmEvent, alarm: Alarm) -> None:
        snapshot = dataclasses.replace(alarm)  # listeners and the writer see this moment
        self._write(self.store.save_alarm, snapshot)
        for listener in self.listeners:
            try:
                listener(event, snapshot)
            except Exception:
                log.exception("alarm listener failed")

    def _write(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        self._writes.put_nowait((lambda: fn(*args), None))

    async def _write_loop(self) -> None:
        while True:
            write, done = await self._writes.get()
            await self._run_write(write, done)

    async def _run_write(
        self, write: Callable[[], Coroutine[Any, Any, Any]], done: asyncio.Future[None] | None
    ) -> None:
        try:
            await write()
        except Exception:
            self.stats.write_errors += 1
            log.exception("could not store an alarm change")
        if done is not None and not done.done():
            done.set_result(None)

    def _state_of(self, rule: Rule, device_key: int) -> _State:
        key = (rule.id, device_key)
        state = self._state.get(key)
        if state is None:
            state = self._state[key] = _State()
        return state

    # -- devices -----------------------------------------------------------------------------
    def devices_changed(self) -> None:
        """Some process added, changed or deleted devices: load them again."""
        self._refresh_devices()

    def _refresh_devices(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._reload_devices())

    async def _reload_devices(self) -> None:
        """A device this engine has not seen sent data: load the device list again, then
        evaluate what it sent."""
        try:
            devices = await self.store.list_devices(limit=2**31)
        except Exception:
            log.exception("could not load devices for alarm rules")
            return
        known = {d.key: d for d in devices}
        for gone in [d for key, d in self._devices.items() if key not in known]:
            self.forget_device(gone.id)  # deleted by another process (`tinyboard device rm`)
        self._devices = known
        waiting, self._unknown = self._unknown, []
        arrived = [r for r in waiting if r[0] in self._devices]
        if arrived:
            self.on_commit(arrived, ())


async def _nothing() -> None:
    return None
