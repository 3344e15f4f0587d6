"""The real ThingsBoard IoT Gateway (`thingsboard-gateway` 3.8.5, its socket connector)
against tinyboard, unchanged: a byte string sent to the connector's TCP socket becomes a
reading of the child device the connector names, created with the connector's device type.

The gateway is a separate program with many dependencies of its own, so it is not in the
project's environment: `scripts/test` installs it in `.venv-tbgw` beside `.venv` and points
the test at it with `TINYBOARD_TB_GATEWAY`. By hand:

    python -m venv .venv-tbgw && .venv-tbgw/bin/pip install thingsboard-gateway==3.8.5
    TINYBOARD_TB_GATEWAY=.venv-tbgw/bin/thingsboard-gateway pytest tests/test_tb_gateway_socket.py

Without it the test is skipped (a failure under CI=true).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.helpers import ServerThread
from tinyboard.core.models import Device

pytestmark = pytest.mark.slow

GATEWAY = os.environ.get("TINYBOARD_TB_GATEWAY") or shutil.which("thingsboard-gateway")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_for(condition: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def write_config(config: Path, mqtt_port: int, token: str, socket_port: int) -> None:
    config.mkdir()
    (config / "tb_gateway.json").write_text(json.dumps({
        "thingsboard": {
            "host": "127.0.0.1", "port": mqtt_port, "remoteShell": False,
            "remoteConfiguration": False,
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 3600,
                           "customStatsSendPeriodInSeconds": 3600},
            "deviceFiltering": {"enable": False}, "maxPayloadSizeBytes": 8196,
            "minPackSendDelayMS": 50, "minPackSizeToSend": 500,
            "checkConnectorsConfigurationInSeconds": 60, "handleDeviceRenaming": False,
            "security": {"type": "accessToken", "accessToken": token}, "qos": 1,
            "reportStrategy": {"type": "ON_RECEIVED"},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
        },
        "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 100000},
        "grpc": {"enabled": False},
        "connectors": [{"type": "socket", "name": "Socket", "configuration": "socket.json"}],
    }))  # fmt: skip
    (config / "socket.json").write_text(json.dumps({
        "socket": {"address": "127.0.0.1", "type": "TCP", "port": socket_port,
                   "bufferSize": 1024},
        "devices": [{
            "address": "*:*", "deviceName": "Socket Sensor", "deviceType": "socket-sensor",
            "encoding": "utf-8", "telemetry": [{"key": "temp", "byteFrom": 0, "byteTo": -1}],
            "attributes": [], "attributeRequests": [], "attributeUpdates": [],
            "serverSideRpc": [],
        }],
    }))  # fmt: skip
    (config / "logs.json").write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False,
        "handlers": {"console": {"class": "logging.StreamHandler", "level": "INFO"}},
        "root": {"level": "INFO", "handlers": ["console"]},
    }))  # fmt: skip


@pytest.fixture
def tb_gateway(server: ServerThread, tmp_path: Path) -> Iterator[tuple[Device, int]]:
    if GATEWAY is None:
        if IN_CI:
            pytest.fail("thingsboard-gateway is missing; scripts/test installs it in .venv-tbgw")
        pytest.skip("thingsboard-gateway is not installed (see this module's docstring)")
    gateway = server.add_device("tb-iot-gateway", additional_info={"gateway": True})
    socket_port = free_port()
    write_config(tmp_path / "config", server.mqtt_port, gateway.token, socket_port)
    env = {**os.environ, "TB_GW_CONFIG_DIR": str(tmp_path / "config")}
    proc = subprocess.Popen(
        [GATEWAY], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: server.on_loop(lambda: server.server.hub.is_connected(gateway.id)))
        yield gateway, socket_port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_the_socket_connector_creates_its_device_and_stores_its_readings(
    server: ServerThread, tb_gateway: tuple[Device, int]
) -> None:
    gateway, socket_port = tb_gateway
    sensor = wait_for(lambda: _connect(socket_port))
    with sensor:
        sensor.sendall(b"23")

        def stored() -> Any:
            try:
                device = server.call(server.server.store.get_device("Socket Sensor"))
            except Exception:
                return None
            return device if server.call(server.server.store.latest(device.key)) else None

        device = wait_for(stored)
    assert device.type == "socket-sensor"
    assert device.additional_info["lastConnectedGateway"] == gateway.id
    latest = server.call(server.server.store.latest(device.key))
    assert latest["temp"][1] == "23"  # the socket connector sends text
    assert server.on_loop(lambda: bool(server.server.registry.for_device(device.id)))


def _connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return None
