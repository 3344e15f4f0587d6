"""One device: latest values, live charts, attributes, an RPC console and CSV export."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, tzinfo
from typing import Any, ClassVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import background_tasks, ui
from nicegui.client import Client

from tinyboard.core.ingest import attributes_from_json
from tinyboard.core.models import SCOPES, AttributeRow, Device, Reading, TsValue, Value
from tinyboard.dashboard.charts import (
    CHART_JS,
    MAX_POINTS,
    RANGE_PARAMS,
    RANGES,
    LiveFold,
    Window,
    chart_options,
    custom,
    is_number,
    markers,
    preset,
)
from tinyboard.dashboard.key_page import KeyPage
from tinyboard.dashboard.pages.alarm_table import AlarmTable
from tinyboard.dashboard.pages.frame import (
    ago,
    browser_zone,
    frame,
    notify_error,
    signed_in,
    to_login,
)
from tinyboard.dashboard.pages.key_picker import KeyPicker
from tinyboard.dashboard.pages.rpc_console import RpcConsole
from tinyboard.dashboard.presence import presence_now
from tinyboard.dashboard.state import current
from tinyboard.dashboard.times import when, zone_label, zone_name
from tinyboard.dashboard.units import PLAIN, KeyUnit, read_units
from tinyboard.errors import NotFoundError, TinyboardError
from tinyboard.web.models import as_text

FLUSH_SECONDS = 0.25
"""At most one push to the browser per this interval: a sparse sensor's reading goes out at
once, a busy device's readings wait for the next slot and go together."""
STATUS_SECONDS = 2.0
"""How often the status line is refreshed and live charts' windows move on with the clock."""
ZONE_JS = "Intl.DateTimeFormat().resolvedOptions().timeZone"
ZONE_CHECK_SECONDS = 10.0
"""How long the page waits for the browser to name its zone before it stops asking."""


def _now_ms() -> int:
    return int(time.time() * 1000)


@ui.page("/device/{device_id}", title="Device · tinyboard")
async def device_page(
    request: Request, device_id: str, client: Client, range: str = "1h"
) -> RedirectResponse | None:
    user = await signed_in(request)
    if user is None:
        return to_login(request)
    ctx = current().ctx
    try:
        device = await ctx.store.get_device(device_id)
    except NotFoundError:
        frame(user, "Device not found")
        ui.label("This device does not exist (it may have been deleted).")
        ui.link("Back to the devices", "/devices")
        return None
    ui.add_head_html(CHART_JS)
    frame(user, device.name)
    zone = browser_zone(request)
    units = Units(device)
    await units.load()
    status = Status(device)
    ui.label(zone_label(zone, _now_ms())).classes("text-xs text-gray-500").props(
        "data-testid=time-zone"
    )
    cards = LatestCards(device, zone, units)
    charts = Charts(cards, client, RANGE_PARAMS.get(range, "1 h"), zone, units)
    cards.picker.on_change = charts.redraw
    attributes = Attributes(device, zone)
    RpcConsole(device)
    ui.label("Alarms").classes("text-lg font-semibold mt-2")
    alarms = AlarmTable(client, zone, device_key=device.key, shown="ANY")

    async def attributes_changed() -> None:
        await attributes.refresh()
        if await units.load():  # the `units` server attribute changed: redraw with them
            cards.redraw()
            await charts.redraw()

    live = LiveFeed(cards, charts, attributes_changed)
    ctx.live.subscribe(device.key, live)  # before loading: nothing committed meanwhile is missed
    client.on_delete(lambda: live.close(device.key))
    await status.refresh()
    await cards.load()
    await charts.redraw()
    await attributes.refresh()
    await alarms.refresh()
    ui.timer(STATUS_SECONDS, status.refresh)
    ui.timer(STATUS_SECONDS, charts.slide)
    background_tasks.create(_check_zone(client, zone), name="check the browser's time zone")
    return None


