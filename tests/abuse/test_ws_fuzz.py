"""The WebSocket APIs on generated commands (issue 13's fuzz targets, for `/api/ws` and the
legacy `/api/ws/plugins/telemetry`), over one connection each: the valid shapes of
tests/test_ws_api.py (every command type, keyFilters, dynamic pages, historyCmd and tsCmd,
times up to the largest allowed) with nodes replaced by values of the wrong JSON type (null,
booleans, huge or fractional numbers, -0.0, strings with NUL or a lone surrogate, lists,
objects, nesting up to 1,100 deep), removed, wrapped, or given fields and parts of other
commands; unknown types, cmdIds out of range, several commands under one cmdId, one command
40 times; now and then a message that is not JSON, cut short, too big, in a binary frame or
not the commands' shape. After the answers, a commit is delivered to what they subscribed.

The invariant is docs/protocols.md's: each command gets, in order, a valid answer of its type
or ThingsBoard's error reply (errorCode 2 with a message) for its cmdId (0 when that cannot
be read), never more than one, and nothing else arrives; a commit sends only updates of the
subscriptions answered, in their shapes; the connection stays open; the server logs no
traceback or error; an unsubscribe leaves nothing of what the commands started. A barrier
command after each step proves the connection survived and answered in order.
`TINYBOARD_WS_FUZZ_EXAMPLES=5000` runs more examples than the default 400 per endpoint.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.helpers import ServerThread
from tests.web_helpers import login

Doc = dict[str, Any]
NOW = time.time_ns() // 1_000_000
BARRIER = 777_777_777
"""The cmdId of the known-good command sent after each message (no generated one has it)."""
MAX_POINTS = 300
"""The server's `--ws-max-points`: low enough for generated windows to pass it."""
MAX_MESSAGE = 64 * 1024
EXAMPLES = int(os.environ.get("TINYBOARD_WS_FUZZ_EXAMPLES", "0"))
DEVICES = ("<dev0>", "<dev1>", "<dev2>")
"""Placeholders for the fixture's device ids (made when the server runs)."""


# -- the server, its data and one connection -------------------------------------------------
@dataclass
class Fuzzed:
    server: ServerThread
    ids: dict[str, str]
    """Placeholder → device id."""
    keys: dict[str, int]
    """Placeholder → the device's key in the store."""
    token: str
    listeners: int
    """The alarm engine's listeners before any command: what an unsubscribe returns to."""


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """Three devices with points, attributes in each scope and an alarm; dynamic pages
    refreshed every 0.2 s and answers of at most `MAX_POINTS` points."""
    server = ServerThread(
        tmp_path_factory.mktemp("wsfuzz") / "data", ws_page_refresh=0.2, ws_max_points=MAX_POINTS
    ).start()
    try:
        a = server.add_device("fuzz-0", type="thermo", label="Kitchen")
        b = server.add_device("fuzz-1", type="thermo", label="kitchen")
        c = server.add_device("fuzz-2", type="lamp")
        readings = [(a.key, "temp", NOW - 150_000 + i * 1000, 20 + i % 7) for i in range(150)]
        readings += [(a.key, "hum", NOW - 5000, 40), (a.key, "note", NOW - 4000, "dry")]
        readings += [(b.key, "temp", ts, ts / 1000) for ts in range(1000, 11_000, 1000)]
        rows: list[Any] = [
            (a.key, "CLIENT", "fw", 1000, "1.2"),
            (a.key, "SHARED", "mode", 2000, "eco"),
            (a.key, "SERVER", "on", 3000, True),
            (c.key, "SERVER", "on", 3000, False),
            (b.key, "SHARED", "fw", 4000, "1.3"),
        ]
        server.call(server.server.store.write(readings, rows))
        headers = login(server)
        alarm = {
            "originator": {"entityType": "DEVICE", "id": a.id},
            "type": "Too hot",
            "severity": "MAJOR",
        }
        response = httpx.post(f"{server.base_url}/api/alarm", json=alarm, headers=headers)
        assert response.status_code == 200, response.text
        token = headers["X-Authorization"].removeprefix("Bearer ")
        listeners = server.on_loop(lambda: len(server.server.alarms.listeners))
        ids = dict(zip(DEVICES, (a.id, b.id, c.id), strict=True))
        keys = dict(zip(DEVICES, (a.key, b.key, c.key), strict=True))
        yield Fuzzed(server, ids, keys, token, listeners)
    finally:
        server.stop()


class Socket:
    """One WebSocket connection kept across examples; opened again only after an example
    saw it end (that example failed), so each example starts on an open one."""

    def __init__(self, fuzzed: Fuzzed, legacy: bool) -> None:
        self.fuzzed, self.legacy = fuzzed, legacy
        self.ws: ClientConnection | None = None
        self.stack = contextlib.ExitStack()

    def open(self) -> ClientConnection:
        if self.ws is None or self.ws.close_code is not None:
            self.stack.close()
            port, token = self.fuzzed.server.http_port, self.fuzzed.token
            path = f"/api/ws/plugins/telemetry?token={token}" if self.legacy else "/api/ws"
            url = f"ws://127.0.0.1:{port}{path}"
            self.ws = self.stack.enter_context(connect(url, max_size=None, ping_interval=None))
            if not self.legacy:
                self.ws.send(orjson.dumps({"authCmd": {"cmdId": 0, "token": token}}).decode())
        return self.ws

    def close(self) -> None:
        self.stack.close()


