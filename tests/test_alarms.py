"""Alarms end to end: real MQTT telemetry (paho) crossing thresholds, durations, hysteresis,
escalation and inactivity; ack, clear and delete over REST; webhooks received by a local
HTTP server; a restart while alarms are open or pending."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.helpers import ServeProcess, ServerThread
from tests.mqtt_clients import Device
from tests.web_helpers import api
from tinyboard.storage.sqlite import SQLiteStore

T = TypeVar("T")
TELEMETRY = "v1/devices/me/telemetry"


def eventually(probe: Callable[[], T | None], timeout: float = 10.0) -> T:
    """Poll until `probe` returns something truthy (alarms are decided after commit)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def alarms_of(client: httpx.Client, device_id: str, search: str = "ANY") -> list[dict[str, Any]]:
    page = client.get(
        f"/api/alarm/DEVICE/{device_id}", params={"pageSize": 100, "searchStatus": search}
    )
    assert page.status_code == 200, page.text
    data: list[dict[str, Any]] = page.json()["data"]
    return data


def send(board: Device, **values: float) -> None:
    board.publish(TELEMETRY, json.dumps(values))


@pytest.fixture
def rest(server: ServerThread) -> Iterator[httpx.Client]:
    with api(server) as client:
        yield client


def new_device(server: ServerThread, name: str, type: str = "default") -> tuple[str, Device]:
    device = server.add_device(name, type=type)
    return device.id, Device(server.mqtt_port, device.token)


def test_threshold_with_hysteresis_raises_once_and_clears(
    server: ServerThread, rest: httpx.Client
) -> None:
    device_id, board = new_device(server, "greenhouse")
    rule = rest.post(
        "/api/alarmRule",
        json={
            "deviceId": device_id,
            "key": "temperature",
            "condition": {"op": ">", "value": 30},
            "clearCondition": {"op": "<", "value": 28},
            "severity": "MAJOR",
            "alarmType": "Too hot",
        },
    )
    assert rule.status_code == 200, rule.text
    assert rule.json()["description"] == (
        'temperature > 30, clear when temperature < 28 → MAJOR "Too hot"'
    )
    try:
        send(board, temperature=25)
        send(board, temperature=31)
        (alarm,) = eventually(lambda: alarms_of(rest, device_id))
        assert alarm["type"] == "Too hot" and alarm["severity"] == "MAJOR"
        assert alarm["status"] == "ACTIVE_UNACK"
        assert alarm["originator"] == {"entityType": "DEVICE", "id": device_id}
        assert alarm["originatorName"] == "greenhouse"
        assert alarm["details"]["value"] == 31
        send(board, temperature=35)  # still hot: the same alarm, not a second one
        send(board, temperature=29)  # inside the hysteresis band: stays active
        time.sleep(0.3)
        (still,) = alarms_of(rest, device_id)
        assert still["id"] == alarm["id"] and still["status"] == "ACTIVE_UNACK"
        send(board, temperature=27.5)
        cleared = eventually(lambda: alarms_of(rest, device_id, "CLEARED"))
        assert cleared[0]["id"] == alarm["id"]
        assert cleared[0]["status"] == "CLEARED_UNACK"
        assert cleared[0]["clearTs"] >= cleared[0]["startTs"]
        send(board, temperature=40)  # a new episode is a new alarm; the old one is history
        eventually(lambda: alarms_of(rest, device_id, "ACTIVE"))
        assert len(alarms_of(rest, device_id)) == 2
    finally:
        board.close()


def test_a_duration_must_hold_continuously(server: ServerThread, rest: httpx.Client) -> None:
    device_id, board = new_device(server, "oven")
    rest.post(
        "/api/alarmRule",
        json={
            "deviceId": device_id,
            "key": "t",
            "condition": {"op": ">=", "value": 100},
            "forSeconds": 1.0,
            "alarmType": "Overheat",
        },
    ).raise_for_status()
    try:
        send(board, t=120)
        time.sleep(0.5)
        send(board, t=90)  # dropped before the second was up: nothing
        time.sleep(1.0)
        assert alarms_of(rest, device_id) == []
        started = time.monotonic()
        send(board, t=120)  # and no more messages: the timer raises it
        (alarm,) = eventually(lambda: alarms_of(rest, device_id))
        assert time.monotonic() - started >= 0.9
        assert alarm["details"]["forSeconds"] == 1.0
        assert alarm["details"]["value"] == 120
    finally:
        board.close()


