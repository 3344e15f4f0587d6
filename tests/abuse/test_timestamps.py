"""Issue 13.1: a reading the device did not stamp itself never replaces another stored one.

Before: each connection had its own server clock that ran 1 ms per reading ahead of real
time, so the next connection of the same device restarted at the wall clock and its
upserts overwrote what the first had been told was stored (20,000 + 20,000 PUBACKs,
~20,500 rows). The rule now (core/clock.py, docs/protocols.md "Timestamps"): one clock per
device for every connection and transport, at most --max-clock-lead ms ahead.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import LineClient, ServerThread
from tinyboard.core.models import Device

TELEMETRY = "v1/devices/me/telemetry"
N = 3000
UNLIMITED = {"device_rate_limit": "off"}  # these tests send faster than the default allows


def blast(port: int, token: str, first: int, n: int, client_id: str) -> None:
    """Publish `{"v": i}` for n values as fast as paho goes, QoS 1, and wait for every
    PUBACK (each one a promise that the reading is stored)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.max_inflight_messages_set(1000)
    client.username_pw_set(token)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(TELEMETRY, f'{{"v": {i}}}', qos=1) for i in range(first, first + n)]
        for info in infos:
            info.wait_for_publish(60)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def values(server: ServerThread, device: Device, key: str = "v") -> list[Any]:
    store = server.server.store
    rows = server.call(store.history(device.key, key, start_ts=0, end_ts=2**62, limit=100_000))
    return [value for _, value in rows]


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> dict[str, str]:
    """Every test here runs on SQLite (the default) and on a fresh PostgreSQL schema."""
    if request.param == "postgres":
        return {"store": request.getfixturevalue("postgres_url")()}
    return {}


@pytest.fixture
def server(tmp_path: Path, store: dict[str, str]) -> Any:
    running = ServerThread(tmp_path / "data", **UNLIMITED, **store).start()
    try:
        yield running
    finally:
        running.stop()


def test_two_connections_in_a_row_overwrite_nothing(server: ServerThread) -> None:
    device = server.add_device("fast")
    blast(server.mqtt_port, device.token, 0, N, "first")
    blast(server.mqtt_port, device.token, N, N, "second")
    assert sorted(values(server, device)) == list(range(2 * N))


def test_line_protocol_reconnect_overwrites_nothing(server: ServerThread) -> None:
    device = server.add_device("line-fast")
    for first in (0, N):
        with LineClient(server.line_port) as client:
            assert client.ask(f"TOKEN {device.token}") == "OK line-fast"
            client.send("".join(f"v={i}\n" for i in range(first, first + N)))
            echoes = [client.recv() for _ in range(N)]
        assert echoes == [f"V={i}" for i in range(first, first + N)]
    assert sorted(values(server, device)) == list(range(2 * N))


def test_one_device_on_every_transport_at_once_overwrites_nothing(server: ServerThread) -> None:
    device = server.add_device("everywhere")

    def line(first: int) -> None:
        with LineClient(server.line_port, timeout=60) as client:
            assert client.ask(f"TOKEN {device.token}").startswith("OK")
            client.send("".join(f"v={i}\n" for i in range(first, first + N)))
            for _ in range(N):
                client.recv()

    def http(first: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            for i in range(first, first + 300):
                response = client.post(f"/api/v1/{device.token}/telemetry", json={"v": i})
                assert response.status_code == 200

    senders = [
        threading.Thread(target=blast, args=(server.mqtt_port, device.token, 0, N, "a")),
        threading.Thread(target=blast, args=(server.mqtt_port, device.token, N, N, "b")),
        threading.Thread(target=line, args=(2 * N,)),
        threading.Thread(target=http, args=(3 * N,)),
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(120)
    assert sorted(values(server, device)) == list(range(3 * N + 300))


def test_server_time_stays_within_the_lead_of_the_real_clock(server: ServerThread) -> None:
    device = server.add_device("ahead")
    blast(server.mqtt_port, device.token, 0, N, "ahead")
    after = int(time.time() * 1000)
    store = server.server.store
    rows = server.call(store.history(device.key, "v", start_ts=0, end_ts=2**62, limit=1))
    newest = rows[0][0]
    assert newest <= after + server.config.max_clock_lead
    assert len(values(server, device)) == N


def test_a_restart_right_after_a_fast_sender_overwrites_nothing(
    tmp_path: Path, store: dict[str, str]
) -> None:
    data = tmp_path / "data"
    first = ServerThread(data, **UNLIMITED, **store).start()
    try:
        device = first.add_device("restart")
        blast(first.mqtt_port, device.token, 0, N, "before")
    finally:
        first.stop()
    second = ServerThread(data, **UNLIMITED, **store).start()
    try:
        blast(second.mqtt_port, device.token, N, N, "after")
        assert sorted(values(second, device)) == list(range(2 * N))
    finally:
        second.stop()


def test_device_stamped_readings_keep_last_write_wins(server: ServerThread) -> None:
    device = server.add_device("stamped")
    url = f"{server.base_url}/api/v1/{device.token}/telemetry"
    for value in (1, 2):
        assert httpx.post(url, json={"ts": 1_700_000_000_000, "values": {"v": value}}).is_success
    assert values(server, device) == [2]
