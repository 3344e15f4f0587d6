"""The devices page: status and latest values of every device, add and delete."""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import ui

from tinyboard.core.models import SEVERITIES, Device
from tinyboard.dashboard import snippets
from tinyboard.dashboard.pages.alarm_table import SEVERITY_COLORS
from tinyboard.dashboard.pages.frame import ago, frame, notify_error, signed_in, to_login
from tinyboard.dashboard.presence import presence_now
from tinyboard.dashboard.state import MOUNT, current
from tinyboard.errors import TinyboardError
from tinyboard.web.models import as_text

PAGE_SIZE = 25
REFRESH_SECONDS = 2.0
LATEST_SHOWN = 4
"""Latest values shown per device in the list (the device page has all of them)."""

COLUMNS: list[dict[str, Any]] = [
    {"name": "name", "label": "Name", "field": "name", "align": "left"},
    {"name": "status", "label": "Status", "field": "status", "align": "left"},
    {"name": "transport", "label": "Transport", "field": "transport", "align": "left"},
    {"name": "last_seen", "label": "Last seen", "field": "last_seen", "align": "left"},
    {"name": "alarms", "label": "Alarms", "field": "alarms", "align": "left"},
    {"name": "latest", "label": "Latest values", "field": "latest", "align": "left"},
    {"name": "actions", "label": "", "field": "id", "align": "right"},
]
NAME_CELL = f"""<q-td :props="props">
  <a :href="'{MOUNT}/device/' + props.row.id" class="text-primary font-medium"
     >{{{{ props.value }}}}</a>
  <div class="text-xs text-gray-500">{{{{ props.row.type }}}}</div>
</q-td>"""
STATUS_CELL = """<q-td :props="props">
  <q-badge :color="props.value == 'online' ? 'positive' : 'grey'" :label="props.value" />
</q-td>"""
ALARMS_CELL = """<q-td :props="props">
  <q-badge v-if="props.value" :color="props.row.color"
           :label="props.row.severity + (props.value > 1 ? ' ×' + props.value : '')" />
</q-td>"""
ACTIONS_CELL = """<q-td :props="props">
  <q-btn flat dense round icon="delete" color="negative" :aria-label="'Delete ' + props.row.name"
         @click="$parent.$emit('delete', props.row)" />
</q-td>"""


async def device_row(device: Device) -> dict[str, Any]:
    ctx = current().ctx
    state, latest = await presence_now(ctx, device)
    alarms = ctx.alarms.open_alarms(device.key)
    worst = min((SEVERITIES.index(a.severity) for a in alarms), default=None)
    shown = sorted(latest.items())[:LATEST_SHOWN]
    values = ", ".join(f"{k}: {as_text(v)}" for k, (_, v) in shown)
    if len(latest) > LATEST_SHOWN:
        values += f" (+{len(latest) - LATEST_SHOWN})"
    return {
        "id": device.id,
        "name": device.name,
        "type": device.type,
        "status": "online" if state.online else "offline",
        "transport": state.transport or "—",
        "last_seen": ago(state.last_seen_ms),
        "latest": values or "—",
        "alarms": len(alarms),
        "severity": SEVERITIES[worst] if worst is not None else "",
        "color": SEVERITY_COLORS.get(SEVERITIES[worst], "grey") if worst is not None else "",
    }


@ui.page("/devices", title="Devices · tinyboard")
async def devices_page(request: Request) -> RedirectResponse | None:
    user = await signed_in(request)
    if user is None:
        return to_login(request)
    frame(user, "Devices")
    view = DeviceList(host=request.url.hostname or "127.0.0.1")
    await view.refresh()
    ui.timer(REFRESH_SECONDS, view.refresh)
    return None


class DeviceList:
    """One page of devices (server-side paging and search: fleets have thousands)."""

    def __init__(self, host: str) -> None:
        self.page = 0
        self.search = ""
        self.adder = AddDevice(host, on_added=self.refresh)
        self.remover = DeleteDevice(on_deleted=self.refresh)
        with ui.row().classes("w-full items-center gap-2"):
            ui.input(placeholder="Search by name", on_change=self.searched).props(
                "clearable dense outlined debounce=300"
            ).classes("grow max-w-md")
            ui.button("Add device", icon="add", on_click=self.adder.open)
        with ui.card().classes("w-full") as self.empty:
            ui.label("No devices yet — here is how to add one").classes("text-lg font-semibold")
            ui.markdown(
                "Press **Add device** above, or run `tinyboard device add NAME` on the server. "
                "You get the device's access token and a snippet for your sketch or for "
                "`mosquitto_pub`; its values show up here as soon as it sends them."
            )
        self.table = ui.table(columns=COLUMNS, rows=[], row_key="id").classes("w-full")
        self.table.props("hide-pagination flat bordered :rows-per-page-options=[0]")
        self.table.add_slot("body-cell-name", NAME_CELL)
        self.table.add_slot("body-cell-status", STATUS_CELL)
        self.table.add_slot("body-cell-alarms", ALARMS_CELL)
        self.table.add_slot("body-cell-actions", ACTIONS_CELL)
        self.table.on("delete", lambda e: self.remover.ask(e.args["id"], e.args["name"]))
        with ui.row().classes("items-center gap-2") as self.pager:
            self.previous = ui.button(icon="chevron_left", on_click=lambda: self.turn(-1))
            self.position = ui.label()
            self.following = ui.button(icon="chevron_right", on_click=lambda: self.turn(1))
        self.previous.props("flat dense")
        self.following.props("flat dense")

    async def refresh(self) -> None:
        store = current().ctx.store
        total = await store.count_devices(text_search=self.search)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        self.page = min(self.page, pages - 1)
        first = self.page * PAGE_SIZE
        devices = await store.list_devices(text_search=self.search, limit=PAGE_SIZE, offset=first)
        self.table.rows = [await device_row(d) for d in devices]
        self.table.update()
        nothing_at_all = total == 0 and not self.search
        self.empty.set_visibility(nothing_at_all)
        self.table.set_visibility(not nothing_at_all)
        self.pager.set_visibility(total > PAGE_SIZE)
        self.position.set_text(f"{first + 1}–{first + len(devices)} of {total}")
        self.previous.set_enabled(self.page > 0)
        self.following.set_enabled(self.page < pages - 1)

    async def turn(self, step: int) -> None:
        self.page = max(0, self.page + step)
        await self.refresh()

    async def searched(self, event: Any) -> None:
        self.search = (event.value or "").strip()
        self.page = 0
        await self.refresh()