def test_severity_escalates_on_the_same_alarm(server: ServerThread, rest: httpx.Client) -> None:
    device_id, board = new_device(server, "boiler", type="boiler")
    for value, severity in ((50, "MINOR"), (80, "CRITICAL")):
        rest.post(
            "/api/alarmRule",
            json={
                "deviceType": "boiler",
                "key": "pressure",
                "condition": {"op": ">", "value": value},
                "severity": severity,
                "alarmType": "Pressure",
            },
        ).raise_for_status()
    try:
        send(board, pressure=60)
        (alarm,) = eventually(lambda: alarms_of(rest, device_id))
        assert alarm["severity"] == "MINOR"
        send(board, pressure=90)
        eventually(lambda: alarms_of(rest, device_id)[0]["severity"] == "CRITICAL")
        (escalated,) = alarms_of(rest, device_id)
        assert escalated["id"] == alarm["id"]
        highest = rest.get(f"/api/alarm/highestSeverity/DEVICE/{device_id}")
        assert highest.json() == "CRITICAL"
        send(board, pressure=70)  # the MINOR rule still holds it
        time.sleep(0.3)
        assert alarms_of(rest, device_id)[0]["status"] == "ACTIVE_UNACK"
        send(board, pressure=10)
        eventually(lambda: alarms_of(rest, device_id, "CLEARED"))
    finally:
        board.close()


def test_inactivity_raises_and_the_next_message_clears(
    server: ServerThread, rest: httpx.Client
) -> None:
    device_id, board = new_device(server, "beacon", type="beacon")
    rest.post(
        "/api/alarmRule",
        json={"kind": "inactivity", "deviceType": "beacon", "inactivitySeconds": 1},
    ).raise_for_status()
    try:
        send(board, alive=1)
        (alarm,) = eventually(lambda: alarms_of(rest, device_id), timeout=5)
        assert alarm["type"] == "Inactive" and alarm["status"] == "ACTIVE_UNACK"
        device = server.call(server.server.store.get_device(device_id))
        assert server.on_loop(lambda: server.server.alarms.inactive(device)) is True
        send(board, alive=1)
        eventually(lambda: alarms_of(rest, device_id, "CLEARED"))
        assert server.on_loop(lambda: server.server.alarms.inactive(device)) is False
    finally:
        board.close()


def test_ack_clear_and_delete_over_rest(server: ServerThread, rest: httpx.Client) -> None:
    device_id, board = new_device(server, "pump")
    rest.post(
        "/api/alarmRule",
        json={"deviceId": device_id, "key": "flow", "condition": {"op": "<", "value": 1}},
    ).raise_for_status()
    try:
        send(board, flow=0)
        (alarm,) = eventually(lambda: alarms_of(rest, device_id))
        acked = rest.post(f"/api/alarm/{alarm['id']['id']}/ack").json()
        assert acked["status"] == "ACTIVE_ACK" and acked["ackTs"] > 0
        assert alarms_of(rest, device_id, "UNACK") == []
        cleared = rest.post(f"/api/alarm/{alarm['id']['id']}/clear").json()
        assert cleared["status"] == "CLEARED_ACK"
        assert cleared["details"]["clearReason"] == "cleared by a user"
        # the condition still holds: the next reading raises a new alarm
        send(board, flow=0)
        active = eventually(lambda: alarms_of(rest, device_id, "ACTIVE"))
        assert active[0]["id"] != alarm["id"]
        everything = rest.get("/api/alarms", params={"pageSize": 1}).json()
        assert everything["totalElements"] >= 2 and everything["hasNext"]
        assert rest.delete(f"/api/alarm/{alarm['id']['id']}").json() is True
        assert rest.get(f"/api/alarm/{alarm['id']['id']}").status_code == 404
        assert rest.post(f"/api/alarm/{uuid.uuid4()}/ack").status_code == 404
        assert rest.post("/api/alarm/nope/ack").status_code == 400  # not a UUID
    finally:
        board.close()


@pytest.mark.parametrize(
    ("rule", "complaint"),
    [
        ({"key": "t", "condition": {"op": "~", "value": 1}}, "op"),
        ({"key": "t", "condition": {"op": ">"}}, "condition.value"),
        ({"key": "t", "condition": {"op": "inside", "low": 5, "high": 1}}, "low"),
        ({"condition": {"op": ">", "value": 1}}, "key"),
        ({"kind": "inactivity"}, "inactivitySeconds"),
        ({"key": "t", "condition": {"op": ">", "value": 1}, "deviceId": "nope"}, "deviceId"),
        (
            {"key": "t", "condition": {"op": ">", "value": 1}, "deviceId": "a", "deviceType": "b"},
            "not both",
        ),
    ],
)
def test_bad_rules_get_a_clear_error(
    rest: httpx.Client, rule: dict[str, Any], complaint: str
) -> None:
    response = rest.post("/api/alarmRule", json={"alarmType": "x", **rule})
    assert response.status_code == 400, response.text
    assert complaint in response.json()["message"]


