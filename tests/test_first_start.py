"""The first hour: what `serve`, `demo`, `./scripts/demo` and the store commands tell a new
user, checked by doing what they say (the printed lines are run as they are)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.helpers import ServeProcess, tinyboard
from tinyboard.addresses import lan_ipv4

REPO = Path(__file__).resolve().parents[1]
needs_mosquitto_pub = pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None or shutil.which("curl") is None,
    reason="needs mosquitto_pub and curl (Debian: mosquitto-clients, curl)",
)


def printed(output: str, command: str) -> str:
    """The one printed line that starts with `command`."""
    found = [line.strip() for line in output.splitlines() if line.strip().startswith(command)]
    assert len(found) == 1, output
    return found[0]


def latest_ts(device: str, data_dir: Path, key: str = "temperature") -> int | None:
    shown = tinyboard("device", "show", device, "--json", "--data-dir", str(data_dir))
    assert shown.returncode == 0, shown.stderr
    point = orjson.loads(shown.stdout)["latest"].get(key)
    return None if point is None else int(point["ts"])


def run_lines_and_check_stored(
    output: str, device: str, data_dir: Path, token: str | None = None
) -> None:
    """Run the printed mosquitto_pub and curl lines (with `token` in place of the placeholder,
    when they have one) and check that each one's reading is stored: a newer latest
    temperature after each."""
    before = latest_ts(device, data_dir)
    for command in ("mosquitto_pub", "curl"):
        line = printed(output, command)
        if token is not None:
            line = line.replace("TOKEN", token)
        sent = subprocess.run(
            ["bash", "-c", line], capture_output=True, text=True, timeout=30, check=False
        )
        assert sent.returncode == 0, f"{line}\n{sent.stdout}{sent.stderr}"
        if command == "mosquitto_pub":
            assert "received PUBACK" in sent.stdout + sent.stderr  # QoS 1: acked after commit
        else:
            assert sent.stdout == "", sent.stdout  # 200 with an empty body, not an error
        after = latest_ts(device, data_dir)
        assert after is not None and (before is None or after > before), command
        before = after


@needs_mosquitto_pub
def test_serve_prints_lines_that_store_a_reading_on_its_own_ports(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServeProcess(data, "--bind", "0.0.0.0", "--no-dashboard")
    try:
        server.admin_password  # noqa: B018 - read through the last announced line
        output = "".join(server.output)
        mqtt_line = printed(output, "mosquitto_pub")
        assert f"-p {server.mqtt_port} " in mqtt_line and " -q 1 " in mqtt_line
        assert f":{server.http_port}/api/v1/TOKEN/telemetry" in printed(output, "curl")
        host = lan_ipv4()[0] if lan_ipv4() else "127.0.0.1"
        assert f"-h {host} " in mqtt_line  # a board could use this line as it is
        add = re.search(r"`([^`]*device add NAME[^`]*)`", output)
        assert add, output
        made = subprocess.run(
            ["bash", "-c", add.group(1).replace("NAME", "kitchen")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert made.returncode == 0, made.stderr
        run_lines_and_check_stored(output, "kitchen", data, token=made.stdout.strip())
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait()[0] == 0


@pytest.mark.skipif(not lan_ipv4(), reason="this machine has no LAN address")
def test_serve_names_every_lan_address_with_its_dashboard(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "data", "--bind", "0.0.0.0")
    try:
        server.admin_password  # noqa: B018 - read through the last announced line
        output = "".join(server.output)
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait()[0] == 0
    assert f"boards on the LAN connect to this machine at (MQTT port {server.mqtt_port}" in output
    for address in lan_ipv4():
        assert re.search(
            rf"^  {re.escape(address)} +dashboard http://{re.escape(address)}:"
            rf"{server.http_port}/$",
            output,
            re.M,
        ), output
    assert "cannot reach" not in output


def test_serve_on_loopback_says_boards_cannot_reach_it(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "data", "--no-dashboard")  # bound to 127.0.0.1
    try:
        server.admin_password  # noqa: B018 - read through the last announced line
        output = "".join(server.output)
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait()[0] == 0
    assert "listening on 127.0.0.1 only: boards on the LAN cannot reach this server" in output
    assert "--bind 0.0.0.0" in output
    assert "boards on the LAN connect" not in output
    assert f"-h 127.0.0.1 -p {server.mqtt_port} " in printed(output, "mosquitto_pub")
