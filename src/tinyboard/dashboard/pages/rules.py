"""The Rules page: the alarm rules, a form to add one, enable/disable and delete."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import ui

from tinyboard.core.alarm_rules import OPS, RANGE_OPS, Rule
from tinyboard.core.models import SEVERITIES
from tinyboard.dashboard.pages.frame import frame, notify_error, signed_in, to_login
from tinyboard.dashboard.state import current
from tinyboard.errors import TinyboardError

SCOPES = ("one device", "a device type", "every device")
DEVICE_CHOICES = 1000
"""Devices offered in the form's list (a fleet's rules usually go by type)."""

RULE_COLUMNS: list[dict[str, Any]] = [
    {"name": "name", "label": "Name", "field": "name", "align": "left"},
    {"name": "applies", "label": "Applies to", "field": "applies", "align": "left"},
    {"name": "rule", "label": "Rule", "field": "rule", "align": "left"},
    {"name": "enabled", "label": "On", "field": "enabled", "align": "left"},
    {"name": "actions", "label": "", "field": "id", "align": "right"},
]
ENABLED_CELL = """<q-td :props="props">
  <q-toggle :model-value="props.value" dense :aria-label="'Enable ' + props.row.name"
            @update:model-value="v => $parent.$emit('enable', {id: props.row.id, on: v})" />
</q-td>"""
DELETE_CELL = """<q-td :props="props">
  <q-btn flat dense round icon="delete" color="negative" :aria-label="'Delete ' + props.row.name"
         @click="$parent.$emit('delete', props.row)" />
