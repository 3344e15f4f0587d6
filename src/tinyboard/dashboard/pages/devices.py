"""The devices page: status and latest values of every device, add and delete."""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import ui

from tinyboard.addresses import is_loopback
from tinyboard.core.models import SEVERITIES, Device
from tinyboard.dashboard import snippets
from tinyboard.dashboard.pages.alarm_table import SEVERITY_COLORS
from tinyboard.dashboard.pages.frame import ago, frame, notify_error, signed_in, to_login
from tinyboard.dashboard.presence import presence_now
from tinyboard.dashboard.state import MOUNT, current
from tinyboard.dashboard.units import PLAIN, KeyUnit, profile_units, read_units
from tinyboard.errors import TinyboardError

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
NAME_CELL = """<q-td :props="props">
  <a :href="props.row.href" class="text-[#305680] dark:text-blue-300 font-medium"
     >{{ props.value }}</a>
  <div class="text-xs text-gray-500">{{ props.row.type }}</div>
</q-td>"""
STATUS_CELL = """<q-td :props="props">
  <q-badge :color="props.value == 'online' ? 'positive' : 'grey'" :label="props.value" />
</q-td>"""
ALARMS_CELL = """<q-td :props="props">
  <q-badge v-if="props.value" :color="props.row.color"
           :label="props.row.severity + (props.value > 1 ? ' ×' + props.value : '')" />
</q-td>"""
ROW_BUTTONS = """<q-btn flat dense round icon="key" :aria-label="'Connect ' + props.row.name"
         title="Token and snippets" @click="$parent.$emit('connect', props.row)" />
<q-btn flat dense round icon="delete" color="negative"
         :aria-label="'Delete ' + props.row.name" @click="$parent.$emit('delete', props.row)" />"""
ACTIONS_CELL = f"""<q-td :props="props" class="whitespace-nowrap">{ROW_BUTTONS}</q-td>"""
CARD = (
    """<div class="q-pa-xs col-12"><q-card flat bordered data-testid="device-card">
  <q-card-section class="row items-start no-wrap gap-2 q-py-sm">
    <div class="col min-w-0">
      <a :href="props.row.href" class="text-[#305680] dark:text-blue-300 font-medium break-all"
         >{{ props.row.name }}</a>
      <div class="text-xs text-gray-500">{{ props.row.type }}</div>
    </div>
    <q-badge :color="props.row.status == 'online' ? 'positive' : 'grey'"
             :label="props.row.status" />"""
    + ROW_BUTTONS
    + """
  </q-card-section>
  <q-card-section class="q-pt-none text-sm">
    <div>{{ props.row.transport }} · {{ props.row.last_seen }}
      <q-badge v-if="props.row.alarms" :color="props.row.color" :label="props.row.severity
               + (props.row.alarms > 1 ? ' ×' + props.row.alarms : '')" /></div>
    <div class="break-words">{{ props.row.latest }}</div>
  </q-card-section>
</q-card></div>"""
)
"""A device as a card: the table on a phone (Quasar's grid mode), where seven columns do not
fit."""
PHONE = "Quasar.Screen.lt.sm"