# -- valid commands ----------------------------------------------------------------------------
devices = st.sampled_from([*DEVICES, "fuzz-1", "no-such-device"])
cmd_ids = st.integers(0, 6) | st.sampled_from([2**31 - 1, 2**31, -1, 1.0, 3.5])
ts_keys = st.sampled_from(["temp", "temp,hum", "hum, note", "", "missing", "temp,fw"])
aggs = st.sampled_from(["NONE", "AVG", "MIN", "MAX", "SUM", "COUNT"])
MAX_TS = 2**62
"""The largest time a command may name (docs/protocols.md: a bigger one is refused)."""
times = st.sampled_from([0, 1, 1000, 20_000, NOW - 3_600_000, NOW - 100_000, NOW, NOW + 1000])
times |= st.sampled_from([MAX_TS - 1, MAX_TS])
spans = st.sampled_from([1, 1000, 60_000, 200_000, NOW, MAX_TS])
intervals = st.sampled_from([1, 1000, 60_000, MAX_TS, 0])
"""(0: raw points, and a refusal with an agg.)"""
limits = st.sampled_from([0, 1, 50, 100, 100_000])
windows = st.fixed_dictionaries(
    {},
    optional={
        "startTs": times,
        "endTs": times,
        "timeWindow": spans,
        "interval": intervals,
        "limit": limits,
        "agg": aggs,
    },
)
entity_filters = st.sampled_from(
    [
        {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": "<dev0>"}},
        {"type": "entityList", "entityType": "DEVICE", "entityList": ["<dev0>", "<dev1>", "x"]},
        {"type": "entityType", "entityType": "DEVICE"},
        {"type": "deviceType", "deviceTypes": ["thermo"], "deviceNameFilter": "fuzz"},
        {"type": "entityName", "entityType": "DEVICE", "entityNameFilter": "FUZZ-1"},
    ]
)
predicates = st.sampled_from(
    [
        {
            "type": "STRING",
            "operation": "STARTS_WITH",
            "value": {"defaultValue": "kit"},
            "ignoreCase": True,
        },
        {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 20}},
        {"type": "BOOLEAN", "operation": "EQUAL", "value": {"userValue": True}},
        {
            "type": "COMPLEX",
            "operation": "OR",
            "predicates": [
                {"type": "NUMERIC", "operation": "LESS", "value": {"defaultValue": 5}},
                {"type": "STRING", "operation": "IN", "value": {"defaultValue": "dry,wet"}},
            ],
        },
    ]
)
key_filters = st.lists(
    st.fixed_dictionaries(
        {
            "key": st.sampled_from(
                [
                    {"type": "ENTITY_FIELD", "key": "label"},
                    {"type": "TIME_SERIES", "key": "temp"},
                    {"type": "SERVER_ATTRIBUTE", "key": "on"},
                    {"type": "ATTRIBUTE", "key": "fw"},
                ]
            ),
            "valueType": st.sampled_from(["STRING", "NUMERIC", "BOOLEAN"]),
            "predicate": predicates,
        }
    ),
    max_size=2,
)
entity_keys = st.lists(
    st.sampled_from(
        [
            {"type": "TIME_SERIES", "key": "temp"},
            {"type": "ATTRIBUTE", "key": "fw"},
            {"type": "SHARED_ATTRIBUTE", "key": "mode"},
            {"type": "CLIENT_ATTRIBUTE", "key": "fw"},
            {"type": "SERVER_ATTRIBUTE", "key": "on"},
        ]
    ),
    max_size=3,
)
entity_fields = st.lists(
    st.sampled_from(["name", "label", "type", "createdTime", "additionalInfo", "title"]).map(
        lambda key: {"type": "ENTITY_FIELD", "key": key}
    ),
    max_size=3,
)
sort_orders = st.fixed_dictionaries(
    {
        "key": st.sampled_from(
            [
                {"type": "ENTITY_FIELD", "key": "createdTime"},
                {"type": "ENTITY_FIELD", "key": "name"},
                {"type": "ENTITY_FIELD", "key": "label"},
            ]
        ),
        "direction": st.sampled_from(["ASC", "DESC"]),
    }
)
page_links = st.fixed_dictionaries(
    {"pageSize": st.sampled_from([1, 10, 1000]), "page": st.sampled_from([0, 1])},
    optional={
        "textSearch": st.sampled_from([None, "", "fuzz", "Kitchen"]),
        "sortOrder": sort_orders,
        "dynamic": st.booleans(),
    },
)
series_specs = st.fixed_dictionaries(
    {"keys": st.sampled_from([["temp"], ["temp", "hum"], ["missing"]])},
    optional={
        "startTs": times,
        "endTs": times,
        "timeWindow": spans,
        "interval": intervals,
        "intervalType": st.just("MILLISECONDS"),
        "limit": limits,
        "agg": aggs,
        "fetchLatestPreviousPoint": st.booleans(),
        "timeZoneId": st.just("Europe/Kiev"),
    },
)


