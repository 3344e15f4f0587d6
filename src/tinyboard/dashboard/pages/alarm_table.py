"""A live table of alarms with acknowledge and clear, for the Alarms and Device pages."""

from __future__ import annotations

import asyncio
from datetime import tzinfo
from typing import Any, ClassVar

from nicegui import background_tasks, ui
from nicegui.client import Client

from tinyboard.core.models import Alarm, AlarmEvent, AlarmStatus
from tinyboard.dashboard.pages.frame import notify_error
from tinyboard.dashboard.state import MOUNT, current
from tinyboard.dashboard.times import when, zone_name
from tinyboard.dashboard.units import PLAIN, KeyUnit, units_by_id
from tinyboard.errors import TinyboardError

SHOWN = ("ACTIVE", "UNACK", "CLEARED", "ANY")
STATUSES: dict[str, tuple[AlarmStatus, ...]] = {
    "ACTIVE": ("ACTIVE_UNACK", "ACTIVE_ACK"),
    "UNACK": ("ACTIVE_UNACK", "CLEARED_UNACK"),
    "CLEARED": ("CLEARED_UNACK", "CLEARED_ACK"),
    "ANY": ("ACTIVE_UNACK", "ACTIVE_ACK", "CLEARED_UNACK", "CLEARED_ACK"),
}
SEVERITY_COLORS = {
    "CRITICAL": "red-9",
    "MAJOR": "deep-orange-7",
    "MINOR": "orange-6",
    "WARNING": "amber-7",
    "INDETERMINATE": "grey-6",
}
PAGE_SIZE = 50
COALESCE_SECONDS = 0.3

SEVERITY_CELL = """<q-td :props="props">
  <q-badge :color="props.row.color" :label="props.value" />
</q-td>"""
DEVICE_CELL = f"""<q-td :props="props">
  <a :href="'{MOUNT}/device/' + props.row.deviceId" class="text-primary">{{{{ props.value }}}}</a>
</q-td>"""
ACTIONS_CELL = """<q-td :props="props">
  <q-btn v-if="!props.row.acknowledged" flat dense size="sm" color="primary" label="Ack"
         :aria-label="'Acknowledge ' + props.row.type + ' on ' + props.row.device"
         @click="$parent.$emit('ack', props.row)" />
  <q-btn v-if="!props.row.cleared" flat dense size="sm" color="negative" label="Clear"
         :aria-label="'Clear ' + props.row.type + ' on ' + props.row.device"
         @click="$parent.$emit('clear', props.row)" />
</q-td>"""


def severity_badge(severity: str) -> ui.badge:
    return ui.badge(severity, color=SEVERITY_COLORS.get(severity, "grey"))


