"""The `/api/ws` message (ThingsBoard 3.8+): `{"authCmd": {...}, "cmds": [...]}`, each
command by its `type`, parsed into checked values.

Strategy: the same typed readers as the legacy commands (`ws_commands`); TIMESERIES,
TIMESERIES_HISTORY and ATTRIBUTES are the legacy commands under a type name. The query
commands (ENTITY_DATA, ENTITY_COUNT, ALARM_DATA, ALARM_COUNT) become a `DeviceFilter`, a
`Page` and an `AlarmFilter`; ENTITY_DATA's historyCmd and tsCmd a `SeriesRequest` over the
legacy commands' `Window`; keyFilters predicates (`key_filters`). What tinyboard cannot
answer faithfully (another entity type, aggHistoryCmd/aggTsCmd, calendar intervals, dynamic
filter values) is refused with BAD_REQUEST naming what is supported, never half-answered.
Shapes: ThingsBoard's `WsCommandsWrapper`,
`EntityDataCmd`, `EntityHistoryCmd`, `TimeSeriesCmd`, `AlarmDataCmd`, `AlarmCountCmd`,
`EntityDataQuery`, `AlarmDataPageLink`, `AlarmStatusFilter`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from tinyboard.core.models import SEVERITIES, Alarm, AlarmStatus, Device
from tinyboard.web.key_filters import MAX_PREDICATES, Predicate, read_predicate
from tinyboard.web.telemetry import MAX_TS
from tinyboard.web.ws_commands import (
    BadCommand,
    Command,
    Parser,
    Refused,
    Unsubscribe,
    Window,
    attr_subscribe,
    history,
    integer_field,
    no_nul,
    read_command,
    read_window,
    shown,
    text_field,
    ts_subscribe,
)

API_SHAPE = '{"authCmd": {"cmdId": 0, "token": "<JWT>"}, "cmds": [{"type": ..., "cmdId": 1}]}'
MAX_PAGE_SIZE = 1000
"""Entities (or alarms) on one page: each device of an ENTITY_DATA page is followed live,
and a connection follows at most `ws.MAX_SUBSCRIPTIONS` devices."""
MAX_LIST = 1000
"""Ids, types or severities one filter may list."""

KeyType = Literal[
    "TIME_SERIES",
    "ATTRIBUTE",
    "CLIENT_ATTRIBUTE",
    "SHARED_ATTRIBUTE",
    "SERVER_ATTRIBUTE",
    "ENTITY_FIELD",
    "ALARM_FIELD",
]
KEY_TYPES: tuple[KeyType, ...] = get_args(KeyType)
LATEST_TYPES = frozenset(KEY_TYPES) - {"ENTITY_FIELD", "ALARM_FIELD"}
SORT_TYPES = frozenset({"ENTITY_FIELD", "ALARM_FIELD"})
FILTER_TYPES = frozenset(KEY_TYPES) - {"ALARM_FIELD"}
FILTERS = ("singleEntity", "entityList", "entityType", "deviceType", "entityName")
ENTITY_DATA_PARTS = ("aggHistoryCmd", "aggTsCmd")
PREVIOUS_POINT_MS = 365 * 24 * 3600 * 1000
"""How far back fetchLatestPreviousPoint looks before startTs, as ThingsBoard (365 days)."""


@dataclass(frozen=True, slots=True)
class EntityKey:
    type: KeyType
    key: str


@dataclass(frozen=True, slots=True)
class KeyFilter:
    """One of a query's keyFilters: `predicate` on the value of `key` (see key_filters)."""

    key: EntityKey
    predicate: Predicate


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """Which devices an entityFilter selects (tinyboard's entities are all devices), and the
    keyFilters they must pass too."""

    ids: frozenset[str] | None = None
    types: frozenset[str] | None = None
    name_prefix: str = ""
    """Case-insensitive, as ThingsBoard's entityNameFilter and deviceNameFilter."""
    keys: tuple[KeyFilter, ...] = ()

    def matches(self, device: Device) -> bool:
        return (
            (self.ids is None or device.id in self.ids)
            and (self.types is None or device.type in self.types)
            and device.name.lower().startswith(self.name_prefix.lower())
        )


