"""The REST API with JWTs: devices, telemetry queries, attributes, RPC, clients, export."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest

from tests.helpers import LineClient, ServerThread
from tests.mqtt_clients import Device as MqttDevice
from tests.web_helpers import api, login

PROTECTED = [
    ("POST", "/api/device"),
    ("GET", "/api/tenant/devices"),
    ("GET", "/api/device/x"),
    ("DELETE", "/api/device/x"),
    ("GET", "/api/device/x/credentials"),
    ("GET", "/api/plugins/telemetry/DEVICE/x/keys/timeseries"),
    ("GET", "/api/plugins/telemetry/DEVICE/x/values/timeseries"),
    ("GET", "/api/plugins/telemetry/DEVICE/x/export.csv"),
    ("GET", "/api/plugins/telemetry/DEVICE/x/values/attributes"),
    ("GET", "/api/plugins/telemetry/DEVICE/x/values/attributes/SHARED_SCOPE"),
    ("POST", "/api/plugins/telemetry/DEVICE/x/attributes/SHARED_SCOPE"),
    ("POST", "/api/plugins/telemetry/DEVICE/x/SHARED_SCOPE"),
    ("POST", "/api/plugins/telemetry/x/SHARED_SCOPE"),
    ("GET", "/api/plugins/telemetry/DEVICE/x/keys/attributes"),
    ("GET", "/api/plugins/telemetry/DEVICE/x/keys/attributes/SHARED_SCOPE"),
    ("POST", "/api/plugins/telemetry/DEVICE/x/timeseries/ANY"),
    ("POST", "/api/plugins/telemetry/DEVICE/x/timeseries/ANY/100"),
    ("DELETE", "/api/plugins/telemetry/DEVICE/x/timeseries/delete?keys=a"),
    ("DELETE", "/api/plugins/telemetry/DEVICE/x/SHARED_SCOPE?keys=a"),
    ("DELETE", "/api/plugins/telemetry/x/SHARED_SCOPE?keys=a"),
    ("POST", "/api/plugins/rpc/oneway/x"),
    ("POST", "/api/plugins/rpc/twoway/x"),
    ("POST", "/api/rpc/oneway/x"),
    ("POST", "/api/rpc/twoway/x"),
    ("GET", "/api/clients"),
    ("GET", "/api/auth/user"),
]


def test_login_and_current_user(server: ServerThread) -> None:
    email, password = server.admin
    response = httpx.post(
        f"{server.base_url}/api/auth/login", json={"username": email, "password": password}
    )
    tokens = response.json()
    assert set(tokens) == {"token", "refreshToken"}
    me = httpx.get(
        f"{server.base_url}/api/auth/user",
        headers={"X-Authorization": f"Bearer {tokens['token']}"},
    )
    assert me.json()["email"] == email
    refreshed = httpx.post(
        f"{server.base_url}/api/auth/token", json={"refreshToken": tokens["refreshToken"]}
    )
    assert refreshed.status_code == 200 and refreshed.json()["token"]
    # An access token is not a refresh token.
    wrong_kind = httpx.post(
        f"{server.base_url}/api/auth/token", json={"refreshToken": tokens["token"]}
    )
    assert wrong_kind.status_code == 401


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_rest_endpoint_refuses_bad_tokens(
    server: ServerThread, method: str, path: str
) -> None:
    secret = server.call(server.server.store.setting("jwt_secret", "unused"))
    expired = jwt.encode(
        {"sub": "a", "userId": "u", "typ": "access", "exp": int(time.time()) - 10},
        secret,
        algorithm="HS256",
    )
    forged = jwt.encode(
        {"sub": "a", "userId": "u", "typ": "access", "exp": int(time.time()) + 100},
        "not-the-secret-but-long-enough-for-hs256-keys",
        algorithm="HS256",
    )
    for headers in (
        {},
        {"X-Authorization": "Bearer garbage"},
        {"X-Authorization": f"Bearer {expired}"},
        {"X-Authorization": f"Bearer {forged}"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
    ):
        response = httpx.request(method, server.base_url + path, headers=headers, json={})
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["errorCode"] == 10


@pytest.fixture
def slow_retry_server(tmp_path: Path) -> Iterator[ServerThread]:
    """A server whose failed-login waits start at a minute: a slow machine cannot outlast
    them while a test checks them."""
    running = ServerThread(tmp_path / "data", login_delay=60.0).start()
    try:
        yield running
    finally:
        running.stop()


def test_wrong_password_and_rate_limit(slow_retry_server: ServerThread) -> None:
    server = slow_retry_server
    email, password = server.admin
    for _ in range(5):  # --login-tries of this account from this address
        bad = httpx.post(
            f"{server.base_url}/api/auth/login", json={"username": email, "password": "nope"}
        )
        assert bad.status_code == 401
    blocked = httpx.post(
        f"{server.base_url}/api/auth/login", json={"username": email, "password": password}
    )
    assert blocked.status_code == 429
    assert "try again" in blocked.json()["message"]


def test_concurrent_wrong_passwords_cannot_slip_past_the_limit(
    slow_retry_server: ServerThread,
) -> None:
    """30 wrong logins at once: each is counted before its (slow) password check, so only
    the free ones (5) reach it."""
    server = slow_retry_server
    email, password = server.admin

    async def storm() -> list[int]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.post("/api/auth/login", json={"username": email, "password": "no"})
                    for _ in range(30)
                )
            )
        return [a.status_code for a in answers]

    codes = asyncio.run(storm())
    assert codes.count(401) == 5 and codes.count(429) == 25
    right = httpx.post(
        f"{server.base_url}/api/auth/login", json={"username": email, "password": password}
    )
    assert right.status_code == 429  # this address waits, the right password included


def test_devices(server: ServerThread) -> None:
    with api(server) as client:
        created = client.post("/api/device", json={"name": "kitchen", "type": "esp8266"}).json()
        assert created["name"] == "kitchen" and created["id"]["entityType"] == "DEVICE"
        device_id = created["id"]["id"]
        chosen = client.post(
            "/api/device", params={"accessToken": "my-token-123"}, json={"name": "garage"}
        )
        assert chosen.status_code == 200
        assert client.post("/api/device", json={"name": "kitchen"}).status_code == 409
        for i in range(12):
            client.post("/api/device", json={"name": f"sensor-{i:02d}"})
        page = client.get("/api/tenant/devices", params={"pageSize": 5, "page": 1}).json()
        assert page["totalElements"] == 14 and page["totalPages"] == 3 and page["hasNext"]
        assert [d["name"] for d in page["data"]] == [f"sensor-{i:02d}" for i in range(3, 8)]
        found = client.get("/api/tenant/devices", params={"textSearch": "gar"}).json()
        assert [d["name"] for d in found["data"]] == ["garage"]
        by_name = client.get("/api/tenant/devices", params={"deviceName": "kitchen"}).json()
        assert by_name["id"]["id"] == device_id
        assert client.get(f"/api/device/{device_id}").json()["type"] == "esp8266"
        creds = client.get(f"/api/device/{chosen.json()['id']['id']}/credentials").json()
        assert (
            creds["credentialsType"] == "ACCESS_TOKEN" and creds["credentialsId"] == "my-token-123"
        )
        line = LineClient(server.line_port)
        token = client.get(f"/api/device/{device_id}/credentials").json()["credentialsId"]
        assert line.ask(f"TOKEN {token}") == "OK kitchen"
        assert client.delete(f"/api/device/{device_id}").status_code == 200
        assert line.at_eof()  # the deleted device's connections are closed
        line.close()
        missing = client.get(f"/api/device/{device_id}")
        assert missing.status_code == 404 and missing.json()["errorCode"] == 32


def test_latest_and_history_queries(server: ServerThread) -> None:
    device = server.add_device("history")
    readings = [(device.key, "t", ts, ts // 1000) for ts in range(0, 60_000, 1000)]
    readings.append((device.key, "flag", 5000, True))
    server.call(server.server.store.write(readings, []))
    base = f"/api/plugins/telemetry/DEVICE/{device.id}"
    with api(server) as client:
        assert client.get(f"{base}/keys/timeseries").json() == ["flag", "t"]
        latest = client.get(f"{base}/values/timeseries", params={"keys": "t,flag"}).json()
        assert latest == {
            "t": [{"ts": 59000, "value": "59"}],
            "flag": [{"ts": 5000, "value": "true"}],
        }
        strict = client.get(
            f"{base}/values/timeseries", params={"keys": "t", "useStrictDataTypes": "true"}
        ).json()
        assert strict == {"t": [{"ts": 59000, "value": 59}]}
        raw = client.get(
            f"{base}/values/timeseries",
            params={"keys": "t", "startTs": 10_000, "endTs": 20_000, "limit": 3},
        ).json()
        assert [p["ts"] for p in raw["t"]] == [19000, 18000, 17000]
        avg = client.get(
            f"{base}/values/timeseries",
            params={
                "keys": "t",
                "startTs": 0,
                "endTs": 60_000,
                "interval": 20_000,
                "agg": "AVG",
                "orderBy": "ASC",
                "useStrictDataTypes": "true",
            },
        ).json()
        assert avg == {
            "t": [
                {"ts": 10000, "value": 9.5},
                {"ts": 30000, "value": 29.5},
                {"ts": 50000, "value": 49.5},
            ]
        }
        # as ThingsBoard: an aggregation without an interval is no aggregation (raw points)
        raw_max = client.get(
            f"{base}/values/timeseries",
            params={"keys": "t", "startTs": 0, "endTs": 2500, "agg": "MAX"},
        )
        assert raw_max.json() == {"t": [{"ts": 2000, "value": "2"}, {"ts": 1000, "value": "1"},
                                        {"ts": 0, "value": "0"}]}  # fmt: skip


def test_csv_export_is_streamed(server: ServerThread) -> None:
    device = server.add_device("export")
    readings = [(device.key, "t", ts, ts * 0.5) for ts in range(12_000)]
    readings.append((device.key, "note", 3, 'has "quotes", commas'))
    server.call(server.server.store.write(readings, []))
    with (
        api(server) as client,
        client.stream(
            "GET",
            f"/api/plugins/telemetry/DEVICE/{device.id}/export.csv",
            params={"startTs": 0, "endTs": 20_000},
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/csv")
        assert "content-length" not in response.headers  # streamed
        body = "".join(response.iter_text())
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["ts", "key", "value", "time"]
    assert len(rows) == 1 + 12_001
    assert ["3", "note", 'has "quotes", commas', "1970-01-01T00:00:00.003+00:00"] in rows
    assert rows[-1] == ["11999", "t", "5999.5", "1970-01-01T00:00:11.999+00:00"]


def test_csv_export_writes_iso_times_in_the_asked_zone(server: ServerThread) -> None:
    device = server.add_device("export-tz")
    ts = 1_800_000_000_123  # 2027-01-15 08:00:00.123 UTC
    server.call(server.server.store.write([(device.key, "t", ts, 1.5)], []))
    path = f"/api/plugins/telemetry/DEVICE/{device.id}/export.csv"
    with api(server) as client:
        utc = client.get(path)
        kolkata = client.get(path, params={"tz": "Asia/Kolkata"})
        unknown = client.get(path, params={"tz": "Mars/Olympus_Mons"})
    assert list(csv.reader(io.StringIO(utc.text)))[1] == [
        str(ts),
        "t",
        "1.5",
        "2027-01-15T08:00:00.123+00:00",
    ]
    assert list(csv.reader(io.StringIO(kolkata.text)))[1] == [
        str(ts),
        "t",
        "1.5",
        "2027-01-15T13:30:00.123+05:30",
    ]
    assert unknown.status_code == 400
    assert "unknown time zone 'Mars/Olympus_Mons'" in unknown.json()["message"]


def test_shared_attribute_and_rpc_over_rest_reach_an_mqtt_device(server: ServerThread) -> None:
    device = server.add_device("rest-mqtt")
    mqtt = MqttDevice(server.mqtt_port, device.token)

    def answer(client: Any, _: Any, msg: Any) -> None:
        if "/rpc/request/" in msg.topic:
            request = orjson.loads(msg.payload)
            reply = {"ok": True, "method": request["method"]}
            client.publish(msg.topic.replace("request", "response"), orjson.dumps(reply), qos=1)
        mqtt.messages.put(msg)

    mqtt.client.on_message = answer
    try:
        mqtt.subscribe("v1/devices/me/attributes")
        mqtt.subscribe("v1/devices/me/rpc/request/+")
        base = f"/api/plugins/telemetry/DEVICE/{device.id}"
        with api(server) as client:
            saved = client.post(f"{base}/attributes/SHARED_SCOPE", json={"interval": 10})
            assert saved.status_code == 200
            pushed = mqtt.next_message()
            assert orjson.loads(pushed.payload) == {"interval": 10}
            attrs = client.get(f"{base}/values/attributes/SHARED_SCOPE").json()
            assert [(a["key"], a["value"]) for a in attrs] == [("interval", 10)]
            client.post(f"{base}/attributes/SERVER_SCOPE", json={"site": "lab"})
            every = client.get(f"{base}/values/attributes").json()
            assert {a["key"] for a in every} == {"interval", "site"}
            refused = client.post(f"{base}/attributes/CLIENT_SCOPE", json={"x": 1})
            assert refused.status_code == 400
            twoway = client.post(
                f"/api/rpc/twoway/{device.id}", json={"method": "setLed", "params": {"on": 1}}
            )
            assert twoway.json() == {"ok": True, "method": "setLed"}
            oneway = client.post(f"/api/rpc/oneway/{device.id}", json={"method": "blink"})
            assert oneway.status_code == 200
            clients = client.get("/api/clients").json()
            assert any(c["who"] == "rest-mqtt" and c["transport"] == "mqtt" for c in clients)
    finally:
        mqtt.close()


def test_rpc_errors(server: ServerThread) -> None:
    device = server.add_device("rpc-errors")
    with api(server) as client:
        offline = client.post(f"/api/rpc/twoway/{device.id}", json={"method": "x"})
        # ThingsBoard's /api/rpc answers 504 for an offline device too (RpcV2Controller)
        assert offline.status_code == 504 and "not connected" in offline.json()["message"]
        mqtt = MqttDevice(server.mqtt_port, device.token)
        try:
            mqtt.subscribe("v1/devices/me/rpc/request/+")
            silent = client.post(
                f"/api/rpc/twoway/{device.id}", json={"method": "x", "timeout": 300}
            )
            assert silent.status_code == 504
        finally:
            mqtt.close()


def test_metrics(server: ServerThread) -> None:
    device = server.add_device("metrics")
    headers = login(server)  # /metrics needs an admin's JWT (or --metrics-token)
    httpx.post(f"{server.base_url}/api/v1/{device.token}/telemetry", json={"a": 1, "b": 2})
    mqtt = MqttDevice(server.mqtt_port, device.token)
    try:
        mqtt.publish("v1/devices/me/telemetry", '{"c": 3}')
        text = httpx.get(f"{server.base_url}/metrics", headers=headers).text
    finally:
        mqtt.close()
    assert "tinyboard_readings_stored_total 3.0" in text
    assert "tinyboard_queue_depth 0.0" in text
    assert 'tinyboard_connections{transport="mqtt"} 1.0' in text
    assert 'tinyboard_messages_in_total{transport="mqtt"} 2.0' in text  # CONNECT, PUBLISH
    assert "# TYPE tinyboard_commits_total counter" in text


def test_openapi_lists_the_api(server: ServerThread) -> None:
    spec = httpx.get(f"{server.base_url}/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/api/auth/login",
        "/api/v1/{token}/telemetry",
        "/api/tenant/devices",
        "/api/plugins/telemetry/{entityType}/{entityId}/values/timeseries",
        "/api/rpc/twoway/{device_id}",
        "/api/clients",
    ):
        assert path in paths, path


def test_unknown_api_paths_are_json_404(server: ServerThread) -> None:
    response = httpx.get(f"{server.base_url}/api/nothing-here", headers=login(server))
    assert response.status_code == 404 and response.json()["status"] == 404


def test_admin_password_can_be_changed_with_the_cli(tmp_path: Path) -> None:
    from tests.helpers import ServeProcess, tinyboard

    data = tmp_path / "data"
    server = ServeProcess(data)
    try:
        assert server.proc.stdout is not None
        first_start = ""
        while "created the admin user" not in first_start:  # the start-up lines' last
            line = server.proc.stdout.readline()
            assert line, f"serve ended its output without the admin line: {first_start}"
            first_start += line
        assert "created the admin user admin@tinyboard.local" in first_start
        changed = tinyboard(
            "user",
            "passwd",
            "admin@tinyboard.local",
            "--password",
            "new-secret-1",
            "--data-dir",
            str(data),
        )
        assert changed.returncode == 0, changed.stderr
        ok = httpx.post(
            f"http://127.0.0.1:{server.http_port}/api/auth/login",
            json={"username": "admin@tinyboard.local", "password": "new-secret-1"},
        )
        assert ok.status_code == 200
        added = tinyboard(
            "user", "add", "ana@example.org", "--password", "short", "--data-dir", str(data)
        )
        assert added.returncode == 1 and "at least 8" in added.stderr
        listed = tinyboard("user", "list", "--data-dir", str(data)).stdout
        assert "admin@tinyboard.local" in listed
    finally:
        server.signal(15)
        code, _, _ = server.wait()
    assert code == 0
    again = ServeProcess(data)
    again.signal(15)
    _, later_output, _ = again.wait()
    assert "REST API" in later_output
    assert "created the admin user" not in later_output  # only on first start
