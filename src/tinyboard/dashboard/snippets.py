"""Ready-to-paste snippets that connect a device with its token (shown when it is added)."""

from __future__ import annotations

import json
from urllib.parse import quote


def arduino(host: str, mqtt_port: int, token: str) -> str:
    """The settings block of a ThingsBoard Arduino SDK sketch (and of firmware/esp8266)."""
    return (
        f"constexpr char THINGSBOARD_SERVER[] = {json.dumps(host)};\n"
        f"constexpr uint16_t THINGSBOARD_PORT = {mqtt_port}U;\n"
        f"constexpr char TOKEN[] = {json.dumps(token)};\n"
    )


def mosquitto_pub(host: str, mqtt_port: int, token: str) -> str:
    return (
        f"mosquitto_pub -d -q 1 -h {host} -p {mqtt_port} -t v1/devices/me/telemetry "
        f"-u {_shell(token)} -m '{{\"temperature\": 25}}'"
    )


def curl(host: str, http_port: int, token: str) -> str:
    return (
        f"curl -X POST http://{host}:{http_port}/api/v1/{quote(token, safe='')}/telemetry "
        "-H 'Content-Type: application/json' -d '{\"temperature\": 25}'"
    )


def _shell(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"