@dataclass(frozen=True, slots=True)
class Page:
    size: int
    number: int
    text: str
    sort: str | None
    """The ENTITY_FIELD or ALARM_FIELD key to sort by (None: the query's default)."""
    descending: bool
    dynamic: bool = False
    """Run the query again now and then, so devices that come to match join the page."""


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """ThingsBoard's alarm filter (AlarmDataPageLink / AlarmCountQuery fields)."""

    start: int = 0
    end: int = 0
    window: int = 0
    types: frozenset[str] | None = None
    severities: frozenset[str] | None = None
    cleared: bool | None = None
    acknowledged: bool | None = None

    def bounds(self, now: int) -> tuple[int, int]:
        """Created-time bounds, as ThingsBoard: a time window ending now has no end here,
        so alarms raised later still count."""
        if self.window > 0:
            if self.start > 0:  # both up to MAX_TS: their sum can pass a store's 64-bit ints
                return self.start, min(self.start + self.window, MAX_TS)
            return now - self.window, MAX_TS
        return self.start, self.end or MAX_TS

    def statuses(self) -> list[AlarmStatus]:
        return [
            status
            for status, cleared, acked in _STATUS_FLAGS
            if self.cleared in (None, cleared) and self.acknowledged in (None, acked)
        ]

    def matches(self, alarm: Alarm, now: int) -> bool:
        low, high = self.bounds(now)
        return (
            low <= alarm.start_ts <= high
            and (self.types is None or alarm.type in self.types)
            and (self.severities is None or alarm.severity in self.severities)
            and self.cleared in (None, alarm.cleared)
            and self.acknowledged in (None, alarm.acknowledged)
        )


_STATUS_FLAGS: tuple[tuple[AlarmStatus, bool, bool], ...] = (
    ("ACTIVE_UNACK", False, False),
    ("ACTIVE_ACK", False, True),
    ("CLEARED_UNACK", True, False),
    ("CLEARED_ACK", True, True),
)


@dataclass(frozen=True, slots=True)
class SeriesRequest:
    """ENTITY_DATA's historyCmd (`live` False) or tsCmd (`live` True): the page's devices'
    points of `keys` in `window`; a tsCmd then follows their new points."""

    keys: tuple[str, ...]
    window: Window
    live: bool
    previous: bool
    """fetchLatestPreviousPoint: also the newest point before the window."""


@dataclass(frozen=True, slots=True)
class EntityDataRequest:
    cmd_id: int
    devices: DeviceFilter | None
    """None: the command has no query, only new `latest` keys or a new `series` for its
    subscription."""
    page: Page | None
    fields: tuple[str, ...]
    latest: tuple[EntityKey, ...]
    series: SeriesRequest | None = None


@dataclass(frozen=True, slots=True)
class EntityCountRequest:
    cmd_id: int
    devices: DeviceFilter


@dataclass(frozen=True, slots=True)
class AlarmDataRequest:
    cmd_id: int
    devices: DeviceFilter
    page: Page
    alarms: AlarmFilter
    fields: tuple[str, ...]
    latest: tuple[EntityKey, ...]


@dataclass(frozen=True, slots=True)
class AlarmCountRequest:
    cmd_id: int
    devices: DeviceFilter
    alarms: AlarmFilter


ApiCommand = Command | EntityDataRequest | EntityCountRequest | AlarmDataRequest | AlarmCountRequest


def auth_token(doc: dict[str, Any]) -> str | None:
    """The JWT of the message's authCmd; None when it has no authCmd."""
    auth = doc.get("authCmd")
    if auth is None:
        return None
    if not isinstance(auth, dict):
        raise BadCommand(f"authCmd must be an object: send {API_SHAPE}")
    token = text_field(auth, "token")
    if not token:
        raise BadCommand("authCmd has no token: log in with POST /api/auth/login and send it")
    return token


def api_commands(doc: dict[str, Any], now: int) -> list[ApiCommand | Refused]:
    """The `cmds` of one message, in order; `now` in ms."""
    cmds = doc.get("cmds")
    if cmds is None:
        return []
    if not isinstance(cmds, list):
        return [Refused(0, f"cmds must be a list of commands: send {API_SHAPE}")]
    return [read_command(_by_type, cmd, now) for cmd in cmds]


