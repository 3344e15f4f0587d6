"""The ESP8266 firmware: its portable core unit-tested with g++, cross-compiled for the
ESP8266 CPU with Debian's xtensa-lx106 toolchain, and the TCP sketch built on this machine
against a POSIX stand-in for ESP8266WiFi and run against a real tinyboard server."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.conftest import needed_tool
from tests.helpers import ServerThread

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware" / "esp8266"
CORE = FIRMWARE / "libraries" / "TinyboardCore" / "src"
STRICT = ["-std=c++17", "-Wall", "-Wextra", "-Werror"]


def tool(name: str) -> str:
    return needed_tool(name, "g++ gcc-xtensa-lx106")


def build_sketch(tmp_path: Path, port: int, token: str, interval_ms: int = 200) -> Path:
    binary = tmp_path / "tinyboard_tcp"
    subprocess.run(
        [
            tool("g++"), *STRICT, f"-I{FIRMWARE / 'host'}", f"-I{CORE}",
            '-DTINYBOARD_HOST="127.0.0.1"', f"-DTINYBOARD_PORT={port}",
            f'-DTINYBOARD_TOKEN="{token}"', f"-DINTERVAL_MS={interval_ms}UL",
            "-x", "c++", str(FIRMWARE / "tinyboard_tcp" / "tinyboard_tcp.ino"),
            "-x", "none", str(FIRMWARE / "host" / "main.cpp"), str(CORE / "TinyboardCore.cpp"),
            "-o", str(binary),
        ],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return binary


def run_sketch(binary: Path, seconds: int) -> str:
    done = subprocess.run(
        [str(binary)],
        env={**os.environ, "TB_HOST_SECONDS": str(seconds)},
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    return done.stdout


def test_the_core_passes_its_unit_tests_on_the_host(tmp_path: Path) -> None:
    binary = tmp_path / "test_core"
    subprocess.run(
        [
            tool("g++"), *STRICT, "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            f"-I{CORE}",
            str(FIRMWARE / "test" / "test_core.cpp"), str(CORE / "TinyboardCore.cpp"),
            "-o", str(binary),
        ],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    done = subprocess.run([str(binary)], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all TinyboardCore tests passed" in done.stdout


def test_the_core_builds_for_the_esp8266_cpu(tmp_path: Path) -> None:
    compiler = tool("xtensa-lx106-elf-g++")
    obj = tmp_path / "core.o"
    subprocess.run(
        [
            compiler, *STRICT, "-Os", "-ffreestanding", "-fno-exceptions", "-fno-rtti",
            "-mlongcalls", "-mtext-section-literals", "-c", str(CORE / "TinyboardCore.cpp"),
            "-o", str(obj),
        ],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    header = subprocess.run(
        [tool("xtensa-lx106-elf-objdump"), "-f", str(obj)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "elf32-xtensa-le" in header
    symbols = subprocess.run(
        [tool("xtensa-lx106-elf-nm"), "-C", str(obj)], check=True, capture_output=True, text=True
    ).stdout
    assert "tinyboard::format_pairs" in symbols and "tinyboard::Backoff::next" in symbols


def test_the_mqtt_sketch_compiles_against_the_libraries_interfaces() -> None:
    """Arduino's ESP8266 core and PubSubClient are not on this machine: their interfaces are
    (firmware/esp8266/host), so at least every call the sketch makes is checked."""
    subprocess.run(
        [
            tool("g++"), *STRICT, "-fsyntax-only", f"-I{FIRMWARE / 'host'}", f"-I{CORE}",
            "-x", "c++", str(FIRMWARE / "tinyboard_mqtt" / "tinyboard_mqtt.ino"),
        ],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_tcp_sketch_sends_readings_that_are_stored(
    server: ServerThread, tmp_path: Path
) -> None:
    device = server.add_device("esp-kitchen")
    binary = build_sketch(tmp_path, server.line_port, device.token)
    output = run_sketch(binary, 3)
    assert "server: OK esp-kitchen" in output
    echoes = re.findall(r"server: TEMPERATURE=[\d.]+ HUMIDITY=45\.0", output)
    assert len(echoes) >= 8  # every 200 ms for 3 s, each echoed after it was stored
    points = server.call(
        server.server.store.history(device.key, "temperature", start_ts=0, end_ts=2**62)
    )
    assert len(points) >= len(echoes)
    assert all(19 <= value <= 23 for _, value in points)  # type: ignore[operator]


def test_the_tcp_sketch_says_when_the_token_is_wrong_and_backs_off(
    server: ServerThread, tmp_path: Path
) -> None:
    binary = build_sketch(tmp_path, server.line_port, "not-a-token")
    output = run_sketch(binary, 4)
    assert "server: ERROR unknown token" in output
    waits = [int(w) for w in re.findall(r"retrying in (\d+) ms", output)]
    assert len(waits) >= 2
    assert 1000 <= waits[0] <= 1100 and 2000 <= waits[1] <= 2200  # doubling, 10 % jitter
