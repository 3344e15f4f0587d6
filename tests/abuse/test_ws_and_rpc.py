"""REST RPC to devices that drop out, pushes to vanished devices, and WebSocket clients that
send garbage or stop reading (issue 13, point 14 and the WebSocket half of point 7)."""

from __future__ import annotations

import asyncio
import gc
import logging
import queue
import threading
import time
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import ServerThread
from tests.web_helpers import login
from tinyboard.core.models import Device


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
@pytest.mark.xfail(
    strict=True,
    reason="needs transports/mqtt.py (another engineer's file) to hand push_attributes' "
    "delivery future back to the caller; core/attributes.py already consumes it",
)
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