</q-td>"""


@ui.page("/rules", title="Rules · tinyboard")
async def rules_page(request: Request) -> RedirectResponse | None:
    user = await signed_in(request)
    if user is None:
        return to_login(request)
    frame(user, "Rules")
    devices = await current().ctx.store.list_devices(limit=DEVICE_CHOICES)
    names = {d.id: d.name for d in devices}
    rules = RuleList(names)
    RuleForm(names, on_saved=rules.refresh)
    rules.refresh()
    return None


class RuleList:
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        """Device id → name, to show a one-device rule by name."""
        self.table = ui.table(columns=RULE_COLUMNS, rows=[], row_key="id").classes("w-full")
        self.table.props("flat bordered :rows-per-page-options=[0] hide-pagination")
        self.table.add_slot("body-cell-enabled", ENABLED_CELL)
        self.table.add_slot("body-cell-actions", DELETE_CELL)
        self.table.on("enable", lambda e: self.enable(e.args["id"], e.args["on"]))
        self.table.on("delete", lambda e: self.delete(e.args["id"]))
        self.empty = ui.label(
            "No rules yet. Add one below: for example temperature > 30 for 60 s, cleared "
            "below 28, on every device of type 'thermometer'."
        ).classes("text-gray-500")

    def refresh(self) -> None:
        engine = current().ctx.alarms
        self.table.rows = [self._row(rule) for rule in engine.rules.values()]
        self.table.update()
        self.table.set_visibility(bool(engine.rules))
        self.empty.set_visibility(not engine.rules)

    def _row(self, rule: Rule) -> dict[str, Any]:
        if rule.device_id is not None:
            applies = f"device {self.names.get(rule.device_id, rule.device_id)}"
        elif rule.device_type is not None:
            applies = f"type {rule.device_type}"
        else:
            applies = "every device"
        return {
            "id": rule.id,
            "name": rule.name,
            "applies": applies,
            "rule": rule.describe(),
            "enabled": rule.enabled,
        }

    async def enable(self, rule_id: str, on: bool) -> None:
        engine = current().ctx.alarms
        rule = engine.rules.get(rule_id)
        if rule is None:
            return
        try:
            await engine.save_rule({**rule.as_json(), "enabled": bool(on)}, rule_id=rule_id)
        except TinyboardError as exc:
            notify_error(exc)
        self.refresh()

    async def delete(self, rule_id: str) -> None:
        try:
            await current().ctx.alarms.delete_rule(rule_id)
        except TinyboardError as exc:
            notify_error(exc)
        ui.notify("Rule deleted; alarms it raised stay until cleared")
        self.refresh()


class RuleForm:
    """Fields for every kind of rule; those that do not apply are hidden."""

    def __init__(self, devices: dict[str, str], on_saved: Any) -> None:
        self.on_saved = on_saved
        ui.label("Add a rule").classes("text-lg font-semibold mt-4")
        with ui.card().classes("w-full"):
            with ui.row().classes("items-end gap-3 w-full"):
                self.kind = ui.toggle(
                    {"threshold": "Threshold", "inactivity": "Inactivity"},
                    value="threshold",
                    on_change=self.show_fields,
                )
                self.scope = ui.select(list(SCOPES), value="every device", label="Applies to")
                self.scope.on_value_change(self.show_fields)
                self.device = ui.select(devices, label="Device").classes("min-w-[12rem]")
                self.device_type = ui.input("Device type")
            with ui.row().classes("items-end gap-3 w-full") as self.threshold_fields:
                self.key = ui.input("Telemetry key", value="temperature")
                self.op = ui.select(list(OPS), value=">", label="Raise when").classes(
                    "min-w-[7rem]"
                )
                self.op.on_value_change(self.show_fields)
                self.value = ui.number("Value", value=30)
                self.low = ui.number("Low", value=0)
                self.high = ui.number("High", value=30)
                self.for_seconds = ui.number("For at least (s)", value=0, min=0)
            with ui.row().classes("items-end gap-3 w-full") as self.clear_fields:
                self.clear_op = ui.select(
                    ["", *[op for op in OPS if op not in RANGE_OPS]],
                    value="",
                    label="Clear when (optional)",
                ).classes("min-w-[10rem]")
                self.clear_op.tooltip("Empty: the alarm clears when its condition no longer holds")
                self.clear_value = ui.number("Clear value", value=28)
            with ui.row().classes("items-end gap-3 w-full") as self.inactivity_fields:
                self.silence = ui.number("No telemetry for (s)", value=600, min=1)
            with ui.row().classes("items-end gap-3 w-full"):
                self.severity = ui.select(list(SEVERITIES), value="MAJOR", label="Severity")
                self.alarm_type = ui.input("Alarm type", placeholder="e.g. High temperature")
                self.name = ui.input("Rule name (optional)")
                ui.button("Add rule", icon="add", on_click=self.save)
        self.show_fields()

    def show_fields(self) -> None:
        threshold = self.kind.value == "threshold"
        ranged = self.op.value in RANGE_OPS
        self.device.set_visibility(self.scope.value == "one device")
        self.device_type.set_visibility(self.scope.value == "a device type")
        self.threshold_fields.set_visibility(threshold)
        self.clear_fields.set_visibility(threshold)
        self.inactivity_fields.set_visibility(not threshold)
        self.value.set_visibility(not ranged)
        self.low.set_visibility(ranged)
        self.high.set_visibility(ranged)

    def document(self) -> dict[str, Any]:
        """What the REST API would take for this rule."""
        doc: dict[str, Any] = {
            "kind": self.kind.value,
            "severity": self.severity.value,
            "alarmType": (self.alarm_type.value or "").strip() or None,
            "name": (self.name.value or "").strip() or None,
        }
        if self.scope.value == "one device":
            doc["deviceId"] = self.device.value
        elif self.scope.value == "a device type":
            doc["deviceType"] = (self.device_type.value or "").strip()
        if self.kind.value == "inactivity":
            doc["inactivitySeconds"] = self.silence.value
            return doc
        doc["key"] = (self.key.value or "").strip()
        if self.op.value in RANGE_OPS:
            doc["condition"] = {"op": self.op.value, "low": self.low.value, "high": self.high.value}
        else:
            doc["condition"] = {"op": self.op.value, "value": self.value.value}
        doc["forSeconds"] = self.for_seconds.value or 0
        if self.clear_op.value:
            doc["clearCondition"] = {"op": self.clear_op.value, "value": self.clear_value.value}
        return {k: v for k, v in doc.items() if v is not None}

    async def save(self) -> None:
        try:
            rule = await current().ctx.alarms.save_rule(self.document())
        except TinyboardError as exc:
            notify_error(exc)
            return
        ui.notify(f"Added: {rule.describe()}")
        self.on_saved()
