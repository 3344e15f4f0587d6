"""`/api/ws`, ThingsBoard's WebSocket API, with the `websockets` client against a real server.

The command JSON is what ThingsBoard's UI builds (thingsboard/thingsboard, ui-ngx):
`shared/models/telemetry/telemetry.models.ts` (TelemetryPluginCmdsWrapper: `authCmd` and
`cmds` in the first message; the *Cmd classes; TelemetrySubscriber.
createEntityAttributesSubscription for TIMESERIES/ATTRIBUTES), `core/api/
entity-data-subscription.ts` (the ENTITY_DATA query: name/label/additionalInfo fields,
ATTRIBUTE and TIME_SERIES latest values, `latestCmd`; prepareSubscriptionCommands for the
`historyCmd` and `tsCmd` of chart widgets), `core/api/alarm-data-subscription.ts`
(ALARM_DATA: alarmFields, pageLink with `timeWindow`), `shared/models/query/query.models.ts`
(createDefaultEntityDataPageLink: sort by createdTime DESC).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import ServerThread, running
from tests.mqtt_clients import Device as MqttDevice
from tests.web_helpers import login

Doc = dict[str, Any]


def url(server: ServerThread) -> str:
    return f"ws://127.0.0.1:{server.http_port}/api/ws"


def jwt_of(server: ServerThread) -> str:
    return login(server)["X-Authorization"].removeprefix("Bearer ")


def first_message(token: str, *cmds: Doc) -> str:
    """The UI's first frame: TelemetryPluginCmdsWrapper.preparePublishCommands."""
    return orjson.dumps({"authCmd": {"cmdId": 0, "token": token}, "cmds": list(cmds)}).decode()


def cmds(*commands: Doc) -> str:
    return orjson.dumps({"cmds": list(commands)}).decode()


async def receive(ws: ClientConnection, timeout: float = 10) -> Doc:
    doc: Doc = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
    return doc


async def until(ws: ClientConnection, wanted: Callable[[Doc], bool], timeout: float = 10) -> Doc:
    """The first message that is `wanted`, skipping others."""
    while True:
        doc = await receive(ws, timeout)
        if wanted(doc):
            return doc


def of(cmd_id: int) -> Callable[[Doc], bool]:
    return lambda doc: doc.get("cmdId", doc.get("subscriptionId")) == cmd_id


async def each(ws: ClientConnection, *wanted: Callable[[Doc], bool]) -> list[Doc]:
    """One message for each predicate, whatever order they arrive in, skipping others."""
    found: dict[int, Doc] = {}
    while len(found) < len(wanted):
        doc = await receive(ws)
        for i, test in enumerate(wanted):
            if i not in found and test(doc):
                found[i] = doc
                break
    return [found[i] for i in range(len(wanted))]


BARRIER_ID = 999


async def nothing_before_barrier(ws: ClientConnection) -> None:
    """Assert no update is waiting: a session answers in order, so anything queued before
    this ENTITY_COUNT arrives before its answer."""
    await ws.send(cmds(entity_count(BARRIER_ID)))
    doc = await receive(ws)
    assert doc["cmdId"] == BARRIER_ID, f"an update arrived: {doc}"


def entity_count(cmd_id: int) -> Doc:
    return {
        "type": "ENTITY_COUNT",
        "cmdId": cmd_id,
        "query": {"entityFilter": {"type": "entityType", "entityType": "DEVICE"}},
    }


def timeseries(cmd_id: int, device_id: str, keys: str) -> Doc:
    # TelemetrySubscriber.createEntityAttributesSubscription(..., LATEST_TELEMETRY, ...)
    return {
        "type": "TIMESERIES",
        "cmdId": cmd_id,
        "entityType": "DEVICE",
        "entityId": device_id,
        "scope": "LATEST_TELEMETRY",
        "keys": keys,
    }


def post_telemetry(server: ServerThread, token: str, values: Doc) -> None:
    response = httpx.post(f"{server.base_url}/api/v1/{token}/telemetry", json=values)
    assert response.status_code == 200, response.text


async def closed_with(ws: ClientConnection) -> tuple[int, str, list[str]]:
    """Read until the server closes: (code, reason, the messages that came first)."""
    got: list[str] = []
    with pytest.raises(ConnectionClosed) as info:
        while True:
            got.append(str(await asyncio.wait_for(ws.recv(), 15)))
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason, got


async def test_without_a_valid_token_the_socket_gets_only_the_close(server: ServerThread) -> None:
    device = server.add_device("ws-api-auth")
    for first, code, reason in (
        (first_message("garbage", timeseries(1, device.id, "t")), 1007, "not valid"),
        (cmds(timeseries(1, device.id, "t")), 1008, "Auth cmd is missing"),
        ("not json", 1007, "must be JSON"),
    ):
        async with connect(url(server)) as ws:
            await ws.send(first)
            got_code, got_reason, messages = await closed_with(ws)
        assert (got_code, messages) == (code, [])
        assert reason in got_reason