@st.composite
def legacy_ts(draw: st.DrawFn) -> Doc:
    cmd = {"cmdId": draw(cmd_ids), "entityType": "DEVICE", "entityId": draw(devices)}
    cmd |= {"keys": draw(ts_keys), "scope": "LATEST_TELEMETRY", **draw(windows)}
    if draw(st.integers(0, 5)) == 0:
        cmd["unsubscribe"] = True
    return cmd


@st.composite
def legacy_attr(draw: st.DrawFn) -> Doc:
    cmd = {"cmdId": draw(cmd_ids), "entityType": "DEVICE", "entityId": draw(devices)}
    cmd["keys"] = draw(st.sampled_from(["fw", "fw,mode,on", "", "missing"]))
    scope = draw(st.sampled_from([None, "CLIENT_SCOPE", "SHARED_SCOPE", "SERVER_SCOPE"]))
    if scope is not None:
        cmd["scope"] = scope
    if draw(st.integers(0, 5)) == 0:
        cmd["unsubscribe"] = True
    return cmd


@st.composite
def legacy_history(draw: st.DrawFn) -> Doc:
    cmd = {"cmdId": draw(cmd_ids), "entityType": "DEVICE", "entityId": draw(devices)}
    return cmd | {"keys": draw(ts_keys), **draw(windows)}


@st.composite
def entity_data(draw: st.DrawFn) -> Doc:
    cmd: Doc = {"type": "ENTITY_DATA", "cmdId": draw(cmd_ids)}
    if draw(st.integers(0, 4)):  # else: no query, for a cmdId already open
        query: Doc = {"entityFilter": draw(entity_filters), "pageLink": draw(page_links)}
        query |= {"entityFields": draw(entity_fields), "latestValues": draw(entity_keys)}
        if filters := draw(key_filters):
            query["keyFilters"] = filters
        cmd["query"] = query
    if draw(st.booleans()):
        cmd["latestCmd"] = {"keys": draw(entity_keys)}
    part = draw(st.sampled_from([None, "historyCmd", "tsCmd"]))
    if part is not None:
        cmd[part] = draw(series_specs)
    return cmd


@st.composite
def counts(draw: st.DrawFn) -> Doc:
    query: Doc = {"entityFilter": draw(entity_filters)}
    if filters := draw(key_filters):
        query["keyFilters"] = filters
    return {"type": "ENTITY_COUNT", "cmdId": draw(cmd_ids), "query": query}


alarm_filters = st.fixed_dictionaries(
    {},
    optional={
        "statusList": st.sampled_from([[], ["ACTIVE"], ["CLEARED", "ACK"], ["ANY"]]),
        "severityList": st.sampled_from([[], ["MAJOR"], ["CRITICAL", "MINOR"]]),
        "typeList": st.sampled_from([[], ["Too hot"]]),
        "timeWindow": st.sampled_from([0, 86_400_000]) | spans,
        "startTs": times,
        "endTs": times,
    },
)


@st.composite
def alarm_data(draw: st.DrawFn) -> Doc:
    link = draw(page_links) | draw(alarm_filters)
    if draw(st.booleans()):
        link["sortOrder"] = {
            "key": {"type": "ALARM_FIELD", "key": "createdTime"},
            "direction": "DESC",
        }
    query: Doc = {"entityFilter": draw(entity_filters), "pageLink": link}
    query |= {"entityFields": draw(entity_fields), "latestValues": draw(entity_keys)}
    query["alarmFields"] = [{"type": "ALARM_FIELD", "key": "type"}]
    return {"type": "ALARM_DATA", "cmdId": draw(cmd_ids), "query": query}


@st.composite
def alarm_count(draw: st.DrawFn) -> Doc:
    query: Doc = {"entityFilter": draw(entity_filters), **draw(alarm_filters)}
    return {"type": "ALARM_COUNT", "cmdId": draw(cmd_ids), "query": query}


UNSUBSCRIBES = (
    "ENTITY_DATA_UNSUBSCRIBE",
    "ENTITY_COUNT_UNSUBSCRIBE",
    "ALARM_DATA_UNSUBSCRIBE",
    "ALARM_COUNT_UNSUBSCRIBE",
)
api_command = st.one_of(
    legacy_ts().map(lambda c: {"type": "TIMESERIES", **c}),
    legacy_history().map(lambda c: {"type": "TIMESERIES_HISTORY", **c}),
    legacy_attr().map(lambda c: {"type": "ATTRIBUTES", **c}),
    entity_data(),
    counts(),
    alarm_data(),
    alarm_count(),
    st.builds(lambda t, i: {"type": t, "cmdId": i}, st.sampled_from(UNSUBSCRIBES), cmd_ids),
)


