"""PostgreSQL as the store, end to end: `tinyboard migrate`, real MQTT devices, and lost
database connections under load (`pg_terminate_backend`)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import POSTGRES
from tests.helpers import ServerThread, tinyboard
from tests.mqtt_clients import Device
from tests.web_helpers import api, login


@pytest.fixture
def pg_server(tmp_path: Path, postgres_url: Callable[[], str]) -> Iterator[ServerThread]:
    running = ServerThread(tmp_path / "data", store=postgres_url()).start()
    try:
        yield running
    finally:
        running.stop()


def test_migrate_brings_a_new_database_up_to_date_once(postgres_url: Callable[[], str]) -> None:
    url = postgres_url()
    first = tinyboard("migrate", "--store", url)
    assert first.returncode == 0, first.stderr
    assert "applied migrations 1" in first.stdout and "up to date" in first.stdout
    again = tinyboard("migrate", "--store", url)
    assert again.returncode == 0 and "applied" not in again.stdout


def test_a_wrong_database_is_named_in_the_error() -> None:
    result = tinyboard("migrate", "--store", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL at 127.0.0.1:1/nowhere" in result.stderr


def test_mqtt_telemetry_attributes_and_history_on_postgres(pg_server: ServerThread) -> None:
    device = pg_server.add_device("pg-board")
    board = Device(pg_server.mqtt_port, device.token)
    try:
        for i in range(50):
            board.publish("v1/devices/me/telemetry", json.dumps({"t": i, "label": f"n{i}"}))
        board.publish("v1/devices/me/attributes", json.dumps({"fw": "1.0"}))
    finally:
        board.close()
    with api(pg_server) as rest:
        base = f"/api/plugins/telemetry/DEVICE/{device.id}"
        latest = rest.get(f"{base}/values/timeseries", params={"keys": "t,label"}).json()
        assert latest["t"][0]["value"] == "49" and latest["label"][0]["value"] == "n49"
        now = int(time.time() * 1000)
        history = rest.get(
            f"{base}/values/timeseries",
            params={"keys": "t", "startTs": now - 60_000, "endTs": now + 1, "limit": 1000},
        ).json()
        assert len(history["t"]) == 50
        summed = rest.get(
            f"{base}/values/timeseries",
            params={
                "keys": "t", "startTs": now - 60_000, "endTs": now + 1,
                "interval": 60_001, "agg": "SUM",
            },
        ).json()  # fmt: skip
        assert float(summed["t"][0]["value"]) == sum(range(50))
        client = rest.get(f"{base}/values/attributes/CLIENT_SCOPE").json()
        assert client == [{"key": "fw", "value": "1.0", "lastUpdateTs": client[0]["lastUpdateTs"]}]


async def _terminate_tinyboard_connections() -> int:
    conn = await asyncpg.connect(POSTGRES)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'tinyboard' AND pid <> pg_backend_pid()"
        )
        return len(rows)
    finally:
        await conn.close()


def test_lost_database_connections_lose_no_acknowledged_reading(pg_server: ServerThread) -> None:
    """While devices publish QoS 1 as fast as they are acknowledged, every tinyboard
    connection to PostgreSQL is killed three times. Writes wait and retry (backpressure);
    every PUBACKed reading must be in the database afterwards."""
    devices = [pg_server.add_device(f"pg-load-{i}") for i in range(4)]
    boards = [Device(pg_server.mqtt_port, d.token) for d in devices]
    stop = threading.Event()
    acked: list[list[int]] = [[] for _ in boards]

    def publish(board: Device, got: list[int]) -> None:
        seq = 0
        while not stop.is_set():
            info = board.publish("v1/devices/me/telemetry", json.dumps({"seq": seq}))
            if info.is_published():
                got.append(seq)
            seq += 1

    threads = [
        threading.Thread(target=publish, args=(b, a)) for b, a in zip(boards, acked, strict=True)
    ]
    for t in threads:
        t.start()
    killed = 0
    for _ in range(3):
        time.sleep(0.7)
        killed += asyncio.run(_terminate_tinyboard_connections())
    time.sleep(0.7)
    stop.set()
    for t in threads:
        t.join(30)
    for board in boards:
        board.close()
    assert killed >= 3  # the connections really went away
    assert sum(map(len, acked)) > 200  # and the load went on around it
    for device, got in zip(devices, acked, strict=True):
        points: list[Any] = pg_server.call(
            pg_server.server.store.history(device.key, "seq", start_ts=0, end_ts=2**62, limit=10**6)
        )
        stored = {int(v) for _, v in points}
        missing = set(got) - stored
        assert not missing, f"{device.name}: {len(missing)} acknowledged readings lost"
    metrics = httpx.get(f"{pg_server.base_url}/metrics", headers=login(pg_server)).text
    assert "tinyboard_commit_errors_total 0.0" in metrics  # retried, never failed


def test_copy_moves_a_sqlite_installation_to_postgres(
    tmp_path: Path, postgres_url: Callable[[], str]
) -> None:
    data = tmp_path / "data"
    before = ServerThread(data).start()
    admin = before.admin
    try:
        device = before.add_device("mover", type="esp8266-temperature")
        board = Device(before.mqtt_port, device.token)
        try:
            for i in range(120):
                values = {"t": 20 + i / 10, "ok": i % 2 == 0, "s": f"x{i}", "j": {"i": i}}
                board.publish("v1/devices/me/telemetry", json.dumps(values))
            board.publish("v1/devices/me/attributes", json.dumps({"fw": "2.1"}))
        finally:
            board.close()
        with api(before) as rest:
            rest.post(
                "/api/alarmRule",
                json={"deviceId": device.id, "key": "t", "condition": {"op": ">", "value": 30}},
            ).raise_for_status()
    finally:
        before.stop()
    target = postgres_url()
    copied = tinyboard("copy", "--from", f"sqlite:{data / 'tinyboard.db'}", "--to", target)
    assert copied.returncode == 0, copied.stderr
    assert "copied 1 devices, 480 points, 1 attributes, 1 users, 1 alarm rules" in copied.stdout
    assert "checked 4 series point by point: identical" in copied.stdout
    again = tinyboard("copy", "--from", f"sqlite:{data / 'tinyboard.db'}", "--to", target)
    assert again.returncode == 1 and "the target store is not empty" in again.stderr

    after = ServerThread(tmp_path / "pg-node", store=target).start()
    try:
        with api(after, admin) as rest:  # the same users and passwords
            base = f"/api/plugins/telemetry/DEVICE/{device.id}"  # the same device ids
            latest = rest.get(f"{base}/values/timeseries", params={"useStrictDataTypes": True})
            assert latest.json()["j"][0]["value"] == {"i": 119}
            assert latest.json()["ok"][0]["value"] is False
            assert [r["alarmType"] for r in rest.get("/api/alarmRules").json()] == ["t alarm"]
        board = Device(after.mqtt_port, device.token)  # the same token: boards need no change
        try:
            board.publish("v1/devices/me/telemetry", json.dumps({"t": 31}))
        finally:
            board.close()
    finally:
        after.stop()