async def test_timeseries_latest_then_live_then_unsubscribe(server: ServerThread) -> None:
    device = server.add_device("ws-api-ts")
    server.call(server.server.store.write([(device.key, "temperature", 1000, 20.5)], []))
    async with connect(url(server)) as ws:
        await ws.send(first_message(jwt_of(server), timeseries(1, device.id, "temperature")))
        assert await receive(ws) == {
            "subscriptionId": 1,
            "errorCode": 0,
            "errorMsg": None,
            "data": {"temperature": [[1000, "20.5"]]},
            "latestValues": {"temperature": 1000},
        }
        mqtt = MqttDevice(server.mqtt_port, device.token)
        try:
            await asyncio.to_thread(
                mqtt.publish, "v1/devices/me/telemetry", '{"temperature": 21.5, "other": 1}'
            )
            update = await receive(ws)
        finally:
            mqtt.close()
        assert update["subscriptionId"] == 1 and set(update["data"]) == {"temperature"}
        [[ts, value]] = update["data"]["temperature"]
        assert value == "21.5" and update["latestValues"] == {"temperature": ts}

        # SubscriptionCmd.unsubscribe, as TelemetryWebsocketService.unsubscribe sends it
        await ws.send(cmds({**timeseries(1, device.id, "temperature"), "unsubscribe": True}))
        await asyncio.to_thread(post_telemetry, server, device.token, {"temperature": 1})
        await nothing_before_barrier(ws)


async def test_attributes_of_one_scope_or_of_all(server: ServerThread) -> None:
    device = server.add_device("ws-api-attrs")
    attributes = server.server.attributes
    server.call(attributes.update_shared(device, {"interval": 15}))
    async with connect(url(server)) as ws:
        shared = {
            "type": "ATTRIBUTES",
            "cmdId": 2,
            "entityType": "DEVICE",
            "entityId": device.id,
            "scope": "SHARED_SCOPE",
            "keys": "interval",
        }
        every = {k: v for k, v in shared.items() if k not in ("scope", "keys")} | {"cmdId": 3}
        await ws.send(first_message(jwt_of(server), shared, every))
        first = await receive(ws)
        assert first["subscriptionId"] == 2 and [v for _, v in first["data"]["interval"]] == ["15"]
        assert (await receive(ws))["data"].keys() == {"interval"}  # no scope: all of them
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{server.base_url}/api/v1/{device.token}/attributes", json={"firmware": "1.2"}
            )
        assert response.status_code == 200
        firmware = await receive(ws)  # a client attribute: only the all-scopes subscription
        assert firmware["subscriptionId"] == 3
        assert [v for _, v in firmware["data"]["firmware"]] == ["1.2"]
        server.call(attributes.update_shared(device, {"interval": 30}))
        updates = [await receive(ws), await receive(ws)]
        assert sorted(u["subscriptionId"] for u in updates) == [2, 3]
        assert all([v for _, v in u["data"]["interval"]] == ["30"] for u in updates)


def entity_data(cmd_id: int, entity_filter: Doc) -> Doc:
    """What entity-data-subscription.ts sends for a paginated widget of devices."""
    latest = [{"type": "ATTRIBUTE", "key": "firmware"}, {"type": "TIME_SERIES", "key": "temp"}]
    return {
        "type": "ENTITY_DATA",
        "cmdId": cmd_id,
        "query": {
            "entityFilter": entity_filter,
            "pageLink": {
                "pageSize": 10,
                "page": 0,
                "sortOrder": {
                    "key": {"type": "ENTITY_FIELD", "key": "createdTime"},
                    "direction": "DESC",
                },
            },
            "entityFields": [
                {"type": "ENTITY_FIELD", "key": "name"},
                {"type": "ENTITY_FIELD", "key": "label"},
                {"type": "ENTITY_FIELD", "key": "additionalInfo"},
            ],
            "latestValues": latest,
        },
        "latestCmd": {"keys": latest},
    }