# -- mutations ---------------------------------------------------------------------------------
DEEP = "<deep>"
"""Stands for a value nested deeper than Python's json module writes: replaced in the text."""


def _nested(depth: int, dicts: bool) -> str:
    return '{"a":' * depth + "1" + "}" * depth if dicts else "[" * depth + "]" * depth


DEEP_VALUES = {
    f"{DEEP}{n}{kind}": _nested(n, kind == "d")
    for n in (255, 256, 300, 1000, 1100)
    for kind in "ld"
}
WEIRD_FIXED: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31 - 1,
    2**31,
    2**53 + 1,
    2**62,
    2**62 + 1,
    2**63,
    2**64 - 1,
    2**70,
    -(2**70),
    1e308,
    -1e308,
    -0.0,
    0.5,
    5e-324,
    "",
    " ",
    "abc",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "é\u2028😀",
    "DEVICE",
    "TIME_SERIES",
    "ATTRIBUTE",
    "ENTITY_FIELD",
    "ALARM_FIELD",
    "COMPLEX",
    "NONE",
    "AVG",
    "ASC",
    "WEEK",
    "<dev0>",
    "x" * 3000,
    [],
    [None],
    ["temp"],
    [1, "a"],
    ["\x00"],
    {},
    {"a": None},
    {"type": "COMPLEX", "operation": "OR", "predicates": []},
    {"keyFilterPredicate": {"type": "BOOLEAN"}},
    [[[[[[[[[[1]]]]]]]]]],
    *DEEP_VALUES,
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
weird = (st.sampled_from(WEIRD_FIXED) | json_values).map(copy.deepcopy)
"""(Copies: a later mutation must not change the list of values.)"""
field_names = st.sampled_from(
    ["cmdId", "type", "query", "keys", "startTs", "unsubscribe", "dynamic", "predicate", "x"]
)
grafts = st.one_of(
    st.tuples(st.just("historyCmd"), series_specs),
    st.tuples(st.just("tsCmd"), series_specs),
    st.tuples(st.just("latestCmd"), st.fixed_dictionaries({"keys": entity_keys})),
    st.tuples(st.just("pageLink"), page_links),
    st.tuples(st.just("entityFilter"), entity_filters),
    st.tuples(st.just("keyFilters"), key_filters),
    st.tuples(st.just("query"), st.fixed_dictionaries({"entityFilter": entity_filters})),
    st.tuples(st.sampled_from(["startTs", "endTs", "timeWindow"]), times | spans),
)
"""Valid parts of other commands, added to a command that may not expect them."""
Path = tuple[str | int, ...]


def _paths(doc: Any, at: Path = ()) -> list[Path]:
    """Every node of a JSON document, the root first."""
    found = [at]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*at, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, (*at, i))
    return found


def _get(doc: Any, path: Path) -> Any:
    for step in path:
        doc = doc[step]
    return doc


@st.composite
def mutated(draw: st.DrawFn, commands: st.SearchStrategy[Any], most: int = 3) -> Any:
    """A command with up to `most` of its nodes replaced, removed, wrapped, or given a new
    field."""
    doc = copy.deepcopy(draw(commands))
    for _ in range(draw(st.integers(0, most))):
        path = draw(st.sampled_from(_paths(doc)))
        node = _get(doc, path)
        match draw(st.sampled_from(["replace", "replace", "delete", "wrap", "add", "graft"])):
            case "add" if isinstance(node, dict):
                node[draw(field_names)] = draw(weird)
                continue
            case "graft" if isinstance(node, dict):
                name, part = draw(grafts)
                node[name] = copy.deepcopy(part)
                continue
            case "delete" if path:
                del _get(doc, path[:-1])[path[-1]]
                continue
            case "wrap":
                new = draw(st.sampled_from([[node], {"value": node}, [node, copy.deepcopy(node)]]))
            case _:
                new = draw(weird)
        if path:
            _get(doc, path[:-1])[path[-1]] = new
        else:
            doc = new
    return doc


def wire(doc: Any, fuzzed: Fuzzed) -> str:
    """The message's text: lone surrogates and NUL escaped, deep values spliced in."""
    text = json.dumps(doc, allow_nan=False)
    for name, device_id in fuzzed.ids.items():
        text = text.replace(f'"{name}"', f'"{device_id}"')
    for name, value in DEEP_VALUES.items():
        text = text.replace(f'"{name}"', value)
    return text


