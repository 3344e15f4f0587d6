"""The first hour: what `serve`, `demo`, `./scripts/demo` and the store commands tell a new
user, checked by doing what they say (the printed lines are run as they are)."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from tests.conftest import needed_tool
from tests.helpers import TINYBOARD, ServeProcess, tinyboard
from tinyboard.addresses import lan_ipv4

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clients() -> None:
    """The programs the printed lines name (a failure under CI=true, which installs them)."""
    needed_tool("mosquitto_pub", "mosquitto-clients")
    needed_tool("curl", "curl")


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


@pytest.mark.usefixtures("clients")
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


@contextmanager
def taken_port(port: int, host: str = "127.0.0.1") -> Iterator[None]:
    """Make sure `port` is taken on `host` while the block runs: hold it, or find it held."""
    with socket.socket() as holder:
        try:
            holder.bind((host, port))
            holder.listen()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        yield


class DemoProcess:
    """`tinyboard demo` as a user starts it, read up to its "Ctrl+C" line."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        self.proc = subprocess.Popen(
            [*TINYBOARD, "demo", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl+C stops everything" in line:
                break
        self.output = "".join(lines)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, err


@pytest.mark.usefixtures("clients")
def test_demo_moves_off_a_taken_default_mqtt_port_and_says_where(tmp_path: Path) -> None:
    with taken_port(1883):  # the default: Mosquitto's port, often taken
        demo = DemoProcess(tmp_path, "--bind", "127.0.0.1", "--line-port", "0", "--http-port", "0")
        try:
            moved = re.search(
                r"port 1883 \(MQTT\) is taken .*: using (\d+) instead \(choose one with "
                r"--mqtt-port\)",
                demo.output,
            )
            assert moved, demo.output
            port = int(moved.group(1))
            assert port != 1883
            assert f"MQTT on 127.0.0.1:{port}," in demo.output
            assert f"-p {port} " in printed(demo.output, "mosquitto_pub")
            # the demo's lines carry the real token of its device for readings by hand
            run_lines_and_check_stored(demo.output, "demo-by-hand", tmp_path / "tinyboard-demo")
        finally:
            code, err = demo.stop()
        assert code == 0, err


@pytest.mark.parametrize("chosen", ["flag", "environment"])
def test_a_taken_port_the_user_chose_still_fails_fast(tmp_path: Path, chosen: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = str(holder.getsockname()[1])
        flag = ["--mqtt-port", port] if chosen == "flag" else []
        env = {"TINYBOARD_MQTT_PORT": port} if chosen == "environment" else {}
        for command in ("serve", "demo"):
            started = tinyboard(
                command,
                "--bind",
                "127.0.0.1",
                "--line-port",
                "0",
                "--http-port",
                "0",
                "--no-dashboard",
                "--data-dir",
                str(tmp_path / command),
                *flag,
                env=env,
            )
            assert started.returncode == 1, started.stdout
            assert f"127.0.0.1:{port}: the port is already in use" in started.stderr
            assert "--mqtt-port PORT (or TINYBOARD_MQTT_PORT)" in started.stderr


def test_store_commands_say_which_data_dir_and_where_the_demos_is(tmp_path: Path) -> None:
    made = tinyboard("device", "add", "demo-light", "--data-dir", "tinyboard-demo", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    here = "using data dir ./tinyboard-data (set --data-dir or TINYBOARD_DATA_DIR)"
    hint = "the demo's data is in ./tinyboard-demo: add --data-dir tinyboard-demo"

    listed = tinyboard("device", "list", "--json", cwd=tmp_path)
    assert orjson.loads(listed.stdout) == []  # stdout stays the answer alone
    assert listed.stderr.splitlines() == [here, hint]
    missing = tinyboard("device", "show", "demo-light", cwd=tmp_path)
    assert missing.returncode == 1
    assert here in missing.stderr and hint in missing.stderr
    users = tinyboard("user", "list", cwd=tmp_path)
    assert hint in users.stderr

    pointed = tinyboard(
        "device", "token", "demo-light", "--data-dir", "tinyboard-demo", cwd=tmp_path
    )
    assert pointed.returncode == 0 and pointed.stdout.strip() == made.stdout.strip()
    assert pointed.stderr.splitlines() == [
        "using data dir ./tinyboard-demo (set --data-dir or TINYBOARD_DATA_DIR)"
    ]
    elsewhere = tmp_path / "elsewhere"
    by_env = tinyboard("device", "list", cwd=tmp_path, env={"TINYBOARD_DATA_DIR": str(elsewhere)})
    assert by_env.stderr.splitlines()[0] == (
        f"using data dir {elsewhere} (set --data-dir or TINYBOARD_DATA_DIR)"
    )
    migrated = tinyboard("migrate", "--data-dir", str(elsewhere), cwd=tmp_path)
    assert f"using data dir {elsewhere}" in migrated.stderr


def test_store_commands_without_a_demo_give_no_hint(tmp_path: Path) -> None:
    listed = tinyboard("device", "list", cwd=tmp_path)
    assert listed.stderr.splitlines() == [
        "using data dir ./tinyboard-data (set --data-dir or TINYBOARD_DATA_DIR)"
    ]


def test_scripts_demo_says_it_installs_and_shows_pips_progress(tmp_path: Path) -> None:
    """The first run, offline (no package index): the script says what it does before pip,
    pip's own lines show, and a failure says what to do. (A full install takes 1–2 minutes
    and the network, so it is not run here.)"""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "demo", tmp_path / "scripts" / "demo")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "src", tmp_path / "src")
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": "",
        "PIP_CONFIG_FILE": os.devnull,
    }
    ran = subprocess.run(
        [str(tmp_path / "scripts" / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    out = ran.stdout
    assert ran.returncode == 1, out + ran.stderr
    announced = out.index("installing tinyboard and its dependencies into .venv")
    assert "the first run takes 1–2 minutes" in out
    assert out.index("Obtaining file://") > announced  # pip is not --quiet: its progress shows
    assert "installing failed (pip says why above)" in ran.stderr
    assert "run ./scripts/demo again" in ran.stderr
    assert "starting the demo" not in out
    assert not (tmp_path / ".venv" / ".scripts-demo-installed").exists()
