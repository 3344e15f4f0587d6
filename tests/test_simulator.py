"""The simulated ESP8266 boards: sensor models, every protocol against a real server,
buffering through a server restart, shared attributes and RPC, the CLI and `tinyboard demo`."""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import TINYBOARD, ServerThread, tinyboard
from tests.web_helpers import api
from tinyboard.server import new_loop
from tinyboard.sim.board import Board
from tinyboard.sim.fleet import Identity, build_boards, read_tokens
from tinyboard.sim.sensors import Sensors

DAY = 86_400


def test_sensors_follow_the_day_and_the_fault() -> None:
    midnight = 1_800_000_000 - 1_800_000_000 % DAY
    board = Sensors("temperature", seed=1)
    afternoon = board.read(midnight + 15 * 3600)["temperature"]
    night = board.read(midnight + 3 * 3600)["temperature"]
    assert afternoon - night > 6  # a daily cycle of ±4 °C around 21 °C
    assert Sensors("temperature", seed=1).read(midnight) == Sensors("temperature", seed=1).read(
        midnight
    )  # seeded: runs repeat
    light = Sensors("light", seed=2)
    assert light.read(midnight + 2 * 3600)["light"] < 20  # night
    assert light.read(midnight + 12 * 3600)["light"] > 700  # noon
    faulty = Sensors("temperature", seed=3, fault_after=60, started=midnight)
    before = faulty.read(midnight + 59)["temperature"]
    after = faulty.read(midnight + 61)["temperature"]
    assert after - before > 13


def test_tokens_files(tmp_path: Path) -> None:
    listed = tmp_path / "tokens.json"
    listed.write_text(json.dumps([{"name": "a", "token": "t1"}]))
    assert read_tokens(listed) == [Identity("a", "t1")]
    plain = tmp_path / "tokens.txt"
    plain.write_text("t1\n\nt2\n")
    assert read_tokens(plain) == [Identity("board-1", "t1"), Identity("board-2", "t2")]


def run_boards(boards: list[Board], seconds: float) -> None:
    async def go() -> None:
        await asyncio.gather(*(b.run(time.time() + seconds) for b in boards))

    new_loop()(go())


def stored(server: ServerThread, name: str, key: str) -> list[int]:
    device = server.call(server.server.store.get_device(name))
    points = server.call(
        server.server.store.history(device.key, key, start_ts=0, end_ts=2**62, limit=10_000)
    )
    return sorted(ts for ts, _ in points)


@pytest.mark.parametrize("protocol", ["line", "mqtt", "http"])
def test_every_protocol_stores_what_it_acknowledged(server: ServerThread, protocol: str) -> None:
    devices = [server.add_device(f"{protocol}-{i}") for i in range(2)]
    port = {"line": server.line_port, "mqtt": server.mqtt_port, "http": server.http_port}
    boards: list[Board] = []

    async def go() -> None:
        async with httpx.AsyncClient() as http:
            boards.extend(
                build_boards(
                    [Identity(d.name, d.token) for d in devices],
                    protocol=protocol,  # type: ignore[arg-type]
                    host="127.0.0.1",
                    port=port[protocol],
                    interval=0.2,
                    http=http,
                )
            )
            await asyncio.gather(*(b.run(time.time() + 1.5) for b in boards))

    new_loop()(go())
    temperature, light = boards
    assert temperature.stats.acked >= 5 and temperature.stats.failures == 0
    assert len(stored(server, devices[0].name, "temperature")) == temperature.stats.acked
    assert len(stored(server, devices[0].name, "humidity")) == temperature.stats.acked
    assert len(stored(server, devices[1].name, "light")) == light.stats.acked