def _by_type(cmd_id: int, cmd: dict[str, Any], now: int) -> ApiCommand:
    kind = text_field(cmd, "type")
    parse = _PARSERS.get(kind)
    if parse is None:
        raise BadCommand(
            f"command type {shown(kind or None)} is not supported; tinyboard answers "
            + ", ".join(_PARSERS)
        )
    return parse(cmd_id, cmd, now)


def _unsubscribe(cmd_id: int, _: dict[str, Any], __: int) -> ApiCommand:
    return Unsubscribe(cmd_id)


def _entity_data(cmd_id: int, cmd: dict[str, Any], now: int) -> ApiCommand:
    for part in ENTITY_DATA_PARTS:
        if cmd.get(part) is not None:
            raise BadCommand(
                f"ENTITY_DATA's {part} is not supported: use historyCmd or tsCmd with an agg"
            )
    latest_cmd = _object(cmd, "latestCmd")
    extra = _entity_keys(latest_cmd, "keys", LATEST_TYPES) if latest_cmd else ()
    series = _series(cmd, now)
    query = _object(cmd, "query")
    if not query:
        return EntityDataRequest(cmd_id, None, None, (), extra, series)
    fields, latest = _fields_and_latest(query)
    page = _page(query)
    devices = _entity_filter(query)
    return EntityDataRequest(cmd_id, devices, page, fields, _union(latest, extra), series)


def _series(cmd: dict[str, Any], now: int) -> SeriesRequest | None:
    """ThingsBoard's EntityHistoryCmd ([startTs, endTs)) or TimeSeriesCmd ([startTs,
    startTs + timeWindow), then live)."""
    history, live = _object(cmd, "historyCmd"), _object(cmd, "tsCmd")
    if history is not None and live is not None:
        raise BadCommand("send ENTITY_DATA's historyCmd or its tsCmd, not both")
    spec = history if history is not None else live
    if spec is None:
        return None
    if (text_field(spec, "intervalType") or "MILLISECONDS") != "MILLISECONDS":
        raise BadCommand(
            "tinyboard has no calendar buckets: aggregate with intervalType MILLISECONDS and "
            "an interval in milliseconds"
        )
    start = integer_field(spec, "startTs", 0)
    if history is not None:
        end = integer_field(spec, "endTs", now + 1)
    else:
        end = min(start + integer_field(spec, "timeWindow", 0), MAX_TS)
    previous = _given(spec, "fetchLatestPreviousPoint", False)
    if not isinstance(previous, bool):
        raise BadCommand(f"fetchLatestPreviousPoint must be true or false, not {shown(previous)}")
    keys = _key_names(spec)
    return SeriesRequest(keys, read_window(spec, start, end), live is not None, previous)


def _key_names(spec: dict[str, Any]) -> tuple[str, ...]:
    raw = spec.get("keys")
    if (
        not isinstance(raw, list)
        or not raw
        or len(raw) > MAX_LIST
        or not all(isinstance(k, str) and k for k in raw)
    ):
        raise BadCommand(f'keys must list 1 to {MAX_LIST} time-series keys, such as ["temp"]')
    return tuple(dict.fromkeys(no_nul("keys", k) for k in raw))


def _entity_count(cmd_id: int, cmd: dict[str, Any], _: int) -> ApiCommand:
    return EntityCountRequest(cmd_id, _entity_filter(_query(cmd)))


def _alarm_data(cmd_id: int, cmd: dict[str, Any], _: int) -> ApiCommand:
    query = _query(cmd)
    fields, latest = _fields_and_latest(query)
    page = _page(query)
    alarms = _alarm_filter(_object(query, "pageLink") or {})
    return AlarmDataRequest(cmd_id, _entity_filter(query), page, alarms, fields, latest)


def _alarm_count(cmd_id: int, cmd: dict[str, Any], _: int) -> ApiCommand:
    query = _query(cmd)
    return AlarmCountRequest(cmd_id, _entity_filter(query), _alarm_filter(query))


