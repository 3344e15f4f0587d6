"""ThingsBoard's own Python SDK (tb-mqtt-client, MQTT 5 by default) against tinyboard."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tb_device_mqtt import TBDeviceMqttClient, TBPublishInfo

from tests.helpers import ServerThread
from tinyboard.core.models import Device


@pytest.fixture
def sdk(server: ServerThread) -> Iterator[tuple[TBDeviceMqttClient, Device]]:
    device = server.add_device("sdk-device")
    client = TBDeviceMqttClient("127.0.0.1", port=server.mqtt_port, username=device.token)
    client.connect()
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.is_connected()
    try:
        yield client, device
    finally:
        client.stop()
        client.disconnect()
        # The SDK never closes paho's wake-up socket pair; close it rather than leak it.
        client._client._reset_sockets()


def test_send_telemetry_and_attributes(
    sdk: tuple[TBDeviceMqttClient, Device], server: ServerThread
) -> None:
    client, device = sdk
    assert client.send_telemetry({"temperature": 21.5, "humidity": 40}).get() == (
        TBPublishInfo.TB_ERR_SUCCESS
    )
    result = client.send_telemetry([{"ts": 1_700_000_000_000, "values": {"light": 300}}])
    assert result.get() == TBPublishInfo.TB_ERR_SUCCESS
    assert client.send_attributes({"firmware": "2.0"}).get() == TBPublishInfo.TB_ERR_SUCCESS
    latest = server.call(server.server.store.latest(device.key))
    assert {k: v for k, (_, v) in latest.items()} == {
        "temperature": 21.5,
        "humidity": 40,
        "light": 300,
    }
    assert latest["light"][0] == 1_700_000_000_000
    attrs = server.call(server.server.store.attributes(device.key, "CLIENT"))
    assert attrs["firmware"][1] == "2.0"


def test_request_attributes(sdk: tuple[TBDeviceMqttClient, Device], server: ServerThread) -> None:
    client, device = sdk
    server.call(server.server.attributes.update_shared(device, {"interval": 15}))
    client.send_attributes({"model": "esp8266"}).get()
    answers: queue.Queue[Any] = queue.Queue()
    client.request_attributes(["model"], ["interval"], lambda content, error: answers.put(content))
    assert answers.get(timeout=10) == {"client": {"model": "esp8266"}, "shared": {"interval": 15}}


def test_shared_attribute_update_reaches_the_sdk(
    sdk: tuple[TBDeviceMqttClient, Device], server: ServerThread
) -> None:
    client, device = sdk
    updates: queue.Queue[Any] = queue.Queue()
    client.subscribe_to_all_attributes(lambda content, error: updates.put(content))
    deadline = time.monotonic() + 10
    while not server.on_loop(lambda: server.server.hub.for_device(device.id)[0].wants_attributes):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    server.call(server.server.attributes.update_shared(device, {"interval": 60, "led": True}))
    assert updates.get(timeout=10) == {"interval": 60, "led": True}


def test_server_side_rpc_handled_by_the_sdk(
    sdk: tuple[TBDeviceMqttClient, Device], server: ServerThread
) -> None:
    client, device = sdk

    def handler(request_id: str, request: dict[str, Any]) -> None:
        client.send_rpc_reply(request_id, {"done": request["method"], "params": request["params"]})

    client.set_server_side_rpc_request_handler(handler)
    deadline = time.monotonic() + 10
    while not server.on_loop(lambda: server.server.hub.for_device(device.id)[0].wants_rpc):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    reply = server.call(server.server.rpc.call(device.id, "setLed", {"on": True}))
    assert reply == {"done": "setLed", "params": {"on": True}}


def test_client_side_rpc_from_the_sdk(
    sdk: tuple[TBDeviceMqttClient, Device], server: ServerThread
) -> None:
    client, _ = sdk
    replies: queue.Queue[Any] = queue.Queue()
    client.send_rpc_call("getSessionLimits", {}, lambda rid, content, error: replies.put(content))
    limits = replies.get(timeout=10)
    assert limits["maxPayloadSize"] == 65536
    # The limits that are enforced (core/limits.py), unset ones null as ThingsBoard's.
    assert limits["rateLimits"] == {
        "messages": server.config.device_rate_limit,
        "telemetryMessages": None,
        "telemetryDataPoints": None,
    }