def test_rules_are_listed_replaced_and_deleted(server: ServerThread, rest: httpx.Client) -> None:
    created = rest.post(
        "/api/alarmRule",
        json={"key": "t", "condition": {"op": "outside", "low": 0, "high": 50}, "alarmType": "R"},
    ).json()
    assert [r["id"] for r in rest.get("/api/alarmRules").json()] == [created["id"]]
    replaced = rest.put(
        f"/api/alarmRule/{created['id']}",
        json={"key": "t", "condition": {"op": ">", "value": 9}, "alarmType": "R2"},
    ).json()
    assert replaced["id"] == created["id"] and replaced["alarmType"] == "R2"
    assert rest.delete(f"/api/alarmRule/{created['id']}").json() is True
    assert rest.get(f"/api/alarmRule/{created['id']}").status_code == 404
    assert rest.get("/api/alarmRules").json() == []


# -- webhooks --------------------------------------------------------------------------------
class Receiver:
    """A local HTTP server that records webhook bodies; it can fail the first N requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(503)
                else:
                    receiver.bodies.append(body)
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def test_webhooks_deliver_and_retry_a_failing_receiver(tmp_path: Path) -> None:
    good, flaky = Receiver(), Receiver(fail_first=2)
    running = ServerThread(tmp_path / "data", alarm_webhook=f"{good.url},{flaky.url}").start()
    running.server.webhooks._first_retry = 0.2  # keep the test short; backoff still doubles
    try:
        with api(running) as rest:
            device_id, board = new_device(running, "hooked")
            rest.post(
                "/api/alarmRule",
                json={"deviceId": device_id, "key": "t", "condition": {"op": ">", "value": 5}},
            ).raise_for_status()
            send(board, t=10)
            send(board, t=1)
            board.close()
            eventually(lambda: len(good.bodies) == 2)
            assert [b["event"] for b in good.bodies] == ["ALARM_CREATED", "ALARM_CLEARED"]
            created = good.bodies[0]["alarm"]
            assert created["originatorName"] == "hooked" and created["status"] == "ACTIVE_UNACK"
            assert good.bodies[1]["alarm"]["status"] == "CLEARED_UNACK"
            # the flaky one failed twice, then got both, in order
            eventually(lambda: len(flaky.bodies) == 2)
            assert [b["event"] for b in flaky.bodies] == ["ALARM_CREATED", "ALARM_CLEARED"]
            state = {w["url"]: w for w in rest.get("/api/webhooks").json()}
            assert state[flaky.url]["retries"] == 2 and state[flaky.url]["delivered"] == 2
            assert state[flaky.url]["lastError"] == "HTTP 503"
            assert state[flaky.url]["failing"] is False
            metrics = rest.get("/metrics").text
            assert f'tinyboard_webhook_retries_total{{url="{flaky.url}"}} 2.0' in metrics
    finally:
        running.stop()
        good.close()
        flaky.close()


def test_a_dead_webhook_never_slows_ingestion(tmp_path: Path) -> None:
    dead = "http://127.0.0.1:9/nobody-listens"
    running = ServerThread(tmp_path / "data", alarm_webhook=dead).start()
    try:
        with api(running) as rest:
            device_id, board = new_device(running, "busy")
            rest.post(
                "/api/alarmRule",
                json={"deviceId": device_id, "key": "t", "condition": {"op": ">", "value": 0}},
            ).raise_for_status()
            for i in range(200):  # every PUBACK comes after commit, none waits for the hook
                send(board, t=i % 2)
            board.close()
            state = eventually(lambda: rest.get("/api/webhooks").json()[0]["failing"] or None)
            assert state is True
            (hook,) = rest.get("/api/webhooks").json()
            assert hook["pending"] >= 1 and "ConnectError" in hook["lastError"]
            stored = running.call(running.server.store.history(
                running.call(running.server.store.get_device(device_id)).key,
                "t", start_ts=0, end_ts=2**62, limit=1000,
            ))  # fmt: skip
            assert len(stored) == 200
    finally:
        running.stop()


# -- restarts ----------------------------------------------------------------------------------
def test_open_alarms_and_pending_durations_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ServerThread(data).start()
    admin = first.admin
    try:
        with api(first) as rest:
            hot_id, hot = new_device(first, "hot")
            slow_id, slow = new_device(first, "slow")
            for device_id, seconds in ((hot_id, 0), (slow_id, 2)):
                rest.post(
                    "/api/alarmRule",
                    json={
                        "deviceId": device_id,
                        "key": "t",
                        "condition": {"op": ">", "value": 30},
                        "forSeconds": seconds,
                        "alarmType": "Hot",
                    },
                ).raise_for_status()
            send(hot, t=40)
            (alarm,) = eventually(lambda: alarms_of(rest, hot_id))
            send(slow, t=40)  # pending: raises 2 s from now, after the restart
            pending_from = time.time()
            hot.close()
            slow.close()
    finally:
        first.stop()
    time.sleep(3)  # down past the due time: counting from the restart would raise it late
    second = ServerThread(data).start()
    try:
        with api(second, admin) as rest:
            hot = Device(
                second.mqtt_port, second.call(second.server.store.get_device(hot_id)).token
            )
            send(hot, t=45)  # still hot: no duplicate
            time.sleep(0.3)
            assert [a["id"]["id"] for a in alarms_of(rest, hot_id)] == [alarm["id"]["id"]]
            send(hot, t=20)  # the clear after a restart clears the alarm from before it
            eventually(lambda: alarms_of(rest, hot_id, "CLEARED"))
            hot.close()
            (late,) = eventually(lambda: alarms_of(rest, slow_id))
            # due 2 s after the reading, so raised as soon as the server is back (~3.5 s);
            # counted from the restart it would come 2 s after that (over 5 s)
            assert 1.9 <= late["startTs"] / 1000 - pending_from <= 4.8
            assert late["details"]["value"] == 40
    finally:
        second.stop()


def test_a_clear_committed_just_before_a_crash_is_not_lost(tmp_path: Path) -> None:
    served = ServeProcess(tmp_path / "data")
    try:
        email, password = "admin@tinyboard.local", served.admin_password
        base = f"http://127.0.0.1:{served.http_port}"
        with httpx.Client(base_url=base) as rest:
            token = rest.post(
                "/api/auth/login", json={"username": email, "password": password}
            ).json()["token"]
            rest.headers["X-Authorization"] = f"Bearer {token}"
            device_id = rest.post("/api/device", json={"name": "crashy"}).json()["id"]["id"]
            device_token = rest.get(f"/api/device/{device_id}/credentials").json()["credentialsId"]
            rest.post(
                "/api/alarmRule",
                json={"deviceId": device_id, "key": "t", "condition": {"op": ">", "value": 30}},
            ).raise_for_status()
            board = Device(served.mqtt_port, device_token)
            send(board, t=40)
            eventually(lambda: alarms_of(rest, device_id, "ACTIVE"))
            send(board, t=10)  # PUBACKed: committed; then the process dies at once
            served.proc.kill()
            board.close()
    finally:
        served.kill()
    again = ServeProcess(tmp_path / "data")
    try:
        base = f"http://127.0.0.1:{again.http_port}"
        with httpx.Client(base_url=base) as rest:
            token = rest.post(
                "/api/auth/login", json={"username": email, "password": password}
            ).json()["token"]
            rest.headers["X-Authorization"] = f"Bearer {token}"
            (alarm,) = alarms_of(rest, device_id)
            assert alarm["status"] == "CLEARED_UNACK"
    finally:
        again.signal(15)
        again.wait()


def test_a_value_stored_while_the_engine_was_away_clears_on_start(tmp_path: Path) -> None:
    """The recovery path itself: the alarm is open in the store, the newest stored value
    says it should be cleared (as after a crash between commit and alarm write)."""
    data = tmp_path / "data"
    first = ServerThread(data).start()
    admin = first.admin
    try:
        with api(first) as rest:
            device_id, board = new_device(first, "recovering")
            rest.post(
                "/api/alarmRule",
                json={"deviceId": device_id, "key": "t", "condition": {"op": ">", "value": 30}},
            ).raise_for_status()
            send(board, t=40)
            eventually(lambda: alarms_of(rest, device_id, "ACTIVE"))
            board.close()
            key = first.call(first.server.store.get_device(device_id)).key
    finally:
        first.stop()

    async def write_behind_its_back() -> None:
        store = SQLiteStore(data / "tinyboard.db")
        await store.open()
        await store.write([(key, "t", int(time.time() * 1000), 12.5)], ())
        await store.close()

    asyncio.run(write_behind_its_back())
    second = ServerThread(data).start()
    try:
        with api(second, admin) as rest:
            (alarm,) = alarms_of(rest, device_id)
            assert alarm["status"] == "CLEARED_UNACK"
            assert alarm["details"]["clearReason"] == "cleared while tinyboard was down"
    finally:
        second.stop()


def test_a_deleted_device_raises_nothing_more(server: ServerThread, rest: httpx.Client) -> None:
    device_id, board = new_device(server, "short-lived", type="ephemeral")
    rest.post(
        "/api/alarmRule",
        json={"kind": "inactivity", "deviceType": "ephemeral", "inactivitySeconds": 1},
    ).raise_for_status()
    send(board, t=1)  # its silence would raise an alarm a second from now
    board.close()
    assert rest.delete(f"/api/device/{device_id}").status_code == 200
    time.sleep(2)
    assert server.on_loop(lambda: server.server.alarms.stats.created) == 0