class AlarmTable:
    """Alarms newest first; refreshed when the engine reports a change (coalesced)."""

    COLUMNS: ClassVar[list[dict[str, Any]]] = [
        {"name": "severity", "label": "Severity", "field": "severity", "align": "left"},
        {"name": "type", "label": "Type", "field": "type", "align": "left"},
        {"name": "device", "label": "Device", "field": "device", "align": "left"},
        {"name": "status", "label": "Status", "field": "status", "align": "left"},
        {"name": "start", "label": "Started", "field": "start", "align": "left"},
        {"name": "detail", "label": "Details", "field": "detail", "align": "left"},
        {"name": "actions", "label": "", "field": "id", "align": "right"},
    ]

    def __init__(
        self, client: Client, zone: tzinfo, *, device_key: int | None = None, shown: str = "ACTIVE"
    ) -> None:
        self.zone = zone
        self.device_key = device_key
        self.search = ""
        self._pending: asyncio.TimerHandle | None = None
        with ui.row().classes("items-center gap-2 w-full"):
            self.shown = ui.toggle(list(SHOWN), value=shown, on_change=self.refresh)
            if device_key is None:
                ui.input(placeholder="Type or device", on_change=self._searched).props(
                    "dense outlined clearable debounce=300"
                )
            self.summary = ui.label().classes("text-sm text-gray-600")
        columns = [
            # the zone in the header: the Alarms page has no other time to name it beside
            {**c, "label": f"Started ({zone_name(zone)})"} if c["name"] == "start" else c
            for c in self.COLUMNS
            if device_key is None or c["name"] != "device"
        ]
        self.table = ui.table(columns=columns, rows=[], row_key="id").classes("w-full")
        self.table.props("flat bordered :rows-per-page-options=[0] hide-pagination")
        self.table.add_slot("body-cell-severity", SEVERITY_CELL)
        self.table.add_slot("body-cell-device", DEVICE_CELL)
        self.table.add_slot("body-cell-actions", ACTIONS_CELL)
        self.table.on("ack", lambda e: self._act("acknowledge", e.args["id"]))
        self.table.on("clear", lambda e: self._act("clear", e.args["id"]))
        self.empty = ui.label().classes("text-gray-500")
        engine = current().ctx.alarms
        engine.listeners.append(self.changed)
        client.on_delete(lambda: engine.listeners.remove(self.changed))

    def changed(self, event: AlarmEvent, alarm: Alarm) -> None:
        """The engine's listener: refresh soon, once for a burst of changes."""
        if self.device_key is not None and alarm.device_key != self.device_key:
            return
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(COALESCE_SECONDS, self._refresh_soon)

    def _refresh_soon(self) -> None:
        self._pending = None
        background_tasks.create(self.refresh(), name="refresh alarms")

    async def _searched(self, event: Any) -> None:
        self.search = (event.value or "").strip()
        await self.refresh()

    async def refresh(self) -> None:
        ctx = current().ctx
        await ctx.alarms.settled()
        alarms, total = await ctx.store.list_alarms(
            device=self.device_key,
            statuses=STATUSES[self.shown.value],
            text_search=self.search,
            limit=PAGE_SIZE,
        )
        devices = {a.device_key: a.device_id for a in alarms}
        units = {k: await units_by_id(ctx.store, i) for k, i in devices.items()}
        self.table.rows = [self._row(a, units[a.device_key]) for a in alarms]
        self.table.update()
        self.table.set_visibility(bool(alarms))
        self.empty.set_visibility(not alarms)
        self.empty.set_text(
            "No alarms here. Alarms come from rules (see Rules): for example a temperature "
            "above 30 °C for a minute, or a device silent for 10 minutes."
        )
        more = f" (newest {PAGE_SIZE} shown)" if total > PAGE_SIZE else ""
        self.summary.set_text(f"{total} alarm{'s' * (total != 1)}{more}")

    def _row(self, alarm: Alarm, units: dict[str, KeyUnit]) -> dict[str, Any]:
        details = alarm.details
        if "value" in details:
            key = details.get("key", "")
            detail = f"{key} = {units.get(key, PLAIN).show(details['value'])}"
        elif "inactivitySeconds" in details:
            detail = f"silent for over {details['inactivitySeconds']:g} s"
        else:
            detail = ""
        return {
            "id": alarm.id,
            "severity": alarm.severity,
            "color": SEVERITY_COLORS.get(alarm.severity, "grey"),
            "type": alarm.type,
            "device": alarm.device_name,
            "deviceId": alarm.device_id,
            "status": alarm.status.replace("_", " ").lower(),
            "start": when(alarm.start_ts, self.zone),
            "detail": detail,
            "acknowledged": alarm.acknowledged,
            "cleared": alarm.cleared,
        }

    async def _act(self, action: str, alarm_id: str) -> None:
        engine = current().ctx.alarms
        try:
            if action == "acknowledge":
                await engine.acknowledge(alarm_id)
            else:
                await engine.clear(alarm_id)
        except TinyboardError as exc:
            notify_error(exc)
            return
        await self.refresh()