async def _check_zone(client: Client, zone: tzinfo) -> None:
    """Reload once if the page was drawn in another zone than the browser's (the cookie is
    from before the computer's zone changed): the charts are in the browser's zone, and every
    time on a page must be in one. The head script has renewed the cookie by now."""
    try:
        await client.connected(timeout=ZONE_CHECK_SECONDS)
        name = await client.run_javascript(ZONE_JS, timeout=ZONE_CHECK_SECONDS)
    except TimeoutError:
        return  # the tab closed or is busy: its next page load asks again
    if isinstance(name, str) and name != zone_name(zone) and _known_zone(name):
        # at most once per zone and tab, should the cookie not reach the server
        key = orjson.dumps(f"tinyboardReloadedFor{name}").decode()
        client.run_javascript(
            f"if (!sessionStorage.getItem({key})) "
            f"{{ sessionStorage.setItem({key}, '1'); location.reload(); }}"
        )


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        return False  # the server could not use it either: reloading would not help
    return True


class Units:
    """The units and decimals of the device's keys (its server attribute `units`)."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.by_key: dict[str, KeyUnit] = {}

    async def load(self) -> bool:
        """Read them again; True if they changed."""
        parsed = await read_units(current().ctx.store, self.device)
        changed, self.by_key = parsed != self.by_key, parsed
        return changed

    def of(self, key: str) -> KeyUnit:
        return self.by_key.get(key, PLAIN)


class Status:
    def __init__(self, device: Device) -> None:
        self.device = device
        self.label = ui.label().classes("text-sm text-gray-600").props("data-testid=status")

    async def refresh(self) -> None:
        state, _ = await presence_now(current().ctx, self.device)
        text = "online" if state.online else "offline"
        if state.transport:
            text += f" · {state.transport}"
        self.label.set_text(f"{self.device.type} · {text} · last seen {ago(state.last_seen_ms)}")


class LatestCards:
    """The newest value of every key, drawn as cards for the keys of the current page."""

    def __init__(self, device: Device, zone: tzinfo, units: Units) -> None:
        self.device = device
        self.zone = zone
        self.units = units
        self.latest: dict[str, TsValue] = {}
        self.keys = KeyPage()
        self.cards: dict[str, tuple[ui.label, ui.label]] = {}
        ui.label("Latest values").classes("text-lg font-semibold mt-2")
        self.picker = KeyPicker(self.keys)
        self.picker.redraw_cards = self.redraw
        self.none_yet = ui.label(
            "No telemetry yet. Send some with the snippet shown when the device was "
            "added, e.g. mosquitto_pub -t v1/devices/me/telemetry -u TOKEN "
            "-m '{\"temperature\": 25}'."
        ).classes("text-gray-500")
        self.box = ui.row().classes("gap-2 w-full")

    async def load(self) -> None:
        self.latest = await current().ctx.store.latest(self.device.key)
        self.keys.reset(self.latest)
        self.picker.refresh()
        self.redraw()

    def redraw(self) -> None:
        self.box.clear()
        self.cards = {}
        for key in self.keys.shown:
            self.card(key)
        self.none_yet.set_visibility(not self.latest)

    def show(self, newest: dict[str, TsValue]) -> None:
        """Live values: kept for every key, drawn if their key is on the page."""
        new = [key for key, (ts, value) in newest.items() if self._show(key, ts, value)]
        if new:
            self.none_yet.set_visibility(False)
            self.picker.refresh()  # once per flush: a device may send a thousand new keys

    def _show(self, key: str, ts: int, value: Value) -> bool:
        """True if `key` is new."""
        new = key not in self.latest
        self.latest[key] = (ts, value)
        card = self.cards.get(key)
        if card is not None:
            card[0].set_text(self.units.of(key).show(value))
            card[1].set_text(when(ts, self.zone))
        elif new and self.keys.add(key):
            self.card(key)
        return new

    def card(self, key: str) -> None:
        ts, value = self.latest[key]
        with self.box, ui.card().classes("min-w-[9rem] p-3 gap-0"):
            ui.label(key).classes("text-xs text-gray-500")
            text = self.units.of(key).show(value)
            value_label = ui.label(text).classes("text-2xl font-semibold break-all")
            # a dict write, never `.props(str)`: a key is device input, and NiceGUI parses
            # a props string into attributes and `:bindings` that the browser evaluates
            value_label.props["data-testid"] = f"value-{key}"
            time_label = ui.label(when(ts, self.zone)).classes("text-xs text-gray-500")
            time_label.props["data-testid"] = f"time-{key}"
        self.cards[key] = (value_label, time_label)

    def charted(self) -> list[str]:
        """The numeric keys of the current page, in page order."""
        return [k for k in self.keys.shown if is_number(self.latest[k][1])]


class KeyChart:
    """One key's chart, or a line saying the range holds no reading of it."""

    def __init__(
        self, key: str, data: list[list[Any]], window: Window, unit: KeyUnit, zone: tzinfo
    ) -> None:
        self.key = key
        self.zone = zone
        with ui.column().classes("w-full gap-0"):
            # hidden through a wrapper: hiding the chart itself would resend its options
            self.frame = ui.element("div").classes("w-full")
            with self.frame:
                self.chart = ui.echart(chart_options(key, data, window, unit), renderer="svg")
            self.chart.classes("w-full h-64")
            self.chart.props["data-testid"] = f"chart-{key}"  # a dict write: see LatestCards
            self.empty = ui.label().classes("text-gray-500 py-2")
            self.empty.props["data-testid"] = f"no-readings-{key}"
        self.newest = data[-1][0] if data else None
        self.move(window)

    def load(self, data: list[list[Any]], window: Window) -> None:
        series = self.chart.options["series"][0]
        series["data"] = data
        series.update(markers(len(data)))
        self.newest = data[-1][0] if data else None
        self.move(window)
        self.chart.update()

    def took(self, points: list[tuple[int, float]], view: Window) -> None:
        """Live points went to the browser's copy of the chart."""
        self.newest = max(self.newest or 0, points[-1][0])
        self.move(view)

    def move(self, view: Window) -> None:
        """The axis spans exactly `view`, whatever the data's extent (the browser moves its
        copy with CHART_JS; this copy is what a redraw sends)."""
        self.chart.options["xAxis"]["min"] = view.start_ts
        self.chart.options["xAxis"]["max"] = view.end_ts
        has_points = self.newest is not None and self.newest >= view.start_ts
        self.frame.set_visibility(has_points)
        self.empty.set_visibility(not has_points)
        if not has_points:
            self.empty.set_text(f"No readings of {self.key} {view.describe(self.zone)}.")