def free_port() -> int:
    """A port that is free now and outside Linux's ephemeral range (32768-60999), so no
    outgoing connection of this test run takes it before the server binds it again."""
    while True:
        port = random.randint(20_000, 32_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@pytest.mark.parametrize("protocol", ["mqtt", "http", "line"])
def test_readings_taken_while_the_server_is_down_arrive_later(
    tmp_path: Path, protocol: str
) -> None:
    ports = {"mqtt_port": free_port(), "line_port": free_port(), "http_port": free_port()}
    port = ports[f"{protocol}_port"]
    first = ServerThread(tmp_path / "data", **ports).start()
    device = first.add_device("survivor")
    outage: dict[str, float] = {}
    second: list[ServerThread] = []
    boards: list[Board] = []

    def outage_then_restart() -> None:
        time.sleep(1.0)
        outage["from"] = time.time()
        first.stop()
        time.sleep(2.0)
        outage["to"] = time.time()
        second.append(ServerThread(tmp_path / "data", **ports).start())

    async def go() -> None:
        async with httpx.AsyncClient() as http:
            boards.extend(
                build_boards(
                    [Identity(device.name, device.token)],
                    protocol=protocol,  # type: ignore[arg-type]
                    host="127.0.0.1",
                    port=port,
                    interval=0.2,
                    http=http,
                )
            )
            boards[0].jitter = 0.0
            # reconnects after its backoff (1 s, 2 s ...) and catches up
            await boards[0].run(time.time() + 9.0)

    restarter = threading.Thread(target=outage_then_restart)
    restarter.start()
    new_loop()(go())
    restarter.join()
    (board,) = boards
    try:
        times = stored(second[0], "survivor", "temperature")
        assert board.stats.failures >= 1
        assert board.stats.failures <= 4  # backing off, not one try per reading (~10)
        taken_offline = [ts for ts in times if outage["from"] * 1000 < ts < outage["to"] * 1000]
        assert len(taken_offline) >= 5  # measured during the outage, stored with their own time
        # every reading once, with the time it was taken: a retried one is not stored twice
        assert len(times) == board.stats.taken == board.stats.acked
        assert len(board.buffer) == 0
    finally:
        second[0].stop()


def test_boards_follow_shared_attributes_and_answer_rpc(server: ServerThread) -> None:
    device = server.add_device("obedient")
    (board,) = build_boards(
        [Identity(device.name, device.token)],
        protocol="mqtt",
        host="127.0.0.1",
        port=server.mqtt_port,
        interval=30,
    )
    answers: dict[str, Any] = {}
    shared = f"/api/plugins/telemetry/DEVICE/{device.id}/attributes/SHARED_SCOPE"
    with api(server) as rest:  # set while the board is away: it asks for it on connect
        rest.post(shared, json={"interval": 0.25}).raise_for_status()

    def until(interval: float) -> None:
        deadline = time.monotonic() + 10
        while board.interval != interval:
            assert time.monotonic() < deadline, f"the board never took interval {interval}"
            time.sleep(0.01)

    def operator() -> None:
        until(0.25)  # asked for after subscribing: the board follows pushes and RPCs now
        with api(server) as rest:
            rest.post(shared, json={"interval": 0.2}).raise_for_status()
            until(0.2)  # pushed
            answers["led"] = rest.post(
                f"/api/rpc/twoway/{device.id}",
                json={"method": "setLed", "params": {"enabled": True}},
            ).json()
            answers["reading"] = rest.post(
                f"/api/rpc/twoway/{device.id}", json={"method": "getReading", "params": {}}
            ).json()
            answers["unknown"] = rest.post(
                f"/api/rpc/twoway/{device.id}", json={"method": "selfDestruct", "params": {}}
            ).json()

    thread = threading.Thread(target=operator)
    thread.start()
    run_boards([board], 3.0)
    thread.join()
    assert board.interval == 0.2
    assert board.stats.taken >= 5  # one reading, then every 0.25 s or faster
    assert answers["led"] == {"led": True} and board.led is True
    assert set(answers["reading"]) == {"temperature", "humidity"}
    assert "unknown method" in answers["unknown"]["error"]


def test_simulate_command_with_a_tokens_file(server: ServerThread, tmp_path: Path) -> None:
    devices = [server.add_device(f"cli-{i}") for i in range(3)]
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps([{"name": d.name, "token": d.token} for d in devices]))
    result = tinyboard(
        "simulate", "--tokens", str(tokens), "--port", str(server.mqtt_port),
        "--rate", "30", "--duration", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    match = re.search(
        r"3 boards, ([\d.]+) s: (\d+) readings taken, (\d+) acknowledged", result.stdout
    )
    assert match, result.stdout
    elapsed, taken, acked = float(match.group(1)), int(match.group(2)), int(match.group(3))
    # paced at 30/s over the run it reports (plus one second's worth for the start), not
    # as fast as the server acks; a loaded machine stretches the run, not the rate
    assert 0 < taken <= 30 * (elapsed + 1) and acked == taken
    stored_total = sum(len(stored(server, d.name, "temperature")) for d in devices[::2])
    stored_total += len(stored(server, devices[1].name, "light"))
    assert stored_total == acked


def test_simulate_creates_its_devices_over_rest(server: ServerThread) -> None:
    _, password = server.admin
    result = tinyboard(
        "simulate", "--create", "2", "--prefix", "made-", "--password", password,
        "--http-port", str(server.http_port), "--port", str(server.mqtt_port),
        "--interval", "0.3", "--duration", "1.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(stored(server, "made-1", "temperature")) >= 3
    assert len(stored(server, "made-2", "light")) >= 3
    made = server.call(server.server.store.get_device("made-1"))
    assert made.type == "esp8266-temperature"
    again = tinyboard(  # the same names again: the devices are reused, not duplicated
        "simulate", "--create", "2", "--prefix", "made-", "--password", password,
        "--http-port", str(server.http_port), "--port", str(server.mqtt_port),
        "--interval", "0.3", "--duration", "0.5",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert server.call(server.server.store.count_devices(text_search="made-")) == 2


def test_simulate_says_what_is_missing() -> None:
    result = tinyboard("simulate")
    assert result.returncode == 1
    assert "give one of --token TOKEN, --tokens FILE or --create N" in result.stderr
    result = tinyboard("simulate", "--create", "2")
    assert result.returncode == 1 and "--password" in result.stderr


def test_demo_starts_a_server_with_two_live_boards(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            *TINYBOARD, "demo", "--line-port", "0", "--mqtt-port", "0", "--http-port", "0",
            "--bind", "127.0.0.1", "--data-dir", str(tmp_path / "demo"),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        login = None
        deadline = time.monotonic() + 30
        while login is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            login = re.search(r"Dashboard: (http://\S+)/\s+log in as (\S+) / (\S+)", line)
        assert login, "the demo did not print its dashboard and login"
        base, user, password = login.groups()
        with httpx.Client(base_url=base, timeout=10) as rest:
            assert rest.get("/").headers["location"] == "/ui/devices"
            token = rest.post(
                "/api/auth/login", json={"username": user, "password": password}
            ).json()["token"]
            rest.headers["X-Authorization"] = f"Bearer {token}"
            names = {d["name"]: d["id"]["id"] for d in rest.get(
                "/api/tenant/devices", params={"pageSize": 10}
            ).json()["data"]}  # fmt: skip
            assert set(names) == {"demo-temperature", "demo-light", "demo-by-hand"}
            assert [r["alarmType"] for r in rest.get("/api/alarmRules").json()] == ["Too hot"]
            units = rest.get(
                f"/api/plugins/telemetry/DEVICE/{names['demo-light']}/values/attributes/SERVER_SCOPE"
            ).json()
            # the dashboard shows the boards' units (dashboard/units.py)
            assert [(a["key"], a["value"]) for a in units] == [
                ("units", {"light": {"units": "lx", "decimals": 0}})
            ]

            def latest(name: str, key: str) -> list[Any]:
                url = f"/api/plugins/telemetry/DEVICE/{names[name]}/values/timeseries"
                values: list[Any] = rest.get(url, params={"keys": key}).json()[key]
                return [v for v in values if v["value"] is not None]  # none yet: ts now, null

            deadline = time.monotonic() + 15
            while not (latest("demo-temperature", "temperature") and latest("demo-light", "light")):
                assert time.monotonic() < deadline, "no telemetry from the demo boards"
                time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
