"""Live telemetry over WebSocket (ThingsBoard's legacy command format), with `websockets`."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.helpers import ServerThread, running
from tests.mqtt_clients import Device as MqttDevice
from tests.web_helpers import login

WS_PATH = "/api/ws/plugins/telemetry"


def ws_url(server: ServerThread, token: str) -> str:
    return f"ws://127.0.0.1:{server.http_port}{WS_PATH}?token={token}"


def jwt_of(server: ServerThread) -> str:
    return login(server)["X-Authorization"].removeprefix("Bearer ")


async def receive(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), timeout)
    doc: dict[str, Any] = orjson.loads(message)
    return doc


async def test_missing_or_bad_token_is_refused(server: ServerThread) -> None:
    for token in ("", "garbage"):
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(server, token)):
                pass
        assert info.value.response.status_code == 403


async def test_ts_subscription_gets_latest_then_live_updates(server: ServerThread) -> None:
    device = server.add_device("ws-live")
    server.call(server.server.store.write([(device.key, "temperature", 1000, 20.5)], []))
    async with connect(ws_url(server, jwt_of(server))) as ws:
        await ws.send(
            orjson.dumps(
                {
                    "tsSubCmds": [
                        {
                            "entityType": "DEVICE",
                            "entityId": device.id,
                            "keys": "temperature",
                            "scope": "LATEST_TELEMETRY",
                            "cmdId": 10,
                        }
                    ],
                    "historyCmds": [],
                    "attrSubCmds": [],
                }
            ).decode()
        )
        first = await receive(ws)
        assert first == {
            "subscriptionId": 10,
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
        assert update["subscriptionId"] == 10
        [[ts, value]] = update["data"]["temperature"]
        assert value == "21.5" and abs(ts / 1000 - time.time()) < 30
        assert "other" not in update["data"]  # only the subscribed keys

        await ws.send(orjson.dumps({"tsSubCmds": [{"cmdId": 10, "unsubscribe": True}]}).decode())
        await asyncio.sleep(0.2)
        await asyncio.to_thread(
            httpx.post,
            f"{server.base_url}/api/v1/{device.token}/telemetry",
            json={"temperature": 1},
        )
        with pytest.raises(TimeoutError):
            await receive(ws, timeout=0.5)


async def test_history_and_attribute_commands(server: ServerThread) -> None:
    device = server.add_device("ws-history")
    readings = [(device.key, "t", ts, ts // 1000) for ts in range(0, 10_000, 1000)]
    server.call(server.server.store.write(readings, []))
    async with connect(ws_url(server, jwt_of(server))) as ws:
        await ws.send(
            orjson.dumps(
                {
                    "historyCmds": [
                        {
                            "cmdId": 1,
                            "entityType": "DEVICE",
                            "entityId": device.id,
                            "keys": "t",
                            "startTs": 0,
                            "endTs": 10_000,
                            "interval": 5000,
                            "agg": "MAX",
                        }
                    ],
                    "attrSubCmds": [
                        {
                            "cmdId": 2,
                            "entityType": "DEVICE",
                            "entityId": device.id,
                            "scope": "SHARED_SCOPE",
                        }
                    ],
                }
            ).decode()
        )
        history = await receive(ws)
        assert history["subscriptionId"] == 1
        assert history["data"] == {"t": [[2500, "4"], [7500, "9"]]}
        initial = await receive(ws)
        assert initial == {
            "subscriptionId": 2,
            "errorCode": 0,
            "errorMsg": None,
            "data": {},
            "latestValues": {},
        }
        server.call(server.server.attributes.update_shared(device, {"interval": 15}))
        update = await receive(ws)
        assert update["subscriptionId"] == 2
        assert [v for _, v in update["data"]["interval"]] == ["15"]


async def test_bad_commands_get_error_codes(server: ServerThread) -> None:
    async with connect(ws_url(server, jwt_of(server))) as ws:
        await ws.send("not json")
        assert (await receive(ws))["errorCode"] != 0
        await ws.send(orjson.dumps({"tsSubCmds": [{"cmdId": 3, "entityId": "nope"}]}).decode())
        failure = await receive(ws)
        assert failure["subscriptionId"] == 3 and failure["errorCode"] != 0
        assert "no device" in failure["errorMsg"]


def _raw_websocket(server: ServerThread, token: str) -> socket.socket:
    """A WebSocket client that does the handshake by hand and then never reads: a client
    library would keep reading in the background."""
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {WS_PATH}?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101")
    return sock


def _client_frame(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


async def test_a_slow_subscriber_is_dropped_and_ingestion_goes_on(server: ServerThread) -> None:
    device = server.add_device("ws-slow")
    sock = _raw_websocket(server, jwt_of(server))
    subscribe = {"tsSubCmds": [{"cmdId": 1, "entityType": "DEVICE", "entityId": device.id}]}
    sock.sendall(_client_frame(orjson.dumps(subscribe).decode()))
    deadline = time.monotonic() + 10
    while not server.on_loop(server.server.live.subscriber_count):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    big = "x" * 20_000

    async def flood() -> None:
        live = server.server.live
        for i in range(2500):
            live.publish([(device.key, "blob", i, big)], [])
            if i % 100 == 0:
                await asyncio.sleep(0.01)

    assert server.loop is not None
    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(flood(), server.loop))
    deadline = time.monotonic() + 10
    while server.on_loop(server.server.live.subscriber_count):
        assert time.monotonic() < deadline, "the slow subscriber was not dropped"
        await asyncio.sleep(0.05)
    started = time.monotonic()
    response = await asyncio.to_thread(
        httpx.post, f"{server.base_url}/api/v1/{device.token}/telemetry", json={"ok": 1}
    )
    assert response.status_code == 200 and time.monotonic() - started < 5
    # The server closes its side once the close frame could not be delivered in time.
    sock.close()


async def test_history_over_the_points_limit_is_refused(tmp_path: Path) -> None:
    with running(tmp_path / "data", ws_max_points=10) as server:
        device = server.add_device("ws-capped")
        readings = [(device.key, k, ts, ts) for k in "ab" for ts in range(0, 6000, 1000)]
        server.call(server.server.store.write(readings, []))

        def history(cmd_id: int, keys: str, **extra: Any) -> dict[str, Any]:
            return {
                "cmdId": cmd_id,
                "entityType": "DEVICE",
                "entityId": device.id,
                "keys": keys,
                "startTs": 0,
                "endTs": 10_000,
                **extra,
            }

        async with connect(ws_url(server, jwt_of(server))) as ws:
            await ws.send(
                orjson.dumps({"historyCmds": [history(1, "a,b"), history(2, "a")]}).decode()
            )
            refused, answered = await receive(ws), await receive(ws)
            assert (refused["subscriptionId"], refused["errorCode"]) == (1, 2)
            assert "more than 10 points" in refused["errorMsg"] and refused["data"] == {}
            assert answered["subscriptionId"] == 2 and len(answered["data"]["a"]) == 6

            # a subscription whose first window is over the limit does not start
            sub = history(3, "a,b", timeWindow=time.time_ns() // 1_000_000)  # from 1970 on
            del sub["startTs"], sub["endTs"]
            await ws.send(orjson.dumps({"tsSubCmds": [sub]}).decode())
            assert (await receive(ws))["errorCode"] == 2
            await asyncio.to_thread(
                httpx.post, f"{server.base_url}/api/v1/{device.token}/telemetry", json={"a": 1}
            )
            with pytest.raises(TimeoutError):
                await receive(ws, timeout=0.5)