@st.composite
def messages(draw: st.DrawFn, lists: dict[str, st.SearchStrategy[Any]]) -> Any:
    """One message of the command `lists`, sometimes broken as a whole."""
    doc: Any = {
        name: draw(st.lists(mutated(commands), min_size=1, max_size=3))
        for name, commands in lists.items()
        if len(lists) == 1 or draw(st.booleans())
    }
    match draw(st.integers(0, 19)):
        case 0:
            doc[draw(st.sampled_from(list(lists)))] = draw(weird)
        case 1:
            doc = draw(weird)
        case 2:
            doc = {**doc, "authCmd": {"cmdId": 0, "token": "x"}, "pad": "x" * MAX_MESSAGE}
        case 3:
            doc = {**doc, "authCmd": draw(weird)}
        case 4:  # one command many times under other cmdIds: the per-connection bounds
            name = draw(st.sampled_from(list(lists)))
            many = draw(st.integers(2, 40))
            same = draw(mutated(lists[name], most=1))
            if isinstance(same, dict):
                doc[name] = [{**same, "cmdId": 100 + i} for i in range(many)]
    return doc


# -- what may come back ------------------------------------------------------------------------
@dataclass(frozen=True)
class Expected:
    """What one command may be answered with."""

    cmd: Any
    cmd_id: int
    """The id its answer carries: its cmdId, 0 when that cannot be read."""
    kind: str
    """The answer's kind: the command's type (unknown ones can only be refused)."""
    silent: bool
    """Whether it may go unanswered (an unsubscribe, a query-less ENTITY_DATA)."""


def cmd_id_of(cmd: Any) -> int:
    """ThingsBoard's cmdId is a Java int: a whole number from 0 to 2**31 - 1 (missing: 0)."""
    raw = cmd.get("cmdId") if isinstance(cmd, dict) else None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return 0
    return int(raw) if 0 <= raw <= 2**31 - 1 and raw % 1 == 0 else 0


def expect_api(cmd: Any) -> Expected:
    kind = cmd.get("type") if isinstance(cmd, dict) else None
    if not isinstance(kind, str):
        kind = "unknown"
    silent = isinstance(cmd, dict) and (
        kind in UNSUBSCRIBES
        or (kind in ("TIMESERIES", "ATTRIBUTES") and cmd.get("unsubscribe") is True)
        or (kind == "ENTITY_DATA" and cmd.get("query") in (None, {}))
    )
    return Expected(cmd, cmd_id_of(cmd), kind, silent)


LEGACY_KINDS = {"tsSubCmds": "TIMESERIES", "historyCmds": "HISTORY", "attrSubCmds": "ATTRIBUTES"}


def expect_legacy(kind: str) -> Callable[[Any], Expected]:
    def expect(cmd: Any) -> Expected:
        silent = kind != "HISTORY" and isinstance(cmd, dict) and cmd.get("unsubscribe") is True
        return Expected(cmd, cmd_id_of(cmd), kind, silent)

    return expect


REFUSED_WHOLE = Expected(None, 0, "refused", False)
"""A message that cannot be read: one error reply, with id 0."""


def readable(text: str) -> Any:
    """The message as the server reads it (within 64 KiB, JSON); None when it cannot."""
    if len(text.encode()) > MAX_MESSAGE:
        return None
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def expected_api(text: str) -> list[Expected]:
    doc = readable(text)
    if doc is None:
        return [REFUSED_WHOLE]
    cmds = doc.get("cmds")
    if cmds is None:
        return []
    return [expect_api(c) for c in cmds] if isinstance(cmds, list) else [REFUSED_WHOLE]


def expected_legacy(text: str) -> list[Expected]:
    doc = readable(text)
    if doc is None:
        return [REFUSED_WHOLE]
    out: list[Expected] = []
    for name, kind in LEGACY_KINDS.items():  # the server's order, whatever the message's
        cmds = doc.get(name)
        if isinstance(cmds, list):
            out += map(expect_legacy(kind), cmds)
        elif cmds is not None:
            out.append(REFUSED_WHOLE)
    return out


NUMBER, TEXT, LIST, FLAG, OBJECT = (int, float), (str,), (list,), (bool,), (dict,)
WINDOW_READ = {"startTs": NUMBER, "endTs": NUMBER, "interval": NUMBER, "limit": NUMBER}
SERIES_READ = {**WINDOW_READ, "keys": LIST, "agg": TEXT, "intervalType": TEXT}
SERIES_READ |= {"fetchLatestPreviousPoint": FLAG}
PAGE_READ = {"pageSize": NUMBER, "page": NUMBER, "textSearch": TEXT, "dynamic": FLAG}
PAGE_READ |= {"sortOrder": OBJECT}
QUERY_READ = {"entityFilter": OBJECT, "keyFilters": LIST}
ENTITY_QUERY_READ = {**QUERY_READ, "entityFields": LIST, "latestValues": LIST, "pageLink": OBJECT}
ALARM_LIST_READ = {"statusList": LIST, "severityList": LIST, "typeList": LIST}
ALARM_READ = {**ALARM_LIST_READ, "startTs": NUMBER, "endTs": NUMBER, "timeWindow": NUMBER}
TS_READ = {"keys": (str, list), "entityId": TEXT, "entityType": TEXT}
READ: dict[str, dict[str, Any]] = {
    "TIMESERIES": {**TS_READ, "startTs": NUMBER, "timeWindow": NUMBER, "unsubscribe": FLAG},
    "HISTORY": {**TS_READ, **WINDOW_READ, "agg": TEXT},
    "ATTRIBUTES": {**TS_READ, "scope": TEXT, "unsubscribe": FLAG},
    "ENTITY_COUNT": {"query": QUERY_READ},
    "ENTITY_DATA": {
        "query": {**ENTITY_QUERY_READ, "pageLink": PAGE_READ},
        "latestCmd": {"keys": LIST},
        "historyCmd": SERIES_READ,
        "tsCmd": {**SERIES_READ, "timeWindow": NUMBER},
    },
    "ALARM_DATA": {"query": {**ENTITY_QUERY_READ, "pageLink": PAGE_READ | ALARM_READ}},
    "ALARM_COUNT": {"query": QUERY_READ | ALARM_READ},
}
"""Fields every successful answer of a command type has read, with the JSON types they take
(null, too: absent): a value of another type must be refused, never taken for absent. A
nested table is read when its object is there and not empty."""
READ["TIMESERIES_HISTORY"] = READ["HISTORY"]