class Charts:
    """A line chart per numeric key of the page over a range; preset ranges keep taking
    live points, and their window moves on with the clock."""

    def __init__(
        self, cards: LatestCards, client: Client, shown: str, zone: tzinfo, units: Units
    ) -> None:
        self.cards = cards
        self.device = cards.device
        self.zone = zone
        self.units = units
        self.client = client
        self.window: Window = preset(shown, _now_ms())
        """The loaded range; its buckets are where live points are folded."""
        self.view: Window = self.window
        """What the axes show: the loaded range, moved on to now for a preset."""
        self.charts: dict[str, KeyChart] = {}
        self.folds: dict[str, LiveFold] = {}
        self._loads = 0
        ui.label("Charts").classes("text-lg font-semibold mt-2")
        with ui.row().classes("items-center gap-2 w-full"):
            self.range = ui.toggle([*RANGES, "custom"], value=shown, on_change=self.range_changed)
            with ui.row().classes("items-center gap-2") as self.custom_box:
                self.start = ui.input("From").props("type=datetime-local dense")
                self.end = ui.input("To").props("type=datetime-local dense")
                ui.button("Show", on_click=self.custom_range).props("dense")
            self.custom_box.set_visibility(False)
            ui.space()
            ui.button("CSV", icon="download", on_click=self.download).props(
                "outline dense"
            ).tooltip("Download the shown range as CSV")
        self.paged = ui.label("Charts follow the keys shown above: filter or turn the page there.")
        self.paged.classes("text-xs text-gray-500")
        self.none_yet = ui.label("No numeric telemetry yet.").classes("text-gray-500")
        self.box = ui.column().classes("w-full gap-2")

    def download(self) -> None:
        w = self.view
        query = urlencode({"startTs": w.start_ts, "endTs": w.end_ts, "tz": zone_name(self.zone)})
        ui.download(f"/export/{self.device.id}.csv?{query}")

    async def range_changed(self) -> None:
        self.custom_box.set_visibility(self.range.value == "custom")
        if self.range.value != "custom":
            await self.load(preset(self.range.value, _now_ms()))

    async def custom_range(self) -> None:
        try:
            start = datetime.fromisoformat(self.start.value).replace(tzinfo=self.zone)
            end = datetime.fromisoformat(self.end.value).replace(tzinfo=self.zone)
            window = custom(int(start.timestamp() * 1000), int(end.timestamp() * 1000))
        except (TypeError, ValueError) as exc:
            notify_error(ValueError(f"choose a start and an end: {exc}"))
            return
        await self.load(window)

    async def redraw(self) -> None:
        """Charts for the keys of the page, after it changed."""
        self.box.clear()
        self.charts = {}
        self.paged.set_visibility(self.cards.picker.row.visible)
        await self.load(self.window)

    async def load(self, window: Window) -> None:
        """History of every numeric key of the page in `window`, averaged by the database
        into at most MAX_POINTS buckets."""
        self.window = self.view = window
        self.folds = {}
        self._loads += 1
        load = self._loads
        store = current().ctx.store
        for key in self.cards.charted():
            points = await store.aggregate(
                self.device.key,
                key,
                start_ts=window.start_ts,
                end_ts=window.end_ts,
                interval=window.interval,
                agg="AVG",
                limit=MAX_POINTS + 1,
            )
            if load != self._loads:
                return  # the page or the range changed meanwhile: the newer load draws
            data: list[list[Any]] = [[ts, v] for ts, v in points]
            chart = self.charts.get(key)
            if chart is None:
                self.add(key, data)
            else:
                chart.load(data, window)
        self.none_yet.set_visibility(not self.charts)

    def add(self, key: str, data: list[list[Any]]) -> KeyChart:
        self.none_yet.set_visibility(False)
        with self.box:
            chart = KeyChart(key, data, self.view, self.units.of(key), self.zone)
        self.charts[key] = chart
        return chart

    def take(self, key: str, ts: int, value: float) -> None:
        if self.window.live and key in self.cards.keys.shown:
            fold = self.folds.get(key)
            if fold is None:
                fold = self.folds[key] = LiveFold(self.window)
            fold.add(ts, value)

    def push(self) -> None:
        """Send the buckets changed since the last push to the browser."""
        view = self.view
        for key, fold in self.folds.items():
            points = fold.take()
            if not points:
                continue
            chart = self.charts.get(key)
            if chart is None:  # a new key: its first points are the chart's initial data
                self.add(key, [list(p) for p in points])
                continue
            # Only the new points cross the wire. The server's copy of the options keeps the
            # data the chart was loaded with (changing it would resend the whole series); a
            # reload gets everything from the store.
            chart.took(points, view)
            self.client.run_javascript(
                f"tinyboardView({chart.chart.id}, {orjson.dumps(points).decode()}, "
                f"{view.start_ts}, {view.end_ts})"
            )

    def slide(self) -> None:
        """A preset's window ends now: move every chart's axis on (the timer's tick)."""
        if not self.window.live or not self.charts:
            return
        view = self.view = preset(self.window.name, _now_ms())
        ids = []
        for chart in self.charts.values():
            chart.move(view)
            ids.append(chart.chart.id)
        self.client.run_javascript(
            f"for (const id of {ids}) tinyboardView(id, [], {view.start_ts}, {view.end_ts})"
        )


