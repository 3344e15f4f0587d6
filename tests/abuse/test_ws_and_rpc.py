"""REST RPC to devices that drop out, pushes to vanished devices, and WebSocket clients that
send garbage or stop reading (issue 13, point 14 and the WebSocket half of point 7)."""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import ClientConnection, connect

from tests.helpers import ServerThread
from tests.web_helpers import login
from tinyboard.core.models import Device
from tinyboard.web import ws, ws_commands


class SilentDevice:
    """A paho device that receives but never acknowledges (manual ack, never given): its
    QoS 1 messages stay in flight on the server until it disconnects."""

    def __init__(self, server: ServerThread, device: Device, topic: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, manual_ack=True)
        self.client.username_pw_set(device.token)
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", server.mqtt_port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(10), "no SUBACK"

    def drop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait_for(condition: Any, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


# -- REST RPC --------------------------------------------------------------------------------
# ThingsBoard's RpcV2Controller (/api/rpc) answers 504 for both NO_ACTIVE_CONNECTION and
# TIMEOUT; the deprecated RpcV1Controller (/api/plugins/rpc) 409 and 408.
RPC_ROUTES = [
    ("/api/rpc/oneway", 504, 504),
    ("/api/rpc/twoway", 504, 504),
    ("/api/plugins/rpc/oneway", 409, 408),
    ("/api/plugins/rpc/twoway", 409, 408),
]


def _assert_tb_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and isinstance(body["errorCode"], int)
    assert body["message"] and isinstance(body["timestamp"], int)


@pytest.mark.parametrize(("path", "offline", "_timeout"), RPC_ROUTES)
def test_rpc_to_a_device_that_drops_mid_call_is_answered_as_thingsboard_does(
    server: ServerThread,
    caplog: pytest.LogCaptureFixture,
    path: str,
    offline: int,
    _timeout: int,
) -> None:
    caplog.set_level(logging.INFO)
    device = server.add_device("dropping")
    silent = SilentDevice(server, device, "v1/devices/me/rpc/request/+")
    headers = login(server)
    answer: queue.Queue[httpx.Response] = queue.Queue()

    def call() -> None:
        url = f"{server.base_url}{path}/{device.id}"
        answer.put(httpx.post(url, json={"method": "reboot"}, headers=headers, timeout=30))

    caller = threading.Thread(target=call)
    caller.start()
    request = silent.messages.get(timeout=10)  # the device has it, but never PUBACKs ...
    assert orjson.loads(request.payload)["method"] == "reboot"
    silent.drop()  # ... and goes away
    caller.join(30)
    response = answer.get(timeout=1)
    _assert_tb_error(response, offline)
    assert "connect" in response.json()["message"]
    _no_tracebacks(caplog)


@pytest.mark.parametrize(("path", "offline", "timeout"), RPC_ROUTES)
def test_rpc_to_an_absent_or_silent_device(
    server: ServerThread, path: str, offline: int, timeout: int
) -> None:
    device = server.add_device("absent")
    headers = login(server)
    url = f"{server.base_url}{path}/{device.id}"
    _assert_tb_error(httpx.post(url, json={"method": "x"}, headers=headers), offline)
    listener = mqtt.Client(CallbackAPIVersion.VERSION2)  # subscribes at QoS 0, never answers
    listener.username_pw_set(device.token)
    subscribed = threading.Event()
    listener.on_subscribe = lambda *_: subscribed.set()
    listener.connect("127.0.0.1", server.mqtt_port)
    listener.loop_start()
    try:
        listener.subscribe("v1/devices/me/rpc/request/+", qos=0)
        assert subscribed.wait(10)
        if "twoway" in path:
            response = httpx.post(url, json={"method": "x", "timeout": 200}, headers=headers)
            _assert_tb_error(response, timeout)
            assert "did not answer" in response.json()["message"]
    finally:
        listener.disconnect()
        listener.loop_stop()


# -- attribute pushes to a vanished device ---------------------------------------------------
def test_unacknowledged_attribute_pushes_leave_no_unretrieved_futures(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    device = server.add_device("vanishing")
    silent = SilentDevice(server, device, "v1/devices/me/attributes")

    async def push_many() -> None:
        push = server.server.attributes.update_shared
        await asyncio.gather(*(push(device, {"n": i}) for i in range(2000)))

    server.call(push_many())
    _wait_for(lambda: silent.messages.qsize() >= 2000, "the device did not get 2,000 pushes")
    silent.drop()
    _wait_for(
        lambda: not server.on_loop(lambda: server.server.hub.is_connected(device.id)),
        "the server did not notice the device left",
    )
    server.on_loop(gc.collect)  # unretrieved futures are reported when collected
    gc.collect()
    server.call(asyncio.sleep(0.1))  # let the loop run what collection scheduled
    never = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert not never, f"{len(never)} x {never[0].getMessage()[:200]}"
    assert sum(r.name == "asyncio" for r in caplog.records) == 0
    noisy = [r for r in caplog.records if r.levelno > logging.DEBUG and "vanishing" in str(r)]
    assert not noisy


# -- WebSocket: malformed commands -----------------------------------------------------------
WS_PATH = "/api/ws/plugins/telemetry"
POINTS = 300


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, Device]]:
    """One server for the many small WebSocket cases, with a device holding 300 points."""
    running = ServerThread(tmp_path_factory.mktemp("ws") / "data").start()
    try:
        device = running.add_device("ws-abuse")
        readings = [(device.key, "t", ts, ts) for ts in range(1000, 1000 + POINTS)]
        running.call(running.server.store.write(readings, []))
        yield running, device
    finally:
        running.stop()


