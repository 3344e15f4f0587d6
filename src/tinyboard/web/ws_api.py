"""ThingsBoard's WebSocket API at `/api/ws` (3.8+ and its UI): the JWT in the first message,
then typed commands.

Connect, then send `{"authCmd": {"cmdId": 0, "token": JWT}, "cmds": [...]}` within
`AUTH_SECONDS`. As ThingsBoard's TbWebSocketHandler: a bad token or an unreadable first
message closes the socket with 1007 and the reason; no authCmd, or none in time, with 1008.
Until then the socket gets nothing else. TIMESERIES, TIMESERIES_HISTORY and ATTRIBUTES answer
as the legacy endpoint does (`ws.Session`); ENTITY_DATA, ENTITY_COUNT, ALARM_DATA and
ALARM_COUNT answer with ThingsBoard's CmdUpdate shapes (`cmdId`, `cmdUpdateType`, ...).

Strategy: one `ApiSession` per socket, the legacy session plus the query commands, so the
limits (message size, subscriptions, slow clients, token recheck) are the same code. An
ENTITY_DATA page follows each of its devices on the LiveHub and sends the changed latest
values as `update`; its historyCmd or tsCmd fills `timeseries` with the window's points
(the legacy history's store call), and a tsCmd's new points follow as `update` too.
Alarm commands listen to the alarm engine: a change to an alarm on the page is an
`update`; a new alarm, or one leaving the page, sends the page again (`data`), as
ThingsBoard does. One task per alarm command does that work in order, coalescing what
arrives meanwhile, so a burst of alarm changes costs a few store reads, not one per change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket

from tinyboard.core.models import (
    SCOPES,
    SEVERITIES,
    Alarm,
    AlarmEvent,
    AttributeRow,
    Device,
    Reading,
    Scope,
)
from tinyboard.errors import NotFoundError, TinyboardError
from tinyboard.web.alarm_info import alarm_info
from tinyboard.web.context import WebContext, context_of
from tinyboard.web.entities import EntityId, PageData, PageLink
from tinyboard.web.key_filters import holds
from tinyboard.web.models import as_text
from tinyboard.web.tokens import AuthError
from tinyboard.web.ws import (
    POLICY_VIOLATION,
    Follower,
    PointBudget,
    Session,
    close_socket,
    error_code,
    failure,
    now_ms,
    serve_session,
    window_points,
)
from tinyboard.web.ws_api_commands import (
    API_SHAPE,
    MAX_PAGE_SIZE,
    PREVIOUS_POINT_MS,
    AlarmCountRequest,
    AlarmDataRequest,
    AlarmFilter,
    DeviceFilter,
    EntityCountRequest,
    EntityDataRequest,
    EntityKey,
    KeyFilter,
    Page,
    SeriesRequest,
    api_commands,
    auth_token,
)
from tinyboard.web.ws_commands import BAD_REQUEST, BadCommand, read_document

AUTH_SECONDS = 10.0
"""ThingsBoard's server.ws.auth_timeout_ms."""
BAD_DATA = 1007
MAX_ALARMS_READ = 10_000
MAX_DYNAMIC_PAGES = 10
"""Dynamic ENTITY_DATA pages one connection may hold: each runs its query again every
`--ws-page-refresh` (ThingsBoard: server.ws.dynamic_page_link.max_per_user, 10)."""
"""Alarms one ALARM_DATA or ALARM_COUNT reads from the store to filter, sort and page."""
router = APIRouter()