class Attributes:
    """Attributes by scope; shared ones can be edited, which pushes them to the device."""

    COLUMNS: ClassVar[list[dict[str, Any]]] = [
        {"name": "key", "label": "Key", "field": "key", "align": "left"},
        {"name": "value", "label": "Value", "field": "value", "align": "left"},
        {"name": "ts", "label": "Updated", "field": "ts", "align": "left"},
    ]

    def __init__(self, device: Device, zone: tzinfo) -> None:
        self.device = device
        self.zone = zone
        self.tables: dict[str, ui.table] = {}
        ui.label("Attributes").classes("text-lg font-semibold mt-2")
        with ui.tabs().classes("w-full") as tabs:
            tab_of = {scope: ui.tab(scope.capitalize()) for scope in SCOPES}
        with ui.tab_panels(tabs, value=tab_of["SHARED"]).classes("w-full"):
            for scope in SCOPES:
                with ui.tab_panel(tab_of[scope]):
                    table = ui.table(columns=self.COLUMNS, rows=[], row_key="key")
                    table.props(f"flat dense data-testid=attributes-{scope.lower()}")
                    self.tables[scope] = table.classes("w-full")
                    if scope == "SHARED":
                        self.editor()

    def editor(self) -> None:
        with ui.row().classes("items-end gap-2 w-full"):
            self.key = ui.input("Key").props("dense").classes("w-40")
            self.value = ui.input("Value (JSON or text)").props("dense")
            self.value.classes("grow")
            ui.button("Save and push to the device", on_click=self.save).props("dense")
        ui.label(
            "A connected device subscribed to v1/devices/me/attributes gets the change at once. "
            "Click a row to edit it."
        ).classes("text-xs text-gray-500")
        self.tables["SHARED"].on("rowClick", self.pick)

    def pick(self, event: Any) -> None:
        row = event.args[1]
        self.key.set_value(row["key"])
        self.value.set_value(row["json"])  # JSON: the string "123" stays a string

    async def refresh(self) -> None:
        store = current().ctx.store
        for scope in SCOPES:
            values = await store.attributes(self.device.key, scope)
            self.tables[scope].rows = [
                {"key": k, "value": as_text(v), "json": json.dumps(v), "ts": when(ts, self.zone)}
                for k, (ts, v) in sorted(values.items())
            ]
            self.tables[scope].update()

    async def save(self) -> None:
        key = (self.key.value or "").strip()
        if not key:
            ui.notify("Give the attribute a key", type="warning")
            return
        text = self.value.value or ""
        try:
            typed: object = json.loads(text)
        except ValueError:
            typed = text  # not JSON: a string attribute
        ctx = current().ctx
        try:
            values = attributes_from_json({key: typed})
            await ctx.store.get_device(self.device.id)  # not deleted since the page opened
            await ctx.attributes.update_shared(self.device, values)
        except TinyboardError as exc:
            notify_error(exc)
            return
        ui.notify(f"Saved {key}")
        await self.refresh()