_PARSERS: dict[str, Parser[ApiCommand]] = {
    "TIMESERIES": ts_subscribe,
    "TIMESERIES_HISTORY": history,
    "ATTRIBUTES": attr_subscribe,
    "ENTITY_DATA": _entity_data,
    "ENTITY_COUNT": _entity_count,
    "ALARM_DATA": _alarm_data,
    "ALARM_COUNT": _alarm_count,
    "ENTITY_DATA_UNSUBSCRIBE": _unsubscribe,
    "ENTITY_COUNT_UNSUBSCRIBE": _unsubscribe,
    "ALARM_DATA_UNSUBSCRIBE": _unsubscribe,
    "ALARM_COUNT_UNSUBSCRIBE": _unsubscribe,
}


# -- query parts -----------------------------------------------------------------------------
def _query(cmd: dict[str, Any]) -> dict[str, Any]:
    query = _object(cmd, "query")
    if not query:
        raise BadCommand("Query is empty!")  # ThingsBoard's words
    return query


def _entity_filter(query: dict[str, Any]) -> DeviceFilter:
    spec = _object(query, "entityFilter")
    kind = text_field(spec, "type") if spec else ""
    reader = _FILTERS.get(kind)
    if spec is None or reader is None:
        raise BadCommand(
            f"entityFilter type {shown(kind or None)} is not supported; use " + ", ".join(FILTERS)
        )
    return replace(reader(spec), keys=_key_filters(query))


def _key_filters(query: dict[str, Any]) -> tuple[KeyFilter, ...]:
    raw = _given(query, "keyFilters", [])
    if not isinstance(raw, list):
        raise BadCommand(f"keyFilters must be a list, not {shown(raw)}")
    budget, found = [MAX_PREDICATES], []
    for item in raw:
        if not isinstance(item, dict):
            raise BadCommand(
                'each keyFilter is {"key": {...}, "valueType": ..., "predicate": {...}}'
            )
        [key] = _entity_keys({"keys": [item.get("key")]}, "keys", FILTER_TYPES)
        found.append(KeyFilter(key, read_predicate(item.get("predicate"), budget)))
    return tuple(found)


def _single(spec: dict[str, Any]) -> DeviceFilter:
    entity = _object(spec, "singleEntity") or {}
    _device_type(entity)
    entity_id = text_field(entity, "id")
    if not entity_id:
        raise BadCommand('singleEntity needs {"entityType": "DEVICE", "id": "<device id>"}')
    return DeviceFilter(ids=frozenset({entity_id}))


def _listed(spec: dict[str, Any]) -> DeviceFilter:
    _device_type(spec)
    return DeviceFilter(ids=_strings(spec, "entityList") or frozenset())


def _every(spec: dict[str, Any]) -> DeviceFilter:
    _device_type(spec)
    return DeviceFilter()


def _of_type(spec: dict[str, Any]) -> DeviceFilter:
    types = _strings(spec, "deviceTypes") or frozenset({text_field(spec, "deviceType")} - {""})
    if not types:
        raise BadCommand('deviceType needs "deviceTypes": ["<type>", ...]')
    return DeviceFilter(types=types, name_prefix=text_field(spec, "deviceNameFilter"))


def _named(spec: dict[str, Any]) -> DeviceFilter:
    _device_type(spec)
    return DeviceFilter(name_prefix=text_field(spec, "entityNameFilter"))


_FILTERS: dict[str, Callable[[dict[str, Any]], DeviceFilter]] = {
    "singleEntity": _single,
    "entityList": _listed,
    "entityType": _every,
    "deviceType": _of_type,
    "entityName": _named,
}


def _device_type(spec: dict[str, Any]) -> None:
    kind = text_field(spec, "entityType")
    if kind != "DEVICE":
        raise BadCommand(f"entityType must be DEVICE (tinyboard keeps devices), not {shown(kind)}")


def _page(query: dict[str, Any]) -> Page:
    link = _object(query, "pageLink")
    if link is None:
        raise BadCommand('the query needs a pageLink such as {"pageSize": 10, "page": 0}')
    size = integer_field(link, "pageSize", 10, MAX_PAGE_SIZE)
    if size < 1:
        raise BadCommand(f"pageSize must be from 1 to {MAX_PAGE_SIZE}")
    sort, descending = None, False
    order = _object(link, "sortOrder")
    if order:
        [key] = _entity_keys({"keys": [order.get("key")]}, "keys", SORT_TYPES)
        sort, descending = key.key, _direction(order)
    text = text_field(link, "textSearch")
    dynamic = _given(link, "dynamic", False)
    if not isinstance(dynamic, bool):
        raise BadCommand("pageLink.dynamic must be true or false")
    number = integer_field(link, "page", 0, 10_000_000)
    return Page(size, number, text, sort, descending, dynamic)


