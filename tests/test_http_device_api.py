"""ThingsBoard's device HTTP API (`/api/v1/{token}/...`) with httpx and the official SDK."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from typing import Any

import httpx
import orjson
import pytest
from tb_device_http import TBHTTPDevice

from tests.helpers import ServerThread
from tinyboard.core.models import Device


def url(server: ServerThread, device: Device, path: str) -> str:
    return f"{server.base_url}/api/v1/{device.token}/{path}"


def latest(server: ServerThread, device: Device) -> dict[str, Any]:
    values = server.call(server.server.store.latest(device.key))
    return {k: v for k, (_, v) in values.items()}


@pytest.fixture
def server(server_on_each_store: ServerThread) -> ServerThread:
    """Every test here runs on SQLite and on PostgreSQL."""
    return server_on_each_store


def test_telemetry_is_stored_before_200(server: ServerThread) -> None:
    device = server.add_device("http-t")
    for payload in (
        {"temperature": 21.5, "on": True},
        [{"humidity": 40}, {"text": "ok"}],
        {"ts": 1_700_000_000_000, "values": {"old": 1}},
    ):
        response = httpx.post(url(server, device, "telemetry"), json=payload)
        assert response.status_code == 200, response.text
    # 200 means committed: everything is readable at once.
    assert latest(server, device) == {
        "temperature": 21.5,
        "on": True,
        "humidity": 40,
        "text": "ok",
        "old": 1,
    }


def test_bad_requests(server: ServerThread) -> None:
    device = server.add_device("http-bad")
    bad_json = httpx.post(url(server, device, "telemetry"), content=b"{nope")
    assert bad_json.status_code == 400 and "invalid JSON" in bad_json.json()["message"]
    null = httpx.post(url(server, device, "telemetry"), json={"k": None})
    assert null.status_code == 400 and "null" in null.json()["message"]
    wrong = httpx.post(f"{server.base_url}/api/v1/not-a-token/telemetry", json={"a": 1})
    assert wrong.status_code == 401
    big = {"blob": "x" * 70_000}
    assert httpx.post(url(server, device, "telemetry"), json=big).status_code == 413

    def chunks() -> Any:
        for _ in range(100):
            yield b" " * 1000

    streamed = httpx.post(url(server, device, "telemetry"), content=chunks())
    assert streamed.status_code == 413  # no Content-Length: counted while reading
    assert latest(server, device) == {}


def test_attributes(server: ServerThread) -> None:
    device = server.add_device("http-a")
    server.call(server.server.attributes.update_shared(device, {"interval": 30, "mode": "eco"}))
    assert httpx.post(url(server, device, "attributes"), json={"fw": "1.0"}).status_code == 200
    both = httpx.get(
        url(server, device, "attributes"), params={"clientKeys": "fw", "sharedKeys": "mode"}
    )
    assert both.json() == {"client": {"fw": "1.0"}, "shared": {"mode": "eco"}}
    everything = httpx.get(url(server, device, "attributes")).json()
    assert everything == {"client": {"fw": "1.0"}, "shared": {"interval": 30, "mode": "eco"}}


def start_poll(server: ServerThread, device: Device, path: str) -> Future[httpx.Response]:
    """A long poll in a thread; returns once the server holds it as a device session."""
    response: Future[httpx.Response] = Future()
    threading.Thread(
        target=lambda: response.set_result(
            httpx.get(url(server, device, path), params={"timeout": 10_000})
        )
    ).start()
    deadline = time.monotonic() + 10
    while not server.on_loop(lambda: server.server.hub.is_connected(device.id)):
        assert time.monotonic() < deadline, "the poll never reached the server"
        time.sleep(0.01)
    return response


def test_long_poll_for_attribute_updates(server: ServerThread) -> None:
    device = server.add_device("http-poll")
    poll = start_poll(server, device, "attributes/updates")
    server.call(server.server.attributes.update_shared(device, {"interval": 5}))
    update = poll.result(10)
    assert update.status_code == 200 and update.json() == {"interval": 5}
    timed_out = httpx.get(url(server, device, "attributes/updates"), params={"timeout": 200})
    assert timed_out.status_code == 408


def test_rpc_over_http(server: ServerThread) -> None:
    device = server.add_device("http-rpc")
    poll = start_poll(server, device, "rpc")
    assert server.loop is not None
    call = asyncio.run_coroutine_threadsafe(
        server.server.rpc.call(device.id, "getReading", {"unit": "C"}), server.loop
    )
    request = poll.result(10).json()
    assert request["method"] == "getReading" and request["params"] == {"unit": "C"}
    reply = httpx.post(url(server, device, f"rpc/{request['id']}"), json={"temperature": 22})
    assert reply.status_code == 200
    assert call.result(10) == {"temperature": 22}
    assert httpx.get(url(server, device, "rpc"), params={"timeout": 100}).status_code == 408
    limits = httpx.post(url(server, device, "rpc"), json={"method": "getSessionLimits"})
    assert limits.json()["maxPayloadSize"] == 65536


def test_thingsboard_http_sdk(server: ServerThread) -> None:
    device = server.add_device("http-sdk")
    client = TBHTTPDevice(server.base_url, device.token)
    assert client.connect()
    try:
        client.send_telemetry({"temperature": 19.5}, queued=False)
        client.send_attributes({"model": "esp8266"})
        assert client.request_attributes(["model"]) == {"client": {"model": "esp8266"}}
        assert client.send_rpc("getSessionLimits")["maxPayloadSize"] == 65536
    finally:
        client.stop_publish_worker()
    assert latest(server, device)["temperature"] == 19.5


@pytest.mark.parametrize("path", ["telemetry", "attributes"])
def test_device_api_bodies_must_be_objects(server: ServerThread, path: str) -> None:
    device = server.add_device(f"http-shape-{path}")
    response = httpx.post(url(server, device, path), content=orjson.dumps([1, 2]))
    assert response.status_code == 400