async def device_row(device: Device, profile: dict[str, KeyUnit]) -> dict[str, Any]:
    """A row of the table; `profile` is the units of the device's profile, read once per
    refresh for all the devices of that profile."""
    ctx = current().ctx
    state, latest = await presence_now(ctx, device)
    alarms = ctx.alarms.open_alarms(device.key)
    worst = min((SEVERITIES.index(a.severity) for a in alarms), default=None)
    shown = sorted(latest.items())[:LATEST_SHOWN]
    units = await read_units(ctx.store, device, profile) if shown else {}
    values = ", ".join(f"{k}: {units.get(k, PLAIN).show(v)}" for k, (_, v) in shown)
    if len(latest) > LATEST_SHOWN:
        values += f" (+{len(latest) - LATEST_SHOWN})"
    return {
        "id": device.id,
        "href": f"{MOUNT}/device/{device.id}",
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
    view = DeviceList(page_url=str(request.url))
    await view.refresh()
    ui.timer(REFRESH_SECONDS, view.refresh)
    return None


class DeviceList:
    """One page of devices (server-side paging and search: fleets have thousands)."""

    def __init__(self, page_url: str) -> None:
        self.page = 0
        self.search = ""
        self.adder = AddDevice(page_url, on_added=self.refresh)
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
                "You get the device's access token and its settings for the sketches in "
                "`firmware/esp8266`, for `mosquitto_pub`, `curl` or a simulated board; its "
                "values show up here as soon as it sends them."
            ).classes(WRAP)
        self.table = ui.table(columns=COLUMNS, rows=[], row_key="id").classes("w-full")
        self.table.props(f"hide-pagination flat bordered :rows-per-page-options=[0] :grid={PHONE}")
        self.table.add_slot("body-cell-name", NAME_CELL)
        self.table.add_slot("body-cell-status", STATUS_CELL)
        self.table.add_slot("body-cell-alarms", ALARMS_CELL)
        self.table.add_slot("body-cell-actions", ACTIONS_CELL)
        self.table.add_slot("item", CARD)
        self.table.on("delete", lambda e: self.remover.ask(e.args["id"], e.args["name"]))
        self.table.on("connect", lambda e: self.adder.connect(e.args["id"]))
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
        profiles = {p: await profile_units(store, p) for p in {d.profile_id for d in devices}}
        self.table.rows = [await device_row(d, profiles[d.profile_id]) for d in devices]
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
        ctx.device_deleted(device)
        ui.notify(f"Deleted {device.name}")
        await self.on_deleted()


class AddDevice:
    """A dialog: name, type and label in; the token and connection snippets out."""

    def __init__(self, page_url: str, on_added: Any) -> None:
        self.page_url = page_url
        self.on_added = on_added
        with ui.dialog() as self.dialog, ui.card().classes("w-[44rem] max-w-full"):
            with ui.column().classes("w-full") as self.form:
                ui.label("Add a device").classes("text-lg font-semibold")
                self.name = ui.input("Name").props("autofocus").classes("w-full")
                self.name.on("keydown.enter", self.create)
                self.kind = ui.input("Type", value="default").classes("w-full")
                self.label = ui.input("Label (optional)").classes("w-full")
                with ui.row().classes("justify-end w-full"):
                    ui.button("Cancel", on_click=self.dialog.close).props("flat")
                    ui.button("Create", on_click=self.create)
            self.result = ui.column().classes("w-full min-w-0")
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
        ctx = current().ctx
        try:
            async with ctx.ota.lock:
                device = await ctx.store.create_device(
                    name, type=(self.kind.value or "").strip() or None, label=self.label.value
                )
                await ctx.ota.device_saved(None, device)  # its profile's firmware, if any
        except TinyboardError as exc:
            notify_error(exc)
            return
        await self.present(device)
        await self.on_added()

    async def connect(self, device_id: str) -> None:
        """The token and snippets of a device added before (the list's key button)."""
        try:
            device = await current().ctx.store.get_device(device_id)
        except TinyboardError as exc:
            notify_error(exc)
            return
        self.dialog.open()
        await self.present(device)

    async def present(self, device: Device) -> None:
        where = await self.target()
        self.form.set_visibility(False)
        self.result.clear()
        with self.result:
            show_token(device, where)
            ui.button("Done", on_click=self.dialog.close).classes("self-end")

    async def target(self) -> snippets.Target:
        """Where boards send to: the host in the browser's address bar, which behind a reverse
        proxy is the proxy's public name (the request's Host may be its upstream)."""
        dashboard = current()
        try:
            shown = await ui.run_javascript("window.location.href", timeout=5)
        except TimeoutError:
            shown = self.page_url
        return snippets.target(str(shown), dashboard.bind, dashboard.ports["http_port"])