def _direction(order: dict[str, Any]) -> bool:
    direction = text_field(order, "direction") or "ASC"
    if direction not in ("ASC", "DESC"):
        raise BadCommand(f"sortOrder direction must be ASC or DESC, not {shown(direction)}")
    return direction == "DESC"


def _fields_and_latest(query: dict[str, Any]) -> tuple[tuple[str, ...], tuple[EntityKey, ...]]:
    fields = _entity_keys(query, "entityFields", frozenset({"ENTITY_FIELD"}))
    return tuple(k.key for k in fields), _entity_keys(query, "latestValues", LATEST_TYPES)


def _alarm_filter(spec: dict[str, Any]) -> AlarmFilter:
    severities = _strings(spec, "severityList")
    if severities and not severities <= set(SEVERITIES):
        raise BadCommand(f"severityList holds {', '.join(SEVERITIES)}")
    statuses = _strings(spec, "statusList") or frozenset()
    if not statuses <= {"ANY", "ACTIVE", "CLEARED", "ACK", "UNACK"}:
        raise BadCommand("statusList holds ANY, ACTIVE, CLEARED, ACK or UNACK")
    return AlarmFilter(
        start=integer_field(spec, "startTs", 0),
        end=integer_field(spec, "endTs", 0),
        window=integer_field(spec, "timeWindow", 0),
        types=_strings(spec, "typeList"),
        severities=severities,
        cleared=_one_of(statuses, "CLEARED", "ACTIVE"),
        acknowledged=_one_of(statuses, "ACK", "UNACK"),
    )


def _one_of(statuses: frozenset[str], yes: str, no: str) -> bool | None:
    """ThingsBoard's AlarmStatusFilter: a flag filters only when one side of it is listed."""
    if "ANY" in statuses or (yes in statuses) == (no in statuses):
        return None
    return yes in statuses


def _union(*groups: tuple[EntityKey, ...]) -> tuple[EntityKey, ...]:
    return tuple(dict.fromkeys(k for group in groups for k in group))


# -- readers -----------------------------------------------------------------------------------
def _given(doc: dict[str, Any], name: str, default: Any) -> Any:
    """A field's value, `default` when it is absent or null; any other value (`false`, `0`,
    `{}` too) is the client's, for the caller to check."""
    raw = doc.get(name)
    return default if raw is None else raw


def _object(doc: dict[str, Any], name: str) -> dict[str, Any] | None:
    raw = doc.get(name)
    if raw is not None and not isinstance(raw, dict):
        raise BadCommand(f"{name} must be an object, not {shown(raw)}")
    return raw


def _strings(doc: dict[str, Any], name: str) -> frozenset[str] | None:
    """A list of strings; None when absent or empty (no filter)."""
    raw = _given(doc, name, [])
    if raw == []:
        return None
    if not isinstance(raw, list) or len(raw) > MAX_LIST or not all(isinstance(s, str) for s in raw):
        raise BadCommand(f"{name} must be a list of at most {MAX_LIST} strings")
    return frozenset(no_nul(name, s) for s in raw)


def _entity_keys(doc: dict[str, Any], name: str, allowed: frozenset[str]) -> tuple[EntityKey, ...]:
    raw = _given(doc, name, [])
    if not isinstance(raw, list) or len(raw) > MAX_LIST:
        raise BadCommand(f"{name} must be a list of at most {MAX_LIST} keys")
    keys: list[EntityKey] = []
    for item in raw:
        if not isinstance(item, dict):
            raise BadCommand(f'each of {name} is {{"type": "TIME_SERIES", "key": "temperature"}}')
        kind, key = text_field(item, "type"), text_field(item, "key")
        if kind not in allowed or not key:
            raise BadCommand(f"{name} takes keys of type {', '.join(sorted(allowed))} with a key")
        keys.append(EntityKey(next(t for t in KEY_TYPES if t == kind), key))
    return tuple(keys)