Latest = dict[str, dict[str, dict[str, Any]]]
"""EntityData.latest: key type → key → {"ts": ms, "value": text}."""
TimeSeries = dict[str, list[dict[str, Any]]]
"""EntityData.timeseries: key → [{"ts": ms, "value": text}], newest first (ThingsBoard's
TsValue[] as its queries return them)."""
SCOPES_OF: dict[str, tuple[Scope, ...]] = {
    "ATTRIBUTE": SCOPES,
    "CLIENT_ATTRIBUTE": ("CLIENT",),
    "SHARED_ATTRIBUTE": ("SHARED",),
    "SERVER_ATTRIBUTE": ("SERVER",),
}
DEVICE_SORT: dict[str, Callable[[Device], Any]] = {
    "name": lambda d: d.name,
    "label": lambda d: d.label,
    "type": lambda d: d.type,
    "createdTime": lambda d: d.created_ts,
}
ALARM_SORT: dict[str, Callable[[Alarm], Any]] = {
    "createdTime": lambda a: a.start_ts,
    "startTs": lambda a: a.start_ts,
    "endTs": lambda a: a.end_ts,
    "ackTs": lambda a: a.ack_ts,
    "clearTs": lambda a: a.clear_ts,
    "type": lambda a: a.type,
    "severity": lambda a: SEVERITIES.index(a.severity),
    "status": lambda a: a.status,
    "originator": lambda a: a.device_name,
    "name": lambda a: a.device_name,
}


def _field(device: Device, name: str) -> str:
    """An ENTITY_FIELD as ThingsBoard answers it: text, "" for a field devices lack here."""
    fields = {
        "name": device.name,
        "type": device.type,
        "label": device.label,
        "title": device.name,  # ThingsBoard's alias for a device's name
        "createdTime": str(device.created_ts),
        "entityType": "DEVICE",
        "id": device.id,
    }
    return fields.get(name, "")


def entity_id(device_id: str) -> dict[str, Any]:
    return EntityId.of("DEVICE", device_id).model_dump()


def alarm_data(alarm: Alarm, latest: Latest) -> dict[str, Any]:
    """ThingsBoard's AlarmData: the AlarmInfo JSON, the originator's id and its `latest`."""
    info = alarm_info(alarm).model_dump(mode="json")
    return {**info, "entityId": entity_id(alarm.device_id), "latest": latest}


def _message(cmd_id: int, kind: str, **fields: Any) -> bytes:
    """A CmdUpdate: ThingsBoard's shape for the query commands' answers."""
    head = {"cmdId": cmd_id, "cmdUpdateType": kind, "errorCode": 0, "errorMsg": None}
    return orjson.dumps({**head, **fields})


def _link(page: Page, default_sort: str | None, default_descending: bool) -> PageLink:
    sort, descending = (
        (page.sort, page.descending) if page.sort else (default_sort, default_descending)
    )
    return PageLink(
        pageSize=page.size,
        page=page.number,
        textSearch=page.text,
        sortProperty=sort,
        sortOrder="DESC" if descending else "ASC",
    )