SKETCH_HOWTO = (
    "For `firmware/esp8266/{0}/{0}.ino` ({1}): replace its settings block with this, then put "
    "in your Wi-Fi's name and password."
)
SNIPPETS = (
    ("mqtt", "MQTT sketch", SKETCH_HOWTO.format("tinyboard_mqtt", "milestone 3")),
    ("tcp", "TCP sketch", SKETCH_HOWTO.format("tinyboard_tcp", "milestone 2, line protocol")),
    ("mosquitto_pub", "mosquitto_pub", "One reading over MQTT, from any computer on the network:"),
    ("curl", "curl", "One reading over HTTP:"),
    ("simulate", "simulate", "No board yet? A simulated one, sending every 5 s until Ctrl+C:"),
)
"""(tab, its label, what to do with the snippet) for each way to connect."""
WRAP = "w-full [overflow-wrap:anywhere]"
"""Long paths and addresses wrap instead of widening the dialog past a phone's screen."""


def show_token(device: Device, where: snippets.Target) -> None:
    ui.label(f"Connect {device.name}").classes("text-lg font-semibold break-all")
    ui.label("Its access token (the key button in the device list shows it again):")
    with ui.row().classes("items-center gap-2 w-full no-wrap"):
        ui.input("Access token", value=device.token).props("readonly outlined dense").classes(
            "grow font-mono"
        )
        ui.button(icon="content_copy", on_click=lambda: copy(device.token)).props(
            "flat round aria-label=Copy"
        ).tooltip("Copy")
    explain_host(where)
    with ui.tabs().props("dense no-caps align=left outside-arrows mobile-arrows") as tabs:
        tabs.classes("w-full")
        for name, label, _ in SNIPPETS:
            ui.tab(name, label)
    with ui.tab_panels(tabs, value="mqtt").props("animated=false").classes("w-full min-w-0"):
        show_snippets(device.token, where)


def show_snippets(token: str, where: snippets.Target) -> None:
    ports = current().ports
    host, mqtt = where.host, ports["mqtt_port"]
    code = {
        "mqtt": snippets.mqtt_sketch(host, mqtt, token),
        "tcp": snippets.tcp_sketch(host, ports["line_port"], token),
        "mosquitto_pub": snippets.mosquitto_pub(host, mqtt, token),
        "curl": snippets.curl(where.http_base, token),
        "simulate": snippets.simulate(host, mqtt, token),
    }
    for name, _, howto in SNIPPETS:
        with ui.tab_panel(name).classes("px-0 min-w-0"):
            ui.markdown(howto).classes(WRAP)
            language = "cpp" if name in ("mqtt", "tcp") else "bash"
            ui.code(code[name], language=language).classes("w-full")


def explain_host(where: snippets.Target) -> None:
    """Why the snippets name the host they do, or why no board can reach this server."""
    bind = current().bind
    if where.unreachable:
        if is_loopback(bind):
            fix = (
                f"tinyboard listens on {bind} only, so no board can reach it. Restart it with "
                "`tinyboard serve --bind 0.0.0.0` (or `TINYBOARD_BIND=0.0.0.0`) to let boards "
                "on your network connect."
            )
        else:
            fix = (
                "This computer has no network address a board could use: connect it to the "
                f"Wi-Fi or LAN your boards are on and put its address in place of {where.host}."
            )
        if where.via_loopback:
            fix += " Until then these commands work only on this computer."
        with ui.row().classes("w-full no-wrap items-start gap-2 text-warning") as note:
            note.props("role=alert")
            ui.icon("warning")
            ui.markdown(fix).classes(WRAP)
    elif where.via_loopback:
        text = (
            "You opened this page via a loopback address, which on a board means the board "
            f"itself, so these snippets use this computer's network address `{where.host}`."
        )
        if where.others:
            text += " It also has " + ", ".join(f"`{h}`" for h in where.others) + "."
        ui.markdown(text).classes(WRAP)


def copy(text: str) -> None:
    ui.clipboard.write(text)
    ui.notify("Copied")