def ws_url(server: ServerThread) -> str:
    token = login(server)["X-Authorization"].removeprefix("Bearer ")
    return f"ws://127.0.0.1:{server.http_port}{WS_PATH}?token={token}"


async def receive(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
    return doc


def _history(device_id: object, cmd_id: int = 99, **extra: Any) -> str:
    cmd = {"cmdId": cmd_id, "entityId": device_id, "keys": "t", "startTs": 0, "endTs": 10**6}
    return orjson.dumps({"historyCmds": [{**cmd, **extra}]}).decode()


def _ts(**fields: Any) -> dict[str, Any]:
    return {"tsSubCmds": [{"cmdId": 5, "entityId": "<device>", "keys": "t", **fields}]}


def _hist(**fields: Any) -> dict[str, Any]:
    cmd = {"cmdId": 6, "entityId": "<device>", "keys": "t", "startTs": 0, "endTs": 10**6}
    return {"historyCmds": [{**cmd, **fields}]}


def _attr(**fields: Any) -> dict[str, Any]:
    return {"attrSubCmds": [{"cmdId": 7, "entityId": "<device>", **fields}]}


DEEP = "[" * 300 + "]" * 300
# (case, what is sent, the subscriptionId of the error reply: the cmdId, or 0 when unreadable)
MALFORMED: list[tuple[str, Any, int]] = [
    ("startTs text", _ts(startTs="abc"), 5),
    ("startTs 1e30", _ts(startTs=1e30), 5),
    ("startTs negative", _ts(startTs=-5), 5),
    ("timeWindow fraction", _ts(timeWindow=1.5), 5),
    ("history startTs 1e30", _hist(startTs=1e30), 6),
    ("history endTs text", _hist(endTs="later"), 6),
    ("limit -1", _hist(limit=-1), 6),
    ("limit huge", _hist(limit=10**9), 6),
    ("limit text", _hist(limit="all"), 6),
    ("interval text", _hist(interval="x", agg="AVG"), 6),
    ("agg unknown", _hist(agg="MEDIAN", interval=10), 6),
    ("agg number", _hist(agg=5, interval=10), 6),
    ("agg without interval", _hist(agg="AVG"), 6),
    ("keys number", _ts(keys=5), 5),
    ("keys list of numbers", _ts(keys=[1, 2]), 5),
    ("keys object", _hist(keys={"t": 1}), 6),
    ("keys false", _ts(keys=False), 5),  # falsy, but not absent: not every key
    ("keys empty object", _hist(keys={}), 6),
    ("entityId number", _ts(entityId=123), 5),
    ("entityId object", _hist(entityId={"id": "x"}), 6),
    ("entityId missing", {"tsSubCmds": [{"cmdId": 5}]}, 5),
    ("entityId unknown", _ts(entityId="no-such-device"), 5),
    # deeper than orjson writes (255): quoted in the error message without it
    ("entityId nested 300 deep", '{"historyCmds": [{"cmdId": 6, "entityId": ' + DEEP + "}]}", 6),
    ("entityId with NUL", _hist(entityId="a\x00b"), 6),
    ("keys with NUL", _ts(keys="t,\x00"), 5),
    ("entityType", _ts(entityType="ASSET"), 5),
    ("unsubscribe text", _ts(unsubscribe="yes"), 5),
    ("scope unknown", _attr(scope="EVERY_SCOPE"), 7),
    ("scope number", _attr(scope=1), 7),
    ("cmdId text", {"tsSubCmds": [{"cmdId": "x", "entityId": "<device>"}]}, 0),
    ("cmdId negative", {"historyCmds": [{"cmdId": -1, "entityId": "<device>"}]}, 0),
    ("cmdId over int", {"historyCmds": [{"cmdId": 2**40, "entityId": "<device>"}]}, 0),
    ("cmdId bool", {"attrSubCmds": [{"cmdId": True, "entityId": "<device>"}]}, 0),
    ("tsSubCmds number", {"tsSubCmds": 1}, 0),
    ("historyCmds object", {"historyCmds": {"cmdId": 1}}, 0),
    ("command not an object", {"tsSubCmds": [1]}, 0),
    ("not JSON", "not json", 0),
    ("JSON array", "[1, 2]", 0),
    ("JSON nested 5,000 deep", "[" * 5000 + "]" * 5000, 0),
    ("empty text", "", 0),
    ("binary frame", b'{"historyCmds": []}', 0),
    ("huge frame", {"tsSubCmds": [], "pad": "x" * (ws_commands.MAX_COMMAND_BYTES + 1)}, 0),
]


def _wire(payload: Any, device: Device) -> str | bytes:
    if isinstance(payload, str | bytes):
        return payload
    return orjson.dumps(payload).decode().replace('"<device>"', f'"{device.id}"')


@pytest.mark.parametrize(
    ("payload", "cmd_id"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
async def test_a_malformed_command_gets_bad_request_and_the_next_command_works(
    shared: tuple[ServerThread, Device],
    caplog: pytest.LogCaptureFixture,
    payload: Any,
    cmd_id: int,
) -> None:
    server, device = shared
    async with connect(ws_url(server)) as socket:
        await socket.send(_wire(payload, device))
        reply = await receive(socket)
        assert reply["subscriptionId"] == cmd_id, reply
        assert reply["errorCode"] == 2, reply  # ThingsBoard's SubscriptionErrorCode.BAD_REQUEST
        assert isinstance(reply["errorMsg"], str) and reply["errorMsg"], reply
        assert not server.on_loop(server.server.live.subscriber_count)  # nothing half-made
        await socket.send(_history(device.id))
        good = await receive(socket)
        assert good["subscriptionId"] == 99 and good["errorCode"] == 0
        assert len(good["data"]["t"]) == 100  # ThingsBoard's default limit
    _no_tracebacks(caplog)


async def test_nul_in_an_id_or_key_is_a_bad_request_on_each_store(
    server_on_each_store: ServerThread,
) -> None:
    """PostgreSQL cannot even compare a string holding NUL: refused before any query."""
    server = server_on_each_store
    device = server.add_device("nul")
    async with connect(ws_url(server)) as socket:
        await socket.send(_history("a\x00b", cmd_id=4))
        await socket.send(_history(device.id, cmd_id=5, keys="t,\x00"))
        replies = [await receive(socket), await receive(socket)]
        assert [(r["subscriptionId"], r["errorCode"]) for r in replies] == [(4, 2), (5, 2)]


async def test_limit_is_checked_not_taken_as_everything(
    shared: tuple[ServerThread, Device],
) -> None:
    server, device = shared
    async with connect(ws_url(server)) as socket:
        for limit, expected in ((0, 100), (None, 100), (250, 250), (ws_commands.MAX_LIMIT, POINTS)):
            extra = {} if limit is None else {"limit": limit}
            await socket.send(_history(device.id, **extra))
            answer = await receive(socket)
            assert answer["errorCode"] == 0 and len(answer["data"]["t"]) == expected, limit
        await socket.send(_history(device.id, limit=-1))
        refused = await receive(socket)
        assert refused["errorCode"] == 2 and "limit" in refused["errorMsg"]
        assert "data" not in refused or not refused["data"]


async def test_one_message_with_good_and_bad_commands(shared: tuple[ServerThread, Device]) -> None:
    server, device = shared
    message = {
        "tsSubCmds": [
            {"cmdId": 1, "entityId": device.id, "keys": "t"},
            {"cmdId": 2, "entityId": device.id, "startTs": "abc"},
        ],
        "historyCmds": [{"cmdId": 3, "entityId": device.id, "keys": "t", "limit": -1}],
    }
    async with connect(ws_url(server)) as socket:
        await socket.send(orjson.dumps(message).decode())
        replies = {r["subscriptionId"]: r for r in [await receive(socket) for _ in range(3)]}
        assert replies[1]["errorCode"] == 0
        assert replies[1]["data"] == {"t": [[1000 + POINTS - 1, str(1000 + POINTS - 1)]]}
        assert replies[2]["errorCode"] == 2 and replies[3]["errorCode"] == 2


async def test_subscriptions_per_connection_are_bounded(
    shared: tuple[ServerThread, Device],
) -> None:
    server, device = shared
    limit = ws.MAX_SUBSCRIPTIONS

    def subscribe(ids: range) -> str:
        cmds = [{"cmdId": i, "entityId": device.id, "keys": "t"} for i in ids]
        return orjson.dumps({"tsSubCmds": cmds}).decode()

    async with connect(ws_url(server)) as socket:
        for first in range(0, limit, 100):
            await socket.send(subscribe(range(first, first + 100)))
        answers = [await receive(socket) for _ in range(limit)]
        assert all(a["errorCode"] == 0 for a in answers)
        await socket.send(subscribe(range(limit, limit + 1)))
        over = await receive(socket)
        assert over["subscriptionId"] == limit and over["errorCode"] == 2
        assert f"at most {limit}" in over["errorMsg"]
        await socket.send(subscribe(range(7, 8)))  # renewing one replaces it: allowed
        assert (await receive(socket))["errorCode"] == 0
        unsubscribe = {"tsSubCmds": [{"cmdId": 7, "unsubscribe": True}]}
        await socket.send(orjson.dumps(unsubscribe).decode())
        await socket.send(subscribe(range(limit, limit + 1)))  # room again
        assert (await receive(socket))["errorCode"] == 0
        assert server.on_loop(server.server.live.subscriber_count) == limit
    _wait_for(
        lambda: not server.on_loop(server.server.live.subscriber_count),
        "a closed connection left subscriptions behind",
    )


# -- WebSocket: a subscriber that stops reading ----------------------------------------------
def _silent_websocket(server: ServerThread, subscribe: dict[str, Any]) -> socket.socket:
    """A WebSocket client that shakes hands by hand, subscribes, then never reads again (a
    client library would keep reading in the background)."""
    token = login(server)["X-Authorization"].removeprefix("Bearer ")
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {WS_PATH}?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101")
    payload, mask = orjson.dumps(subscribe), os.urandom(4)
    assert len(payload) < 126
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return sock


async def _until(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def _session(server: ServerThread, device: Device, cmd_id: int) -> ws.Session:
    subs = server.on_loop(lambda: server.server.live.subscribers(device.key))
    session: ws.Session = next(s.session for s in subs if s.cmd_id == cmd_id)
    return session


async def test_a_subscriber_that_stops_reading_is_dropped_at_the_byte_bound(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    device = server.add_device("ws-slow")
    live = server.server.live
    size = 20_000
    count = 2 * ws.MAX_PENDING_BYTES // size + 200  # far past the bound, far below 1,000
    count_subscribers = lambda: server.on_loop(live.subscriber_count)  # noqa: E731
    async with connect(ws_url(server), max_size=None) as reader:
        sub = {"cmdId": 2, "entityId": device.id, "keys": "blob,marker"}
        await reader.send(orjson.dumps({"tsSubCmds": [sub]}).decode())
        assert (await receive(reader))["errorCode"] == 0
        slow = _silent_websocket(server, {"tsSubCmds": [{"cmdId": 1, "entityId": device.id}]})
        try:
            await _until(lambda: count_subscribers() == 2, "the slow client did not subscribe")
            fast = _session(server, device, 2)
            received: list[dict[str, Any]] = []

            async def read() -> None:
                while True:
                    received.append(await receive(reader, 60))

            reading = asyncio.create_task(read())
            peak = 0

            async def flood() -> None:
                """On the server's loop: publish big updates, note the most bytes waiting
                for any client, and let the reading client keep up."""
                nonlocal peak
                big = "x" * size
                for i in range(count):
                    live.publish([(device.key, "blob", i, big)], [])
                    sessions = [s.session for s in live.subscribers(device.key)]  # type: ignore[attr-defined]
                    peak = max([peak, *(sum(map(len, s.pending)) for s in sessions)])
                    await _until(lambda: fast.pending_bytes < 1_000_000, "the reader fell behind")

            assert server.loop is not None
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(flood(), server.loop))
            await _until(lambda: count_subscribers() == 1, "the slow client was not dropped")
            assert ws.MAX_PENDING_BYTES // 2 < peak <= ws.MAX_PENDING_BYTES

            # The reader still gets every update, and ingest goes on.
            url = f"{server.base_url}/api/v1/{device.token}/telemetry"
            response = await asyncio.to_thread(httpx.post, url, json={"marker": 1})
            assert response.status_code == 200
            await _until(
                lambda: any("marker" in r["data"] for r in received),
                "the reading client stopped getting updates",
            )
            reading.cancel()
            blobs = [p for r in received for p in r["data"].get("blob", ())]
            assert len(blobs) == count and all(r["errorCode"] == 0 for r in received)
        finally:
            slow.close()
    dropped = [r for r in caplog.records if "stopped reading" in r.getMessage()]
    assert len(dropped) == 1 and dropped[0].levelno == logging.WARNING
    _no_tracebacks(caplog)