def _paged(page: Any, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {**page.model_dump(exclude={"data"}), "data": items}


class EntityFollower(Follower):
    """One ENTITY_DATA command: the latest values of the devices on its page, live, and the
    new points of its tsCmd's keys."""

    session: ApiSession

    def __init__(self, session: ApiSession, request: EntityDataRequest, devices: list[Device]):
        self.session, self.cmd_id, self.request = session, request.cmd_id, request
        self.devices = {d.key: d for d in devices}
        self.device_keys = tuple(self.devices)
        self.latest: tuple[EntityKey, ...] = ()
        self.refresher: asyncio.Task[None] | None = None
        """A dynamic page's task that runs its query again (`--ws-page-refresh`)."""
        self.series: SeriesRequest | None = None
        """The historyCmd or tsCmd; a tsCmd's keys get their new points as `timeseries`."""
        self.newest: dict[tuple[int, str], int] = {}
        """The newest ts sent per (device, series key): an older point is stale, as
        ThingsBoard's keyStates."""
        self.sent: dict[tuple[int, str, str], dict[str, Any]] = {}
        """The latest value sent per (device, key type, key): an update older than it is
        stale and one equal to it a duplicate, both left out (ThingsBoard's
        sendLatestWsMsg)."""
        self.early: list[tuple[list[Reading], list[AttributeRow]]] | None = []
        """Commits made while the first page was read (None once the page is out): handled
        right after it, so a client never gets an update before its page, nor one older
        than the page's values."""

    def watch(self, keys: Iterable[EntityKey]) -> tuple[EntityKey, ...]:
        """Follow `keys` too; the ones not followed before."""
        new = tuple(k for k in dict.fromkeys(keys) if k not in self.latest)
        self.latest += new
        return new

    def deliver(self, readings: list[Reading], rows: list[AttributeRow]) -> None:
        if self.early is not None:
            self.early.append((readings, rows))
            return
        device = self.devices[readings[0][0] if readings else rows[0][0]]
        latest: Latest = {}
        series = {k.key for k in self.latest if k.type == "TIME_SERIES"}
        for _, key, ts, value in readings:
            if key in series:
                _newest(latest.setdefault("TIME_SERIES", {}), key, ts, value)
        for _, scope, key, ts, value in rows:
            for k in self.latest:
                if k.key == key and scope in SCOPES_OF.get(k.type, ()):
                    _newest(latest.setdefault(k.type, {}), key, ts, value)
        latest = self.fresh(device, latest)
        points = self._new_points(device, readings)
        if latest or points:
            self.send_update([_entity_json(device, latest, points)])

    def fresh(self, device: Device, latest: Latest) -> Latest:
        """`latest` without what is stale or already sent, remembered as sent."""
        out: Latest = {}
        for kind, values in latest.items():
            for key, value in values.items():
                before = self.sent.get((device.key, kind, key))
                if (
                    kind != "ENTITY_FIELD"
                    and before is not None
                    and (value["ts"] < before["ts"] or value == before)
                ):
                    continue
                self.sent[device.key, kind, key] = value
                out.setdefault(kind, {})[key] = value
        return out

    def _new_points(self, device: Device, readings: list[Reading]) -> TimeSeries:
        """A tsCmd's share of one commit: its keys' points from the window's start on, none
        older than one already sent (ThingsBoard drops those as stale)."""
        series = self.series
        if series is None or not series.live or not readings:
            return {}
        keys, start, points = set(series.keys), series.window.start, TimeSeries()
        for _, key, ts, value in readings:
            if key in keys and ts >= max(start, self.newest.get((device.key, key), 0)):
                points.setdefault(key, []).append({"ts": ts, "value": as_text(value)})
        for key, values in points.items():
            self.newest[device.key, key] = max(p["ts"] for p in values)
        return points

    @property
    def dynamic(self) -> bool:
        return self.request.page is not None and self.request.page.dynamic

    async def refresh(self, seconds: float) -> None:
        """Every `seconds`, the query again; when other devices match, the page is sent
        again whole and followed instead (ThingsBoard's dynamic page links), with the keys
        and window this command follows by then."""
        session = self.session
        while True:
            await asyncio.sleep(seconds)
            async with session.lock:
                if session.subscriptions.get(self.cmd_id) is not self:
                    return
                try:
                    page = await session.page_of(self.request)
                    if {d.key for d in page.data} != set(self.devices):
                        await session.show_page(self.request, page, self.latest, self.series)
                        return
                except TinyboardError as exc:
                    session.send(failure(self.cmd_id, error_code(exc), str(exc)))

    def stop(self) -> None:
        if self.refresher is not None and self.refresher is not asyncio.current_task():
            self.refresher.cancel()

    def page_sent(self) -> None:
        """The page (or a new window's update) is out: handle what came meanwhile."""
        early, self.early = self.early, None
        for readings, rows in early or ():
            self.deliver(readings, rows)

    def send_update(self, update: list[dict[str, Any]]) -> None:
        self.session.send(
            _message(
                self.cmd_id,
                "ENTITY_DATA",
                data=None,
                update=update,
                allowedEntities=MAX_PAGE_SIZE,
            )
        )


def _newest(into: dict[str, dict[str, Any]], key: str, ts: int, value: Any) -> None:
    if key not in into or into[key]["ts"] <= ts:
        into[key] = {"ts": ts, "value": as_text(value)}


def _entity_json(
    device: Device, latest: Latest, series: TimeSeries | None = None
) -> dict[str, Any]:
    """ThingsBoard's EntityData: `timeseries` holds a historyCmd's or tsCmd's points."""
    return {
        "entityId": entity_id(device.id),
        "latest": latest,
        "timeseries": series or {},
        "aggLatest": {},
    }


class AlarmWatch(Follower):
    """An alarm command: told of every alarm change by the engine. One task per command
    does the work, in order: a re-read of the store (which supersedes the updates waiting)
    or the updates of the alarms that changed, coalesced by alarm."""

    session: ApiSession

    def __init__(self, session: ApiSession, cmd_id: int, devices: list[Device]) -> None:
        self.session, self.cmd_id = session, cmd_id
        self.devices = {d.key: d for d in devices}
        self._dirty = False
        self._updates: dict[str, Alarm] = {}
        self._task: asyncio.Task[None] | None = None
        session.ctx.alarms.listeners.append(self.changed)

    def changed(self, event: AlarmEvent, alarm: Alarm) -> None:
        if alarm.device_key in self.devices:
            self.refresh_soon()

    def refresh_soon(self) -> None:
        self._dirty = True
        self._kick()

    def update_soon(self, alarm: Alarm) -> None:
        self._updates[alarm.id] = alarm
        self._kick()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        while self._dirty or self._updates:
            try:
                if self._dirty:
                    self._dirty = False
                    self._updates.clear()
                    await self.refresh()
                else:
                    alarms = list(self._updates.values())
                    self._updates.clear()
                    await self.send_updates(alarms)
            except TinyboardError as exc:
                self.session.send(failure(self.cmd_id, error_code(exc), str(exc)))

    async def refresh(self) -> None:
        """Read the store and send what changed."""

    async def send_updates(self, alarms: list[Alarm]) -> None:
        """Send the new state of alarms the client has."""

    def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.session.ctx.alarms.listeners.remove(self.changed)
        if self._task is not None:
            self._task.cancel()


class AlarmPageFollower(AlarmWatch):
    """One ALARM_DATA command."""

    def __init__(self, session: ApiSession, cmd: AlarmDataRequest, devices: list[Device]) -> None:
        super().__init__(session, cmd.cmd_id, devices)
        self.cmd = cmd
        self.on_page: set[str] = set()

    def changed(self, event: AlarmEvent, alarm: Alarm) -> None:
        if alarm.device_key not in self.devices:
            return
        on_page = alarm.id in self.on_page
        if on_page and event != "ALARM_DELETED" and self.cmd.alarms.matches(alarm, now_ms()):
            self.update_soon(alarm)
        elif on_page or self.cmd.alarms.matches(alarm, now_ms()):
            self.refresh_soon()

    async def send_updates(self, alarms: list[Alarm]) -> None:
        self._send(data=None, update=await self._json(alarms))

    async def refresh(self) -> None:
        found = await self.session.find_alarms(self.devices, self.cmd.alarms)
        link = _link(self.cmd.page, "createdTime", True)
        page = link.apply(found, text=_alarm_text, sort=ALARM_SORT)
        self.on_page = {a.id for a in page.data}
        self._send(data=_paged(page, await self._json(page.data)), update=None)

    async def _json(self, alarms: list[Alarm]) -> list[dict[str, Any]]:
        keys = (self.cmd.fields, self.cmd.latest)
        latest = self.session.latest_of
        return [alarm_data(a, await latest(self.devices[a.device_key], keys)) for a in alarms]

    def _send(self, **fields: Any) -> None:
        self.session.send(
            _message(
                self.cmd_id,
                "ALARM_DATA",
                **fields,
                allowedEntities=MAX_PAGE_SIZE,
                totalEntities=len(self.devices),
            )
        )


def _alarm_text(alarm: Alarm) -> str:
    return f"{alarm.type} {alarm.severity} {alarm.status} {alarm.device_name}"


class AlarmCountFollower(AlarmWatch):
    """One ALARM_COUNT command: the count again whenever an alarm of its devices changes."""

    def __init__(self, session: ApiSession, cmd: AlarmCountRequest, devices: list[Device]) -> None:
        super().__init__(session, cmd.cmd_id, devices)
        self.alarms = cmd.alarms
        self.count: int | None = None

    async def refresh(self) -> None:
        count = len(await self.session.find_alarms(self.devices, self.alarms))
        if count != self.count:
            self.count = count
            self.session.send(_message(self.cmd_id, "ALARM_COUNT_DATA", count=count))


class ApiSession(Session):
    """The legacy session's commands under their type names, plus the query commands."""

    async def handle(self, message: Mapping[str, Any]) -> None:
        try:
            doc = read_document(message, API_SHAPE)
        except BadCommand as exc:
            self.send(failure(0, BAD_REQUEST, str(exc)))
            return
        await self.run(api_commands(doc, now_ms()))

    async def _on_entity_data(self, cmd: EntityDataRequest) -> None:
        if cmd.devices is None or cmd.page is None:
            await self._watch_more(cmd)
            return
        self._unsubscribe(cmd.cmd_id)
        if cmd.page.dynamic:
            dynamic = sum(
                isinstance(f, EntityFollower) and f.dynamic for f in self.subscriptions.values()
            )
            if dynamic >= MAX_DYNAMIC_PAGES:
                raise BadCommand(
                    f"a connection holds at most {MAX_DYNAMIC_PAGES} dynamic pages: end one "
                    "(ENTITY_DATA_UNSUBSCRIBE) or send this one with pageLink.dynamic false"
                )
        await self.show_page(cmd, await self.page_of(cmd), cmd.latest, cmd.series)

    async def page_of(self, cmd: EntityDataRequest) -> PageData[Device]:
        """The devices on the page an ENTITY_DATA query asks for."""
        assert cmd.devices is not None and cmd.page is not None
        devices = await self.devices_of(cmd.devices)
        return _link(cmd.page, None, False).apply(devices, text=_device_text, sort=DEVICE_SORT)

    async def show_page(
        self,
        cmd: EntityDataRequest,
        page: PageData[Device],
        latest: tuple[EntityKey, ...],
        series: SeriesRequest | None,
    ) -> None:
        """Send `page` with its devices' values and follow them under the command's id."""
        self._unsubscribe(cmd.cmd_id)
        follower = EntityFollower(self, cmd, list(page.data))
        follower.watch(latest)
        follower.series = series
        self.follow(follower)
        budget = PointBudget(self.ctx.ws_max_points)
        try:
            items = [
                _entity_json(
                    d,
                    follower.fresh(d, await self.latest_of(d, (cmd.fields, follower.latest))),
                    await self.series_of(follower, d, budget),
                )
                for d in page.data
            ]
        except BaseException:
            self._unsubscribe(cmd.cmd_id)
            raise
        self.send(
            _message(
                cmd.cmd_id,
                "ENTITY_DATA",
                data=_paged(page, items),
                update=None,
                allowedEntities=MAX_PAGE_SIZE,
            )
        )
        follower.page_sent()
        if follower.dynamic:
            refresh = follower.refresh(self.ctx.ws_page_refresh)
            follower.refresher = asyncio.get_running_loop().create_task(refresh)

    async def _watch_more(self, cmd: EntityDataRequest) -> None:
        """ENTITY_DATA without a query, for an open cmdId (ThingsBoard's UI sends one to add
        a latestCmd, or a new historyCmd/tsCmd when the time window changes): follow the new
        keys and the new window, and send their values as an `update` (the page is out)."""
        follower = self.subscriptions.get(cmd.cmd_id)
        if not isinstance(follower, EntityFollower):
            raise BadCommand("Query is empty!")  # ThingsBoard's words
        new = follower.watch(cmd.latest)
        if cmd.series is not None:
            follower.series, follower.newest = cmd.series, {}
        elif not new:
            return
        follower.early = []
        budget = PointBudget(self.ctx.ws_max_points)
        try:
            update = [
                _entity_json(
                    d,
                    follower.fresh(d, await self.latest_of(d, ((), new))),
                    await self.series_of(follower, d, budget),
                )
                for d in follower.devices.values()
            ]
        except BaseException:
            self._unsubscribe(cmd.cmd_id)
            raise
        follower.send_update(update)
        follower.page_sent()

    async def series_of(
        self, follower: EntityFollower, device: Device, budget: PointBudget
    ) -> TimeSeries:
        """EntityData.timeseries of one device for the follower's historyCmd or tsCmd: each
        key's points in the window (an empty list when it has none), newest first, with
        the newest one before the window when fetchLatestPreviousPoint asks, as
        ThingsBoard's handleGetTsCmd."""
        series = follower.series
        if series is None:
            return {}
        window, store = series.window, self.ctx.store
        before = replace(window, start=max(0, window.start - PREVIOUS_POINT_MS), end=window.start)
        out: TimeSeries = {}
        for key in series.keys:
            points = await window_points(store, device.key, key, window, budget, descending=True)
            if series.previous and window.start > 0:
                one = replace(before, limit=1)
                points += await window_points(store, device.key, key, one, budget, descending=True)
            out[key] = [{"ts": ts, "value": as_text(v)} for ts, v in points]
            if points and series.live:
                follower.newest[device.key, key] = max(ts for ts, _ in points)
        return out

    async def _on_entity_count(self, cmd: EntityCountRequest) -> None:
        count = len(await self.devices_of(cmd.devices))
        self.send(_message(cmd.cmd_id, "COUNT_DATA", count=count))

    async def _on_alarm_data(self, cmd: AlarmDataRequest) -> None:
        self._unsubscribe(cmd.cmd_id)
        await self._start(AlarmPageFollower(self, cmd, await self.devices_of(cmd.devices)))

    async def _on_alarm_count(self, cmd: AlarmCountRequest) -> None:
        self._unsubscribe(cmd.cmd_id)
        await self._start(AlarmCountFollower(self, cmd, await self.devices_of(cmd.devices)))

    async def _start(self, watch: AlarmWatch) -> None:
        try:
            self.follow(watch)
        except BaseException:
            watch.stop()
            raise
        try:
            await watch.refresh()
        except BaseException:
            self._unsubscribe(watch.cmd_id)
            raise

    async def devices_of(self, devices: DeviceFilter) -> list[Device]:
        """The devices a filter selects, by name."""
        store = self.ctx.store
        if devices.ids is not None and len(devices.ids) <= MAX_PAGE_SIZE:
            found = []
            for ref in devices.ids:
                with contextlib.suppress(NotFoundError):  # ThingsBoard: no such entity, no row
                    found.append(await store.get_device(ref))
            everything = sorted(found, key=lambda d: d.name)
        else:
            everything = await store.list_devices(limit=2**31)
        matching = [d for d in everything if devices.matches(d)]
        if devices.keys:
            matching = [d for d in matching if await self._passes(d, devices.keys)]
        return matching

    async def _passes(self, device: Device, filters: tuple[KeyFilter, ...]) -> bool:
        """Whether the device's values pass every key filter (one read of its values)."""
        fields = tuple(f.key.key for f in filters if f.key.type == "ENTITY_FIELD")
        keys = tuple(f.key for f in filters if f.key.type != "ENTITY_FIELD")
        values = await self.latest_of(device, (fields, keys))
        for f in filters:
            found = values.get(f.key.type, {}).get(f.key.key)
            none = found is None or (f.key.type != "ENTITY_FIELD" and found == _ts_value(None))
            if not holds(f.predicate, None if none or found is None else found["value"]):
                return False
        return True

    async def latest_of(
        self, device: Device, keys: tuple[tuple[str, ...], tuple[EntityKey, ...]]
    ) -> Latest:
        """EntityData.latest of one device: its fields, then the newest value of each key
        (for ATTRIBUTE, the newest of its scopes); {"ts": 0, "value": ""} when it has none."""
        fields, latest_keys = keys
        now, store = now_ms(), self.ctx.store
        out: Latest = {}
        if fields:
            out["ENTITY_FIELD"] = {f: {"ts": now, "value": _field(device, f)} for f in fields}
        series = [k.key for k in latest_keys if k.type == "TIME_SERIES"]
        if series:
            values = await store.latest(device.key, series)
            out["TIME_SERIES"] = {k: _ts_value(values.get(k)) for k in series}
        attributes = [k for k in latest_keys if k.type in SCOPES_OF]
        names = sorted({k.key for k in attributes})
        wanted = {s for k in attributes for s in SCOPES_OF[k.type]}
        by_scope = {s: await store.attributes(device.key, s, names) for s in SCOPES if s in wanted}
        for k in attributes:
            held = [by_scope[s][k.key] for s in SCOPES_OF[k.type] if k.key in by_scope[s]]
            newest = max(held, key=lambda held: held[0], default=None)
            out.setdefault(k.type, {})[k.key] = _ts_value(newest)
        return out

    async def find_alarms(self, devices: dict[int, Device], alarms: AlarmFilter) -> list[Alarm]:
        """The alarms of `devices` that match, newest first (at most `MAX_ALARMS_READ` read)."""
        if not devices:
            return []
        await self.ctx.alarms.settled()
        now = now_ms()
        low, high = alarms.bounds(now)
        only = next(iter(devices)) if len(devices) == 1 else None
        found: list[Alarm] = []
        offset = 0
        while offset < MAX_ALARMS_READ:
            batch, total = await self.ctx.store.list_alarms(
                device=only,
                statuses=alarms.statuses(),
                start_ts=low,
                end_ts=high,
                limit=1000,
                offset=offset,
            )
            found += [a for a in batch if a.device_key in devices and alarms.matches(a, now)]
            offset += len(batch)
            if not batch or offset >= total:
                break
        return found


def _device_text(device: Device) -> str:
    return f"{device.name} {device.label} {device.type}"


def _ts_value(value: tuple[int, Any] | None) -> dict[str, Any]:
    if value is None:
        return {"ts": 0, "value": ""}
    return {"ts": value[0], "value": as_text(value[1])}


ApiSession.HANDLERS = {
    **Session.HANDLERS,
    EntityDataRequest: ApiSession._on_entity_data,
    EntityCountRequest: ApiSession._on_entity_count,
    AlarmDataRequest: ApiSession._on_alarm_data,
    AlarmCountRequest: ApiSession._on_alarm_count,
}


async def _authenticate(websocket: WebSocket, ctx: WebContext) -> tuple[str, dict[str, Any]]:
    """The token and first message of a socket; raises `_AuthRefused` with the close code."""
    try:
        message = await asyncio.wait_for(websocket.receive(), AUTH_SECONDS)
    except TimeoutError:
        raise _AuthRefused(POLICY_VIOLATION, f"no authCmd within {AUTH_SECONDS:g} s") from None
    if message["type"] == "websocket.disconnect":
        raise _AuthRefused(0, "")
    try:
        doc = read_document(message, API_SHAPE)
        token = auth_token(doc)
    except BadCommand as exc:
        raise _AuthRefused(BAD_DATA, str(exc)) from None
    if token is None:
        raise _AuthRefused(POLICY_VIOLATION, f"Auth cmd is missing: send {API_SHAPE}")
    try:
        await ctx.tokens.check(token)
    except AuthError as exc:
        raise _AuthRefused(BAD_DATA, str(exc)) from None
    return token, doc


class _AuthRefused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@router.websocket("/api/ws")
async def api_socket(websocket: WebSocket) -> None:
    ctx = context_of(websocket)
    await websocket.accept()
    try:
        token, doc = await _authenticate(websocket, ctx)
    except _AuthRefused as refused:
        if refused.code:
            await close_socket(websocket, refused.code, str(refused))
        return
    session = ApiSession(websocket, ctx)
    try:
        await session.run(api_commands(doc, now_ms()))
    except BaseException:
        session.close()
        raise
    await serve_session(session, token)