class DeleteDevice:
    """A confirmation dialog; deleting closes the device's connections too."""

    def __init__(self, on_deleted: Any) -> None:
        self.on_deleted = on_deleted
        self.device_id = ""
        with ui.dialog() as self.dialog, ui.card():
            self.question = ui.label()
            with ui.row().classes("justify-end w-full"):
                ui.button("Cancel", on_click=self.dialog.close).props("flat")
                ui.button("Delete", color="negative", on_click=self.delete)

    def ask(self, device_id: str, name: str) -> None:
        self.device_id = device_id
        self.question.set_text(f"Delete {name} and all its data? This cannot be undone.")
        self.dialog.open()

    async def delete(self) -> None:
        ctx = current().ctx
        self.dialog.close()
        try:
            device = await ctx.store.delete_device(self.device_id)
        except TinyboardError as exc:
            notify_error(exc)
            return
        ctx.directory.forget(device)
        ctx.disconnect_device(device.id)
        ui.notify(f"Deleted {device.name}")
        await self.on_deleted()


class AddDevice:
    """A dialog: name, type and label in; the token and connection snippets out."""

    def __init__(self, host: str, on_added: Any) -> None:
        self.host = host
        self.on_added = on_added
        with ui.dialog() as self.dialog, ui.card().classes("w-[40rem] max-w-full"):
            with ui.column().classes("w-full") as self.form:
                ui.label("Add a device").classes("text-lg font-semibold")
                self.name = ui.input("Name").props("autofocus").classes("w-full")
                self.name.on("keydown.enter", self.create)
                self.kind = ui.input("Type", value="default").classes("w-full")
                self.label = ui.input("Label (optional)").classes("w-full")
                with ui.row().classes("justify-end w-full"):
                    ui.button("Cancel", on_click=self.dialog.close).props("flat")
                    ui.button("Create", on_click=self.create)
            self.result = ui.column().classes("w-full")
        self.dialog.on("hide", self.reset)

    def open(self) -> None:
        self.dialog.open()

    def reset(self) -> None:
        self.name.value, self.kind.value, self.label.value = "", "default", ""
        self.form.set_visibility(True)
        self.result.clear()

    async def create(self) -> None:
        name = (self.name.value or "").strip()
        if not name:
            ui.notify("Give the device a name", type="warning")
            return
        try:
            device = await current().ctx.store.create_device(
                name, type=(self.kind.value or "").strip() or "default", label=self.label.value
            )
        except TinyboardError as exc:
            notify_error(exc)
            return
        self.form.set_visibility(False)
        self.result.clear()
        with self.result:
            show_token(device, self.host)
            ui.button("Done", on_click=self.dialog.close).classes("self-end")
        await self.on_added()


def show_token(device: Device, host: str) -> None:
    ports = current().ports
    ui.label(f"{device.name} is ready").classes("text-lg font-semibold")
    ui.label("Its access token (shown only now — copy it):")
    with ui.row().classes("items-center gap-2 w-full no-wrap"):
        ui.input("Access token", value=device.token).props("readonly outlined dense").classes(
            "grow font-mono"
        )
        ui.button(icon="content_copy", on_click=lambda: copy(device.token)).props(
            "flat round aria-label=Copy"
        ).tooltip("Copy")
    mqtt, http = ports["mqtt_port"], ports["http_port"]
    ui.label("Arduino sketch (ThingsBoard SDK or firmware/esp8266):")
    ui.code(snippets.arduino(host, mqtt, device.token), language="cpp").classes("w-full")
    ui.label("mosquitto_pub:")
    ui.code(snippets.mosquitto_pub(host, mqtt, device.token), language="bash").classes("w-full")
    ui.label("HTTP:")
    ui.code(snippets.curl(host, http, device.token), language="bash").classes("w-full")


def copy(text: str) -> None:
    ui.clipboard.write(text)
    ui.notify("Copied")
