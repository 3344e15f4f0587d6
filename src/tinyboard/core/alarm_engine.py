"""The alarm engine as the server runs it: rules evaluated after every commit, their
decisions written behind, and what people do to alarms (get, acknowledge, clear, assign,
delete, and raise or update one over REST).

Strategy: the pipeline calls `on_commit` on the event loop after each transaction. The
`RuleEvaluator` decides at once, in memory, on the `OpenAlarms`; the store is written
afterwards by one task, in order (`WriteBehind`), so ingestion never waits for an alarm
write. Listeners are told of each change as it is made. People's operations change the same
in-memory alarms, then wait for `settled()`, so a caller reads its own change.

Restart safety: open alarms, pending durations and the newest telemetry time of each device
are in the store. On start the engine re-evaluates every open alarm against the latest value
of its rules' keys, so a clear that was committed but not yet written is not lost, and the
partial unique index (one open alarm per device and type) forbids duplicates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tinyboard.core.alarm_evaluator import RuleEvaluator
from tinyboard.core.alarm_rules import Rule, RuleError, rule_from_json
from tinyboard.core.alarm_writes import WriteBehind
from tinyboard.core.models import (
    Alarm,
    AlarmEvent,
    AttributeRow,
    Device,
    Reading,
    Severity,
    User,
    more_severe,
)
from tinyboard.core.open_alarms import AlarmStats, OpenAlarms
from tinyboard.errors import NotFoundError
from tinyboard.storage.base import Store

log = logging.getLogger(__name__)

SWEEP_SECONDS = 0.2
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


class AlarmEngine:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.listeners: list[Listener] = []
        self.writes = WriteBehind()
        self.open = OpenAlarms(self._changed)
        self.evaluator = RuleEvaluator(clock=clock, alarms=self.open, pending=self._pending)
        self._unknown: list[Reading] = []
        """Readings of devices created after start-up, evaluated once the devices are loaded."""
        self._sweeping: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None

    @property
    def rules(self) -> dict[str, Rule]:
        return self.evaluator.rules

    @property
    def stats(self) -> AlarmStats:
        return self.open.stats

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        now = self.clock()
        devices = await self.store.list_devices(limit=2**31)
        heard = await self.store.last_telemetry()
        rules: list[Rule] = []
        for doc in await self.store.alarm_rules():
            try:
                rules.append(rule_from_json(doc))
            except RuleError as exc:
                log.error("skipping stored alarm rule %s: %s", doc.get("id"), exc)
        self.evaluator.load(devices, heard, rules, now)
        for alarm in await self.store.open_alarms():
            self.open.add(alarm)
        for rule_id, device, since_ms in await self.store.alarm_pending():
            key = self.evaluator.pending_key(rule_id)
            value = None
            if key is not None:
                value = (await self.store.latest(device, [key])).get(key, (0, None))[1]
            self.evaluator.resume_pending(rule_id, device, since_ms, value)
        await self._recover(now)
        self.writes.start()
        self._sweeping = asyncio.create_task(self._sweep_loop(), name="tinyboard-alarm-sweep")

    async def _recover(self, now: float) -> None:
        """Rebuild which rules hold each open alarm up, from the latest stored values; the
        evaluator clears the alarms none holds up any more (a clear lost in a crash)."""
        evaluator = self.evaluator
        for alarm in self.open.all():
            rules = evaluator.holding_rules(alarm)
            if not rules:
                continue  # its rules were deleted: only a person clears it now
            latest: dict[str, object] = {}
            for rule in rules:
                if rule.kind != "inactivity":
                    found = await self.store.latest(alarm.device_key, [rule.key])
                    latest[rule.id] = found.get(rule.key, (0, None))[1]
            evaluator.recover(alarm, rules, latest, now)

    async def stop(self) -> None:
        if self._sweeping is not None:
            await self.writes.settled()  # what the sweep decides meanwhile is written too
            self._sweeping.cancel()
            await asyncio.gather(self._sweeping, return_exceptions=True)
            self._sweeping = None
        await self.writes.stop()

    async def settled(self) -> None:
        """Return once every decision made so far is in the store (read-your-writes)."""
        await self.writes.settled()

    # -- rules and readings ------------------------------------------------------------------
    async def save_rule(self, doc: Any, rule_id: str | None = None) -> Rule:
        """Validate and store a rule document; the rule applies to the next reading."""
        rule = rule_from_json(doc, rule_id=rule_id)
        if rule.device_id is not None:
            try:
                await self.store.get_device(rule.device_id)
            except NotFoundError:
                raise RuleError(f"deviceId {rule.device_id!r} is not a device") from None
        await self.store.save_alarm_rule(rule.id, rule.as_json())
        self.evaluator.put_rule(rule)
        return rule

    async def delete_rule(self, rule_id: str) -> None:
        await self.store.delete_alarm_rule(rule_id)
        self.evaluator.remove_rule(rule_id)

    def on_commit(self, readings: Sequence[Reading], attributes: Sequence[AttributeRow]) -> None:
        """The pipeline's after-commit listener."""
        unknown = self.evaluator.evaluate(readings)
        if unknown:  # from devices created after start-up: learn them, then look again
            self._unknown += unknown
            self._refresh_devices()

    def sweep(self) -> None:
        """Raise what is due: durations that held long enough, devices silent too long."""
        self.evaluator.sweep()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                self.sweep()
            except Exception:
                log.exception("alarm sweep failed")

    def inactive(self, device: Device) -> bool | None:
        """None if no inactivity rule watches the device, else whether one has fired."""
        return self.evaluator.inactive(device)

    # -- devices -----------------------------------------------------------------------------
    def forget_device(self, device_id: str) -> None:
        """A device was deleted (with its alarms): drop everything kept for it."""
        self.evaluator.forget_device(device_id)

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
        self.evaluator.replace_devices(devices)
        waiting, self._unknown = self._unknown, []
        arrived = [r for r in waiting if r[0] in self.evaluator.devices]
        if arrived:
            self.on_commit(arrived, ())

    # -- people ------------------------------------------------------------------------------
    def open_alarms(self, device_key: int) -> list[Alarm]:
        return self.open.of(device_key)

    async def get(self, alarm_id: str) -> Alarm:
        found = self.open.find(alarm_id)
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
            self.evaluator.release(alarm)
            self.open.close(alarm, self.clock(), reason="cleared by a user")
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
            self.evaluator.release(alarm)
            self.open.discard(alarm)
        await self.settled()
        await self.store.delete_alarm(alarm_id)
        self._tell("ALARM_DELETED", alarm)
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
            found = self.open.get(device.key, posted.type)
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
        self.evaluator.devices.setdefault(device.key, device)
        self.open.opened(alarm)
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
        self.open.updated(alarm, escalated=escalated)

    # -- persistence and listeners -----------------------------------------------------------
    def _changed(self, event: AlarmEvent, alarm: Alarm) -> None:
        snapshot = dataclasses.replace(alarm)  # listeners and the writer see this moment
        self.writes.put(self.store.save_alarm, snapshot)
        self._tell(event, snapshot)

    def _tell(self, event: AlarmEvent, alarm: Alarm) -> None:
        """Every listener, each on its own: one that fails is logged, never the change's
        caller's failure (the change is already made)."""
        for listener in self.listeners:
            try:
                listener(event, alarm)
            except Exception:
                log.exception("alarm listener failed")

    def _pending(self, rule_id: str, device_key: int, since_ms: int | None) -> None:
        self.writes.put(self.store.set_alarm_pending, rule_id, device_key, since_ms)