class LiveFeed:
    """The page's LiveHub subscriber: batches what the pipeline commits and updates the
    cards, charts and attributes every FLUSH_SECONDS."""

    def __init__(
        self,
        cards: LatestCards,
        charts: Charts,
        attributes_changed: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        self.cards = cards
        self.charts = charts
        self.attributes_changed = attributes_changed
        self._readings: list[Reading] = []
        self._attributes_changed = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_flush = 0.0

    def deliver(self, readings: list[Reading], attributes: list[AttributeRow]) -> None:
        self._readings += readings
        self._attributes_changed |= bool(attributes)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._last_flush + FLUSH_SECONDS - loop.time())
            self._timer = loop.call_later(delay, self.flush)

    def flush(self) -> None:
        self._timer = None
        self._last_flush = asyncio.get_running_loop().time()
        readings, self._readings = self._readings, []
        newest: dict[str, TsValue] = {}
        for _, key, ts, value in readings:
            if key not in newest or ts >= newest[key][0]:
                newest[key] = (ts, value)
        self.cards.show(newest)  # first: a new key may join the page
        for _, key, ts, value in readings:
            if is_number(value):
                self.charts.take(key, ts, float(value))  # type: ignore[arg-type]
        self.charts.push()
        if self._attributes_changed:
            self._attributes_changed = False
            background_tasks.create(self.attributes_changed(), name="refresh attributes")

    def close(self, device_key: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        current().ctx.live.unsubscribe(device_key, self)