def wrong_type(cmd: Any, fields: dict[str, Any], at: str = "") -> str | None:
    """The first field of `cmd` that `fields` reads and that holds a value of another type."""
    for name, read in fields.items():
        value = cmd.get(name)
        if isinstance(read, dict) and isinstance(value, dict) and value:
            if found := wrong_type(value, read, f"{at}{name}."):
                return found
            continue
        allowed = OBJECT if isinstance(read, dict) else read
        if value is None or (isinstance(value, allowed) and not _bool_for_number(value, allowed)):
            continue
        return f"{at}{name} = {shown(value)}"
    return None


def _bool_for_number(value: Any, allowed: tuple[type, ...]) -> bool:
    """JSON's true is no number (Python's bool is an int)."""
    return isinstance(value, bool) and bool not in allowed


def problem(reply: Doc, expected: Expected) -> str | None:
    """Why `reply` is not an answer `expected` may get (None: it is one)."""
    if reply.get("errorCode") == 2:
        ok = set(reply) == {"subscriptionId", "errorCode", "errorMsg", "data", "latestValues"}
        ok = ok and reply["data"] == {} and reply["latestValues"] == {}
        good = ok and isinstance(reply["errorMsg"], str) and reply["errorMsg"].strip() != ""
        return None if good else "not ThingsBoard's error reply"
    if reply.get("errorCode") != 0 or reply.get("errorMsg") is not None:
        return "neither an answer nor a bad-request error"
    checks: dict[str, Callable[[Doc], bool]] = {
        "TIMESERIES": _ts_update,
        "HISTORY": _ts_update,
        "TIMESERIES_HISTORY": _ts_update,
        "ATTRIBUTES": _ts_update,
        "ENTITY_DATA": _entity_data_update,
        "ENTITY_COUNT": lambda r: _cmd_update(r, "COUNT_DATA") and _count(r),
        "ALARM_DATA": _alarm_data_update,
        "ALARM_COUNT": lambda r: _cmd_update(r, "ALARM_COUNT_DATA") and _count(r),
    }
    check = checks.get(expected.kind)
    if check is None:
        return f"a {expected.kind} command got an answer other than an error"
    if not isinstance(expected.cmd, dict):
        return "a command that is not an object got an answer other than an error"
    if not check(reply):
        return f"not the answer of a {expected.kind} command"
    wrong = wrong_type(expected.cmd, READ[expected.kind])
    return None if wrong is None else f"answered, although {wrong}"


def _ts_update(reply: Doc) -> bool:
    if set(reply) != {"subscriptionId", "errorCode", "errorMsg", "data", "latestValues"}:
        return False
    data, latest = reply["data"], reply["latestValues"]
    points = [p for values in data.values() for p in values]
    return (
        all(isinstance(p, list) and len(p) == 2 for p in points)
        and all(isinstance(ts, int) and isinstance(v, str) for ts, v in points)
        and latest == {k: max(p[0] for p in v) for k, v in data.items() if v}
    )


def _cmd_update(reply: Doc, kind: str) -> bool:
    return reply.get("cmdUpdateType") == kind and isinstance(reply.get("cmdId"), int)


def _count(reply: Doc) -> bool:
    count = reply.get("count")
    return isinstance(count, int) and not isinstance(count, bool) and count >= 0


def _page(page: Any, item: Callable[[Doc], bool]) -> bool:
    return (
        isinstance(page, dict)
        and set(page) == {"data", "totalPages", "totalElements", "hasNext"}
        and isinstance(page["data"], list)
        and all(isinstance(i, dict) and item(i) for i in page["data"])
        and page["totalElements"] >= len(page["data"])
    )


def _values(latest: Any) -> bool:
    return isinstance(latest, dict) and all(
        isinstance(values, dict)
        and all(
            isinstance(v.get("ts"), int) and isinstance(v.get("value"), str)
            for v in values.values()
        )
        for values in latest.values()
    )