async def test_entity_data_page_then_live_latest_values(server: ServerThread) -> None:
    a = server.add_device("ws-api-a", type="thermo", label="Kitchen")
    b = server.add_device("ws-api-b", type="thermo")
    other = server.add_device("ws-api-other", type="lamp")
    server.call(server.server.store.write([(a.key, "temp", 5000, 19.5)], []))
    by_type = {"type": "deviceType", "deviceTypes": ["thermo"], "deviceNameFilter": ""}
    async with connect(url(server)) as ws:
        await ws.send(first_message(jwt_of(server), entity_data(4, by_type)))
        first = await receive(ws)
        assert (first["cmdId"], first["cmdUpdateType"], first["errorCode"]) == (4, "ENTITY_DATA", 0)
        assert first["update"] is None
        page = first["data"]
        assert (page["totalElements"], page["totalPages"], page["hasNext"]) == (2, 1, False)
        ids = [e["entityId"] for e in page["data"]]
        assert ids == [{"entityType": "DEVICE", "id": d.id} for d in (b, a)]  # newest first
        latest = page["data"][1]["latest"]
        fields = {k: v["value"] for k, v in latest["ENTITY_FIELD"].items()}
        assert fields == {"name": "ws-api-a", "label": "Kitchen", "additionalInfo": ""}
        assert latest["TIME_SERIES"] == {"temp": {"ts": 5000, "value": "19.5"}}
        assert latest["ATTRIBUTE"] == {"firmware": {"ts": 0, "value": ""}}

        mqtt = MqttDevice(server.mqtt_port, a.token)
        try:
            await asyncio.to_thread(mqtt.publish, "v1/devices/me/telemetry", '{"temp": 22.5}')
            update = await receive(ws)
        finally:
            mqtt.close()
        assert update["data"] is None and update["cmdUpdateType"] == "ENTITY_DATA"
        [changed] = update["update"]
        assert changed["entityId"] == {"entityType": "DEVICE", "id": a.id}
        sent = changed["latest"]["TIME_SERIES"]["temp"]
        assert sent["value"] == "22.5"
        # older than the value sent: stale; the same ts and value again: a duplicate
        # (ThingsBoard's sendLatestWsMsg drops both)
        stale = {"ts": 1000, "values": {"temp": 3}}
        again = {"ts": sent["ts"], "values": {"temp": 22.5}}
        for values in (stale, again):
            await asyncio.to_thread(post_telemetry, server, a.token, values)
        await nothing_before_barrier(ws)
        await asyncio.to_thread(post_telemetry, server, other.token, {"temp": 1})
        await nothing_before_barrier(ws)  # a device not on the page sends nothing

        one = {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": b.id}}
        listed = {"type": "entityList", "entityType": "DEVICE", "entityList": [a.id, other.id]}
        await ws.send(cmds(entity_data(11, one), entity_data(12, listed)))
        single, in_list = await receive(ws), await receive(ws)
        assert [e["entityId"]["id"] for e in single["data"]["data"]] == [b.id]
        assert [e["entityId"]["id"] for e in in_list["data"]["data"]] == [other.id, a.id]
        await ws.send(cmds(*({"type": "ENTITY_DATA_UNSUBSCRIBE", "cmdId": i} for i in (11, 12))))

        await ws.send(cmds({"type": "ENTITY_DATA_UNSUBSCRIBE", "cmdId": 4}))
        await asyncio.to_thread(post_telemetry, server, a.token, {"temp": 2})
        await nothing_before_barrier(ws)
        assert server.on_loop(server.server.live.subscriber_count) == 0


def alarm_data(cmd_id: int) -> Doc:
    """What alarm-data-subscription.ts sends for an alarm table in realtime mode."""
    return {
        "type": "ALARM_DATA",
        "cmdId": cmd_id,
        "query": {
            "entityFilter": {"type": "entityType", "entityType": "DEVICE"},
            "pageLink": {
                "page": 0,
                "pageSize": 10,
                "textSearch": None,
                "searchPropagatedAlarms": False,
                "statusList": [],
                "severityList": [],
                "typeList": [],
                "sortOrder": {
                    "key": {"type": "ALARM_FIELD", "key": "createdTime"},
                    "direction": "DESC",
                },
                "timeWindow": 86_400_000,
            },
            "keyFilters": [],
            "alarmFields": [
                {"type": "ALARM_FIELD", "key": "createdTime"},
                {"type": "ALARM_FIELD", "key": "originator"},
                {"type": "ALARM_FIELD", "key": "type"},
                {"type": "ALARM_FIELD", "key": "severity"},
                {"type": "ALARM_FIELD", "key": "status"},
            ],
            "entityFields": [{"type": "ENTITY_FIELD", "key": "name"}],
            "latestValues": [{"type": "TIME_SERIES", "key": "temperature"}],
        },
    }


def alarm_count(cmd_id: int) -> Doc:
    """entity-data-subscription.ts: an AlarmCountCmd with the widget's alarm filter."""
    return {
        "type": "ALARM_COUNT",
        "cmdId": cmd_id,
        "query": {
            "entityFilter": {"type": "entityType", "entityType": "DEVICE"},
            "keyFilters": [],
            "statusList": ["ACTIVE"],
        },
    }


async def test_alarm_data_and_count_follow_a_rule_raising_acknowledging_clearing(
    server: ServerThread,
) -> None:
    device = server.add_device("ws-api-alarms")
    rest = httpx.AsyncClient(base_url=server.base_url, headers=login(server), timeout=30)
    rule = {
        "key": "temperature",
        "condition": {"op": ">", "value": 30},
        "severity": "CRITICAL",
        "alarmType": "High temperature",
    }
    assert (await rest.post("/api/alarmRule", json=rule)).status_code == 200
    async with connect(url(server)) as ws:
        await ws.send(first_message(jwt_of(server), alarm_data(5), alarm_count(6)))
        first, count = await each(ws, of(5), of(6))
        assert (first["cmdUpdateType"], first["data"]["data"], first["update"]) == (
            "ALARM_DATA",
            [],
            None,
        )
        assert first["totalEntities"] == 1
        assert (count["cmdUpdateType"], count["count"]) == ("ALARM_COUNT_DATA", 0)

        await asyncio.to_thread(post_telemetry, server, device.token, {"temperature": 35})
        raised, count = await each(ws, lambda d: of(5)(d) and d["data"] is not None, of(6))
        assert count["count"] == 1
        [alarm] = raised["data"]["data"]
        assert (alarm["type"], alarm["severity"], alarm["status"]) == (
            "High temperature",
            "CRITICAL",
            "ACTIVE_UNACK",
        )
        assert alarm["entityId"] == alarm["originator"] == {"entityType": "DEVICE", "id": device.id}
        assert alarm["latest"]["ENTITY_FIELD"]["name"]["value"] == "ws-api-alarms"
        assert alarm["latest"]["TIME_SERIES"]["temperature"]["value"] == "35"

        assert (await rest.post(f"/api/alarm/{alarm['id']['id']}/ack")).status_code == 200
        acked = await until(ws, of(5))
        assert acked["data"] is None and acked["update"][0]["status"] == "ACTIVE_ACK"
        assert (await rest.post(f"/api/alarm/{alarm['id']['id']}/clear")).status_code == 200
        cleared, count = await each(ws, lambda d: of(5)(d) and d["update"] is not None, of(6))
        assert cleared["update"][0]["status"] == "CLEARED_ACK" and count["count"] == 0

        await ws.send(
            cmds(
                {"type": "ALARM_DATA_UNSUBSCRIBE", "cmdId": 5},
                {"type": "ALARM_COUNT_UNSUBSCRIBE", "cmdId": 6},
            )
        )
        await asyncio.to_thread(post_telemetry, server, device.token, {"temperature": 36})
        server.call(server.server.alarms.settled())
        await nothing_before_barrier(ws)
    await rest.aclose()


async def test_a_falsy_value_of_the_wrong_type_is_refused_not_taken_for_absent(
    server: ServerThread,
) -> None:
    """`keyFilters: {}` counted every device, as if no filter had been sent; null is what
    stands for absent."""
    device = server.add_device("ws-api-falsy")
    wrong: list[tuple[str, Any]] = [
        ("keyFilters", {}),
        ("keyFilters", False),
        ("latestValues", 0),
        ("entityFields", ""),
    ]
    refused = []
    for i, (name, value) in enumerate(wrong, start=1):
        cmd = entity_data(i, {"type": "entityType", "entityType": "DEVICE"})
        cmd["query"][name] = value
        refused.append(cmd)
    listed = entity_count(5)
    listed["query"]["entityFilter"] = {"type": "entityList", "entityType": "DEVICE"}
    listed["query"]["entityFilter"]["entityList"] = {}
    previous = with_query(series_cmd(6, "historyCmd", ["t"], startTs=0), [device.id])
    previous["historyCmd"]["fetchLatestPreviousPoint"] = 0
    nulls = entity_data(7, {"type": "entityType", "entityType": "DEVICE"})
    nulls["query"] |= {"keyFilters": None, "latestValues": None}
    nulls["query"]["pageLink"]["dynamic"] = None
    async with connect(url(server)) as ws:
        await ws.send(first_message(jwt_of(server), *refused, listed, previous, nulls))
        replies = [await receive(ws) for _ in range(7)]
        assert [(r["subscriptionId"], r["errorCode"]) for r in replies[:6]] == [
            (i, 2) for i in range(1, 7)
        ]
        assert "keyFilters must be a list" in replies[0]["errorMsg"]
        assert (replies[6]["cmdId"], replies[6]["errorCode"]) == (7, 0)
        assert page_ids(replies[6]) == [device.id]
        await nothing_before_barrier(ws)


async def test_an_alarm_window_at_the_end_of_time_counts_nothing(server: ServerThread) -> None:
    """startTs + timeWindow, each at most 2**62, went past SQLite's 64-bit integers: the
    store's OverflowError ended the socket with a traceback."""
    server.add_device("ws-api-far")  # with no device no alarm is looked for
    far = {"startTs": 2**62, "timeWindow": 2**62}
    count = alarm_count(1)
    count["query"] |= far
    page = alarm_data(2)
    page["query"]["pageLink"] |= far
    async with connect(url(server)) as ws:
        await ws.send(first_message(jwt_of(server), count, page))
        counted, paged = await each(ws, of(1), of(2))
        assert (counted["cmdUpdateType"], counted["count"]) == ("ALARM_COUNT_DATA", 0)
        assert (paged["cmdUpdateType"], paged["data"]["data"]) == ("ALARM_DATA", [])
        await nothing_before_barrier(ws)


async def test_unknown_or_unsupported_commands_get_an_error_and_the_socket_stays(
    server: ServerThread,
) -> None:
    device = server.add_device("ws-api-errors")
    async with connect(url(server)) as ws:
        await ws.send(
            first_message(
                jwt_of(server),
                {"type": "NOTIFICATIONS", "cmdId": 7, "limit": 10},
                {**entity_data(8, {"type": "assetType", "assetTypes": ["x"]})},
                {"type": "ENTITY_DATA", "cmdId": 9},
                timeseries(10, device.id, "t"),
            )
        )
        unknown, other_filter, no_query, works = [await receive(ws) for _ in range(4)]
        assert (unknown["subscriptionId"], unknown["errorCode"]) == (7, 2)
        assert "TIMESERIES" in unknown["errorMsg"]  # says what tinyboard answers
        assert other_filter["subscriptionId"] == 8 and "singleEntity" in other_filter["errorMsg"]
        assert (no_query["subscriptionId"], no_query["errorMsg"]) == (9, "Query is empty!")
        assert (works["subscriptionId"], works["errorCode"]) == (10, 0)
        bad_page = alarm_data(13)
        bad_page["query"]["pageLink"]["pageSize"] = 0
        await ws.send(cmds(bad_page, {"cmdId": 14}, {"type": "ALARM_COUNT", "cmdId": 15}))
        replies = [await receive(ws) for _ in range(3)]
        assert [(r["subscriptionId"], r["errorCode"]) for r in replies] == [
            (13, 2),
            (14, 2),
            (15, 2),
        ]
        assert "pageSize" in replies[0]["errorMsg"] and replies[2]["errorMsg"] == "Query is empty!"
        await ws.send('{"cmds": {}}')
        assert (await receive(ws))["subscriptionId"] == 0


async def test_a_value_nested_too_deep_to_quote_is_refused_and_the_socket_stays(
    server: ServerThread,
) -> None:
    """The error message quotes the refused value; one nested deeper than orjson writes (255
    levels) ended the socket with a traceback."""
    device = server.add_device("ws-api-deep")
    start = {**timeseries(1, device.id, "t"), "startTs": "<list>"}
    count = entity_count(2)
    count["query"]["keyFilters"] = [
        key_filter("TIME_SERIES", "t", "NUMERIC", numeric("LESS", "<object>"))  # type: ignore[arg-type]
    ]
    deep = {'"<list>"': "[" * 300 + "]" * 300, '"<object>"': '{"a":' * 300 + "1" + "}" * 300}
    message = cmds(start, count)
    for placeholder, value in deep.items():
        message = message.replace(placeholder, value)
    async with connect(url(server)) as ws:
        await ws.send(first_message(jwt_of(server)))
        await ws.send(message)
        replies = [await receive(ws), await receive(ws)]
        assert [(r["subscriptionId"], r["errorCode"]) for r in replies] == [(1, 2), (2, 2)]
        assert all("nested over 255 deep" in r["errorMsg"] for r in replies), replies
        await nothing_before_barrier(ws)


async def test_a_socket_that_never_authenticates_is_closed(server: ServerThread) -> None:
    async with connect(url(server)) as ws:
        code, reason, messages = await closed_with(ws)  # ThingsBoard's auth_timeout_ms: 10 s
    assert (code, messages) == (1008, []) and "no authCmd" in reason


@pytest.mark.parametrize("endpoint", ["/api/ws", "/api/ws/plugins/telemetry"])
async def test_a_changed_password_or_a_deleted_user_closes_an_open_socket(
    server: ServerThread, endpoint: str
) -> None:
    """Both endpoints share the recheck: one is shown a password change, the other the
    user's removal."""
    token, (email, _) = jwt_of(server), server.admin
    store = server.server.store
    count = entity_count(1)
    if endpoint == "/api/ws":
        socket = connect(url(server))
        first, revoke, why = first_message(token, count), store.set_password_hash, "password"
    else:  # any answer (here an error) shows the socket is served
        socket = connect(f"ws://127.0.0.1:{server.http_port}{endpoint}?token={token}")
        first = orjson.dumps({"tsSubCmds": [timeseries(1, "nope", "t")]}).decode()
        revoke, why = lambda email, _: store.delete_user(email), "no longer exists"
    async with socket as ws:
        await ws.send(first)
        assert of(1)(await receive(ws))  # authenticated, served
        server.call(revoke(email, "another hash"))
        code, reason, messages = await closed_with(ws)
    assert (code, messages) == (1008, []) and why in reason


def series_cmd(cmd_id: int, part: str, keys: list[str], **window: Any) -> Doc:
    """The historyCmd or tsCmd entity-data-subscription.ts (prepareSubscriptionCommands)
    builds for a chart or table widget, without the query (the UI sends one so when the
    time window changes)."""
    spec: Doc = {
        "keys": keys,
        "interval": 0,
        "intervalType": "MILLISECONDS",
        "limit": 50000,
        "timeZoneId": "Europe/Kiev",
        "agg": "NONE",
        "fetchLatestPreviousPoint": False,
    }
    return {"type": "ENTITY_DATA", "cmdId": cmd_id, part: {**spec, **window}}


def with_query(cmd: Doc, device_ids: list[str]) -> Doc:
    """The first ENTITY_DATA of a widget: its query (entity-data-subscription.ts) too."""
    listed = {"type": "entityList", "entityType": "DEVICE", "entityList": device_ids}
    query = entity_data(cmd["cmdId"], listed)["query"]
    query["latestValues"] = []
    return {**cmd, "query": query}


def series_of(entities: list[Doc], device_id: str) -> Doc:
    [found] = [e for e in entities if e["entityId"]["id"] == device_id]
    series: Doc = found["timeseries"]
    return series


async def test_entity_data_history_of_two_devices_then_a_new_window(server: ServerThread) -> None:
    a = server.add_device("ws-api-hist-a")
    b = server.add_device("ws-api-hist-b")
    readings = [(a.key, "temp", ts, ts // 1000) for ts in (500, 1000, 2000, 3000)]
    readings += [(b.key, "temp", 1500, 10), (b.key, "temp", 20_000, 99), (b.key, "hum", 1600, 40)]
    server.call(server.server.store.write(readings, []))
    history = series_cmd(21, "historyCmd", ["temp", "hum"], startTs=1000, endTs=10_000)
    async with connect(url(server)) as ws:
        await ws.send(first_message(jwt_of(server), with_query(history, [a.id, b.id])))
        first = await receive(ws)
        assert (first["cmdId"], first["errorCode"], first["update"]) == (21, 0, None)
        entities = first["data"]["data"]
        assert series_of(entities, a.id) == {  # ThingsBoard's TsValue: text, newest first
            "temp": [
                {"ts": 3000, "value": "3"},
                {"ts": 2000, "value": "2"},
                {"ts": 1000, "value": "1"},
            ],
            "hum": [],
        }
        assert series_of(entities, b.id) == {
            "temp": [{"ts": 1500, "value": "10"}],
            "hum": [{"ts": 1600, "value": "40"}],
        }

        # the time window changed: same cmdId, only a historyCmd; the page is already out
        moved = series_cmd(21, "historyCmd", ["temp"], startTs=2500, endTs=10_000)
        moved["historyCmd"]["fetchLatestPreviousPoint"] = True
        await ws.send(cmds(moved))
        update = await receive(ws)
        assert (update["cmdId"], update["data"]) == (21, None)
        assert series_of(update["update"], a.id) == {
            "temp": [{"ts": 3000, "value": "3"}, {"ts": 2000, "value": "2"}]
        }
        assert series_of(update["update"], b.id) == {"temp": [{"ts": 1500, "value": "10"}]}


async def test_entity_data_ts_cmd_window_then_live_points_with_latest(
    server: ServerThread,
) -> None:
    device = server.add_device("ws-api-tscmd")
    now = time.time_ns() // 1_000_000
    server.call(server.server.store.write([(device.key, "temp", now - 5000, 5)], []))
    live = series_cmd(31, "tsCmd", ["temp"], startTs=now - 60_000, timeWindow=60_000)
    first_cmd = with_query(live, [device.id])
    first_cmd["latestCmd"] = {"keys": [{"type": "TIME_SERIES", "key": "temp"}]}
    async with connect(url(server)) as ws:
        await ws.send(first_message(jwt_of(server), first_cmd))
        first = await receive(ws)
        [entity] = first["data"]["data"]
        assert entity["timeseries"] == {"temp": [{"ts": now - 5000, "value": "5"}]}
        assert entity["latest"]["TIME_SERIES"]["temp"] == {"ts": now - 5000, "value": "5"}

        mqtt = MqttDevice(server.mqtt_port, device.token)
        try:
            await asyncio.to_thread(
                mqtt.publish, "v1/devices/me/telemetry", '{"temp": 6, "other": 1}'
            )
            update = await receive(ws)
        finally:
            mqtt.close()
        assert (update["cmdUpdateType"], update["data"]) == ("ENTITY_DATA", None)
        [changed] = update["update"]
        assert changed["entityId"] == {"entityType": "DEVICE", "id": device.id}
        [point] = changed["timeseries"]["temp"]
        assert point["value"] == "6" and set(changed["timeseries"]) == {"temp"}
        assert changed["latest"]["TIME_SERIES"]["temp"] == point

        # a point older than one sent is stale for the series (ThingsBoard's keyStates) and
        # for the latest value (sendLatestWsMsg): nothing is sent
        await asyncio.to_thread(
            post_telemetry, server, device.token, {"ts": now - 4000, "values": {"temp": 4}}
        )
        await nothing_before_barrier(ws)

        # a new window for the same cmdId: its points as an update, then live as before
        moved = series_cmd(31, "tsCmd", ["temp"], startTs=now - 4500, timeWindow=60_000)
        await ws.send(cmds(moved))
        window = await receive(ws)
        assert window["data"] is None
        assert [p["value"] for p in window["update"][0]["timeseries"]["temp"]] == ["6", "4"]
        await asyncio.to_thread(post_telemetry, server, device.token, {"temp": 7})
        again = await until(ws, of(31))
        assert [p["value"] for p in again["update"][0]["timeseries"]["temp"]] == ["7"]

        await ws.send(cmds({"type": "ENTITY_DATA_UNSUBSCRIBE", "cmdId": 31}))
        await asyncio.to_thread(post_telemetry, server, device.token, {"temp": 8})
        await nothing_before_barrier(ws)


async def test_entity_data_history_aggregation_matches_the_rest_route(
    server: ServerThread,
) -> None:
    device = server.add_device("ws-api-agg")
    values = [(1000, 1), (1500, 2), (2500, 6), (3000, 7.5), (5999, 10)]
    server.call(server.server.store.write([(device.key, "temp", ts, v) for ts, v in values], []))
    window: Doc = {"startTs": 0, "endTs": 6000, "interval": 2000, "agg": "AVG", "limit": 1}
    history = series_cmd(41, "historyCmd", ["temp"], **window)
    async with connect(url(server)) as ws:
        await ws.send(first_message(jwt_of(server), with_query(history, [device.id])))
        [entity] = (await receive(ws))["data"]["data"]
    async with httpx.AsyncClient(base_url=server.base_url, headers=login(server)) as rest:
        response = await rest.get(
            f"/api/plugins/telemetry/DEVICE/{device.id}/values/timeseries",
            params={"keys": "temp", **window},
        )
    assert response.status_code == 200, response.text
    assert entity["timeseries"] == response.json()
    assert [p["ts"] for p in entity["timeseries"]["temp"]] == [5000, 3000, 1000]  # every bucket


@pytest.fixture
def small_answers(tmp_path: Path) -> Iterator[ServerThread]:
    """A server whose WebSocket answers hold at most 10 points (`--ws-max-points 10`)."""
    with running(tmp_path / "data", ws_max_points=10) as server:
        yield server


async def test_entity_data_history_over_the_points_limit_is_refused_whole(
    small_answers: ServerThread,
) -> None:
    server = small_answers
    a, b = server.add_device("ws-api-cap-a"), server.add_device("ws-api-cap-b")
    readings = [(d.key, "temp", ts, ts) for d in (a, b) for ts in range(1000, 7000, 1000)]
    server.call(server.server.store.write(readings, []))
    both = [a.id, b.id]
    async with connect(url(server)) as ws:
        # 2 devices x 6 points: over 10, so nothing of it is sent
        too_many = series_cmd(51, "historyCmd", ["temp"], startTs=0, endTs=10_000)
        await ws.send(first_message(jwt_of(server), with_query(too_many, both)))
        refused = await receive(ws)
        assert (refused["subscriptionId"], refused["errorCode"]) == (51, 2)
        assert "more than 10 points" in refused["errorMsg"]
        assert refused["data"] == {}

        # 2 x 5 points fits exactly
        fits = series_cmd(52, "historyCmd", ["temp"], startTs=0, endTs=10_000, limit=5)
        await ws.send(cmds(with_query(fits, both)))
        answered = await receive(ws)
        assert answered["cmdId"] == 52 and answered["errorCode"] == 0
        counts = [len(series_of(answered["data"]["data"], d)["temp"]) for d in both]
        assert counts == [5, 5]

        # buckets count as points: 2 x 6 one-second buckets with data
        buckets = series_cmd(53, "historyCmd", ["temp"], startTs=0, endTs=10_000, limit=1)
        buckets["historyCmd"].update(agg="AVG", interval=1000)
        await ws.send(cmds(with_query(buckets, both)))
        assert (await receive(ws))["errorMsg"].startswith("this command's answer")

        # a new window too big for an open command ends it: no live updates afterwards
        wide = series_cmd(52, "historyCmd", ["temp"], startTs=0, endTs=10_000)
        await ws.send(cmds(wide))
        assert (await until(ws, of(52)))["errorCode"] == 2
        await asyncio.to_thread(post_telemetry, server, a.token, {"temp": 1})
        await nothing_before_barrier(ws)


@pytest.fixture
def quick_pages(tmp_path: Path) -> Iterator[ServerThread]:
    """A server that runs dynamic pages' queries every 0.2 s (`--ws-page-refresh 0.2`)."""
    with running(tmp_path / "data", ws_page_refresh=0.2) as server:
        yield server


def dynamic(cmd: Doc) -> Doc:
    """The entities table widget's query: `pageLink.dynamic` true."""
    cmd["query"]["pageLink"]["dynamic"] = True
    return cmd


def page_ids(doc: Doc) -> list[str]:
    return [e["entityId"]["id"] for e in doc["data"]["data"]]


async def test_a_dynamic_page_follows_devices_that_come_and_go(quick_pages: ServerThread) -> None:
    server = quick_pages
    first = server.add_device("ws-dyn-a", type="thermo")
    by_type = {"type": "deviceType", "deviceTypes": ["thermo"], "deviceNameFilter": ""}
    async with connect(url(server)) as ws:
        fixed = entity_data(2, by_type)
        await ws.send(first_message(jwt_of(server), dynamic(entity_data(1, by_type)), fixed))
        page, static = await each(ws, of(1), of(2))
        assert page_ids(page) == page_ids(static) == [first.id]
        # a key added later (latestCmd for the open cmdId) is followed on the next pages too
        hum = {
            "type": "ENTITY_DATA",
            "cmdId": 1,
            "latestCmd": {"keys": [{"type": "TIME_SERIES", "key": "hum"}]},
        }
        await ws.send(cmds(hum))
        assert (await until(ws, of(1)))["update"] is not None

        second = server.add_device("ws-dyn-b", type="thermo", label="new")
        again = await until(ws, lambda d: of(1)(d) and d["data"] is not None, timeout=10)
        assert (again["cmdUpdateType"], again["update"]) == ("ENTITY_DATA", None)
        assert page_ids(again) == [second.id, first.id]  # newest first, as asked
        entity = again["data"]["data"][0]
        assert entity["latest"]["ENTITY_FIELD"]["label"]["value"] == "new"
        assert set(entity["latest"]["TIME_SERIES"]) == {"temp", "hum"}

        await asyncio.to_thread(post_telemetry, server, second.token, {"hum": 40})
        live = await until(ws, lambda d: of(1)(d) and d["update"] is not None)
        [changed] = live["update"]
        assert changed["entityId"]["id"] == second.id
        assert changed["latest"]["TIME_SERIES"]["hum"]["value"] == "40"

        server.call(server.server.store.delete_device(first.id))
        gone = await until(ws, lambda d: of(1)(d) and d["data"] is not None, timeout=10)
        assert page_ids(gone) == [second.id]
        # the page without pageLink.dynamic stays as it was asked for
        await asyncio.to_thread(post_telemetry, server, second.token, {"temp": 1})
        await asyncio.sleep(0.5)
        while True:
            doc = await receive(ws)
            assert doc["cmdId"] != 2, f"the static page changed: {doc}"
            if doc["cmdId"] == 1 and doc["update"]:
                break

        await ws.send(cmds({"type": "ENTITY_DATA_UNSUBSCRIBE", "cmdId": 1}))
        await nothing_before_barrier(ws)
        server.add_device("ws-dyn-c", type="thermo")
        await asyncio.sleep(0.6)  # three refresh intervals: an ended page sends nothing
        await nothing_before_barrier(ws)


async def test_dynamic_pages_per_connection_are_bounded(quick_pages: ServerThread) -> None:
    server = quick_pages
    every = {"type": "entityType", "entityType": "DEVICE"}
    async with connect(url(server)) as ws:
        pages = [dynamic(entity_data(i, every)) for i in range(1, 12)]
        await ws.send(first_message(jwt_of(server), *pages))
        answers = [await until(ws, of(i)) for i in range(1, 12)]
        assert all(a["errorCode"] == 0 for a in answers[:10])
        assert answers[10]["errorCode"] == 2 and "at most 10 dynamic" in answers[10]["errorMsg"]
        # renewing an open cmdId replaces its page, so it is not refused
        await ws.send(cmds(dynamic(entity_data(5, every))))
        assert (await until(ws, of(5)))["errorCode"] == 0
        bad = dynamic(entity_data(20, every))
        bad["query"]["pageLink"]["dynamic"] = "yes"
        await ws.send(cmds(bad))
        assert "dynamic must be true or false" in (await until(ws, of(20)))["errorMsg"]


def key_filter(kind: str, key: str, value_type: str, predicate: Doc) -> Doc:
    """A KeyFilter as the UI sends it from an alias's filter (query.models.ts)."""
    return {"key": {"type": kind, "key": key}, "valueType": value_type, "predicate": predicate}


def numeric(operation: str, value: float) -> Doc:
    return {"type": "NUMERIC", "operation": operation, "value": {"defaultValue": value}}


async def test_key_filters_select_devices_by_their_values(quick_pages: ServerThread) -> None:
    server = quick_pages
    warm = server.add_device("kf-warm", label="Kitchen")
    cold = server.add_device("kf-cold", label="kitchen")
    server.add_device("kf-none", label="Kitchen")  # no temp at all: never matches
    hall = server.add_device("kf-hall", label="Hall")
    readings = [
        (warm.key, "temp", 1000, 24.5),
        (cold.key, "temp", 1000, 12),
        (hall.key, "temp", 1000, 30),
    ]
    server.call(server.server.store.write(readings, []))
    kitchen = {
        "type": "STRING",
        "operation": "STARTS_WITH",
        "value": {"defaultValue": "kit"},
        "ignoreCase": True,
    }
    filters = [
        key_filter("ENTITY_FIELD", "label", "STRING", kitchen),
        key_filter("TIME_SERIES", "temp", "NUMERIC", numeric("GREATER", 20)),
    ]
    every = {"type": "entityType", "entityType": "DEVICE"}
    page = dynamic(entity_data(1, every))
    page["query"]["keyFilters"] = filters
    count = entity_count(2)
    count["query"]["keyFilters"] = filters
    not_five = entity_count(3)
    not_five["query"]["keyFilters"] = [
        key_filter("TIME_SERIES", "temp", "NUMERIC", numeric("NOT_EQUAL", 5))
    ]
    async with connect(url(server)) as ws:
        await ws.send(first_message(jwt_of(server), page, count, not_five))
        first, counted, others = await each(ws, of(1), of(2), of(3))
        assert page_ids(first) == [warm.id]
        assert (counted["count"], others["count"]) == (1, 3)  # kf-none has no temp to differ

        # a value that comes to pass the filter brings its device onto the dynamic page
        await asyncio.to_thread(post_telemetry, server, cold.token, {"temp": 21})
        joined = await until(ws, lambda d: of(1)(d) and d["data"] is not None, timeout=10)
        assert sorted(page_ids(joined)) == sorted([warm.id, cold.id])

        bad = entity_count(4)
        bad["query"]["keyFilters"] = [
            key_filter("TIME_SERIES", "temp", "NUMERIC", numeric("ABOVE", 1))
        ]
        await ws.send(cmds(bad))
        refused = await until(ws, of(4))
        assert refused["errorCode"] == 2 and "operation is one of" in refused["errorMsg"]