def _entity(entity: Doc) -> bool:
    series = entity.get("timeseries")
    return (
        set(entity) == {"entityId", "latest", "timeseries", "aggLatest"}
        and entity["entityId"].get("entityType") == "DEVICE"
        and _values(entity["latest"])
        and isinstance(series, dict)
        and _values({k: dict(enumerate(v)) for k, v in series.items()})
    )


def _entity_data_update(reply: Doc) -> bool:
    if not _cmd_update(reply, "ENTITY_DATA") or reply.get("allowedEntities") != 1000:
        return False
    data, update = reply.get("data"), reply.get("update")
    if update is None:
        return _page(data, _entity)
    return data is None and isinstance(update, list) and all(map(_entity, update))


def _alarm(alarm: Doc) -> bool:
    return alarm.get("entityId", {}).get("entityType") == "DEVICE" and _values(alarm.get("latest"))


def _alarm_data_update(reply: Doc) -> bool:
    if not _cmd_update(reply, "ALARM_DATA") or reply.get("update") is not None:
        return False
    return isinstance(reply.get("totalEntities"), int) and _page(reply.get("data"), _alarm)


def matches(expected: list[Expected], replies: list[Doc]) -> str | None:
    """Why the replies are not the commands' answers in order, each command answered once
    (or not at all when it may be silent); None when they are."""
    worst: list[str] = []

    def walk(i: int, r: int) -> bool:
        if r == len(replies):
            missing = [e.cmd for e in expected[i:] if not e.silent]
            if missing:
                worst.append(f"no answer to {shown(missing[0])}")
            return not missing
        if i == len(expected):
            worst.append(f"an answer to no command: {shown(replies[r])}")
            return False
        here, reply = expected[i], replies[r]
        answer_id = reply.get("cmdId", reply.get("subscriptionId"))
        if answer_id == here.cmd_id:
            why = problem(reply, here)
            if why is None and walk(i + 1, r + 1):
                return True
            if why is not None:
                worst.append(f"{why}: {shown(reply)} for {shown(here.cmd)}")
        elif not here.silent:
            worst.append(f"{shown(reply)} came where {shown(here.cmd)} was to be answered")
        return here.silent and walk(i + 1, r)

    return None if walk(0, 0) else "; ".join(dict.fromkeys(worst))


def shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) < 600 else text[:600] + "..."


# -- one example -------------------------------------------------------------------------------
def barrier(legacy: bool) -> str:
    if legacy:
        history = {"cmdId": BARRIER, "entityId": "fuzz-1", "keys": "temp", "startTs": 0}
        return json.dumps({"historyCmds": [history]})
    every = {"type": "entityType", "entityType": "DEVICE"}
    return json.dumps(
        {"cmds": [{"type": "ENTITY_COUNT", "cmdId": BARRIER, "query": {"entityFilter": every}}]}
    )


def is_barrier_answer(reply: Doc, legacy: bool) -> bool:
    if legacy:
        return reply.get("subscriptionId") == BARRIER
    return reply.get("cmdId") == BARRIER


def until_barrier(ws: ClientConnection, legacy: bool, after: str) -> list[Doc]:
    """Send the barrier; what arrives before its answer (which must be the known one).
    `after` is what was sent before, for the failure's message."""
    ws.send(barrier(legacy))
    got: list[Doc] = []
    while True:
        try:
            reply = orjson.loads(ws.recv(timeout=10))
        except TimeoutError:
            pytest.fail(f"no answer to the barrier within 10 s; sent {after[:2000]}, got {got}")
        except ConnectionClosed as exc:
            pytest.fail(f"the server closed the connection ({exc}); sent {after[:2000]}")
        if is_barrier_answer(reply, legacy):
            if legacy:
                assert reply["errorCode"] == 0 and len(reply["data"]["temp"]) == 10, reply
            else:
                assert (reply["cmdUpdateType"], reply["count"]) == ("COUNT_DATA", 3), reply
            return got
        got.append(reply)


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


def unsubscribe_all(expected: list[Expected], legacy: bool) -> str:
    ids = sorted({e.cmd_id for e in expected} | {0})
    if legacy:
        both = [{"cmdId": i, "unsubscribe": True} for i in ids]
        return json.dumps({"tsSubCmds": both, "attrSubCmds": both})
    return json.dumps({"cmds": [{"type": "ENTITY_DATA_UNSUBSCRIBE", "cmdId": i} for i in ids]})


live_values = st.sampled_from([21.5, 7, -0.0, 1e308, 2**63, True, "wet", "", {"a": [1]}, [1, "x"]])
commits = st.lists(
    st.tuples(
        st.sampled_from(DEVICES),
        st.sampled_from([None, "CLIENT", "SHARED", "SERVER"]),  # None: a reading
        st.sampled_from(["temp", "hum", "note", "fw", "mode", "on", "other"]),
        st.sampled_from([1000, 0, -200_000]),  # after the stored points, or older: stale
        live_values,
    ),
    max_size=4,
)
"""What one commit delivers to the subscriptions, as the pipeline's LiveHub does."""


def publish(fuzzed: Fuzzed, commit: list[tuple[Any, ...]]) -> None:
    """Deliver `commit` to the live subscriptions (stored nothing: the examples stay alike)."""
    server, keys = fuzzed.server, fuzzed.keys
    readings = [(keys[d], key, NOW + ts, v) for d, scope, key, ts, v in commit if scope is None]
    rows = [(keys[d], scope, key, NOW + ts, v) for d, scope, key, ts, v in commit if scope]
    server.on_loop(lambda: server.server.live.publish(readings, rows))


def live_update_problem(update: Doc, answered: set[int]) -> str | None:
    """Why `update` is not a live update of a subscription that was answered."""
    if update.get("cmdId", update.get("subscriptionId")) not in answered:
        return "an update for no subscription"
    if "cmdId" in update:
        good = _entity_data_update(update) and update["data"] is None
    else:
        good = _ts_update(update) and update["errorCode"] == 0 and update["data"] != {}
    return None if good else "not an update's shape"


framings = st.sampled_from(["text"] * 18 + ["binary", "cut"])
"""How the message is sent: as text, as a binary frame, or cut short (not JSON then)."""


def exercise(
    sockets: Socket,
    caplog: pytest.LogCaptureFixture,
    doc: Any,
    framing: str,
    commit: list[tuple[Any, ...]],
) -> None:
    """Send one generated message, check its answers, then what a commit sends to the
    subscriptions it made; unsubscribe them all."""
    caplog.clear()
    fuzzed, legacy = sockets.fuzzed, sockets.legacy
    ws = sockets.open()
    text = wire(doc, fuzzed)
    if framing == "cut":
        text = text[: len(text) // 2]
    ws.send(text.encode() if framing == "binary" else text)
    replies = until_barrier(ws, legacy, text)
    if framing == "binary":
        expected = [REFUSED_WHOLE]
    else:
        expected = expected_legacy(text) if legacy else expected_api(text)
    for reply in replies:  # what the examples reached (pytest --hypothesis-show-statistics)
        event(f"{reply.get('cmdUpdateType', 'telemetry')} errorCode {reply.get('errorCode')}")
    why = matches(expected, replies)
    assert why is None, f"{why}\nsent: {text[:2000]}\ngot: {shown(replies)}"
    answered = {r.get("cmdId", r.get("subscriptionId")) for r in replies if r["errorCode"] == 0}
    publish(fuzzed, commit)
    for update in until_barrier(ws, legacy, text):
        why = live_update_problem(update, answered)
        assert why is None, f"{why}: {shown(update)}\nafter: {text[:2000]}\ncommit: {commit}"
    if '"dynamic": true' in text:  # a dynamic page's refreshes send nothing: nothing changed
        time.sleep(0.3)
        assert until_barrier(ws, legacy, text) == []
    ws.send(unsubscribe_all(expected, legacy))
    assert until_barrier(ws, legacy, text) == []
    server = fuzzed.server
    assert server.on_loop(server.server.live.subscriber_count) == 0, "a subscription stayed"
    listeners = server.on_loop(lambda: len(server.server.alarms.listeners))
    assert listeners == fuzzed.listeners, "an alarm command stayed"
    no_tracebacks(caplog)


RANDOM_ELSEWHERE = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside")
"""The server's thread draws WebSocket ping payloads from `random` while an example is being
generated, which Hypothesis takes for a strategy using it."""
FUZZ = settings(
    max_examples=EXAMPLES or 400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def api_socket(fuzzed: Fuzzed) -> Iterator[Socket]:
    sockets = Socket(fuzzed, legacy=False)
    yield sockets
    sockets.close()


@pytest.fixture(scope="module")
def legacy_socket(fuzzed: Fuzzed) -> Iterator[Socket]:
    sockets = Socket(fuzzed, legacy=True)
    yield sockets
    sockets.close()


@pytest.mark.slow
@RANDOM_ELSEWHERE
@FUZZ
@given(doc=messages({"cmds": api_command}), framing=framings, commit=commits)
def test_api_ws_answers_every_generated_command_in_order(
    api_socket: Socket,
    caplog: pytest.LogCaptureFixture,
    doc: Any,
    framing: str,
    commit: list[tuple[Any, ...]],
) -> None:
    caplog.set_level(logging.WARNING)
    exercise(api_socket, caplog, doc, framing, commit)


@pytest.mark.slow
@RANDOM_ELSEWHERE
@FUZZ
@given(
    doc=messages(
        {"tsSubCmds": legacy_ts(), "historyCmds": legacy_history(), "attrSubCmds": legacy_attr()}
    ),
    framing=framings,
    commit=commits,
)
def test_legacy_ws_answers_every_generated_command_in_order(
    legacy_socket: Socket,
    caplog: pytest.LogCaptureFixture,
    doc: Any,
    framing: str,
    commit: list[tuple[Any, ...]],
) -> None:
    caplog.set_level(logging.WARNING)
    exercise(legacy_socket, caplog, doc, framing, commit)
