"""What `serve` and `demo` print once they listen: where boards connect, and two test
readings to copy and paste, with the ports really bound.

A reading sent to the wrong port is lost without a word (another broker may own 1883), so
every line here names the host and port this server actually listens on, never a default.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tinyboard.addresses import WILDCARDS, board_hosts, local_host, url_host
from tinyboard.dashboard import snippets

PLACEHOLDER = "TOKEN"
"""Stands for a device's access token in the test lines `serve` prints."""


def example_host(bind: str) -> str:
    """The host the test lines send to: the first address a board could use too, so a line
    that works here also works from another machine; this machine's when there is none."""
    hosts = board_hosts(bind)
    return hosts[0] if hosts else local_host(bind)


def local_lines(bind: str, http_port: int, *, dashboard: bool) -> list[str]:
    base = f"http://{url_host(local_host(bind))}:{http_port}"
    if not dashboard:
        return [f"REST API and its docs: {base}/docs"]
    return [f"dashboard: {base}/ (on this machine); REST API and its docs: {base}/docs"]


def board_lines(bind: str, ports: dict[str, int], *, dashboard: bool) -> list[str]:
    """Every address a board on the LAN may use, or why none can reach this server."""
    hosts = board_hosts(bind)
    if not hosts and bind in WILDCARDS:
        return [
            "boards cannot reach this machine yet: it has no LAN address (is it on a "
            "network?). Connect it, then restart tinyboard to see the address to use."
        ]
    if not hosts:
        return [
            f"listening on {bind} only: boards on the LAN cannot reach this server. To let "
            "them, start it with --bind 0.0.0.0 (or TINYBOARD_BIND=0.0.0.0)."
        ]
    lines = [
        f"boards on the LAN connect to this machine at (MQTT port {ports['mqtt_port']}, "
        f"HTTP port {ports['http_port']}, line protocol port {ports['line_port']}):"
    ]
    width = max(len(h) for h in hosts)
    for host in hosts:
        where = f"http://{url_host(host)}:{ports['http_port']}"
        page = f"dashboard {where}/" if dashboard else f"REST API {where}/docs"
        lines.append(f"  {host:<{width}}  {page}")
    return lines


def try_lines(host: str, ports: dict[str, int], token: str) -> list[str]:
    """A telemetry reading over MQTT (QoS 1, with mosquitto_pub's debug lines) and HTTP."""
    return [
        "  " + snippets.mosquitto_pub(host, ports["mqtt_port"], token),
        "  " + snippets.curl(f"http://{url_host(host)}:{ports['http_port']}", token),
    ]


def program() -> str:
    """How to run tinyboard again from the user's shell: the name on PATH, the path it was
    started by (`.venv/bin/tinyboard`), or `python -m tinyboard`."""
    started = Path(sys.argv[0])
    if started.name != "tinyboard":
        return f"{sys.executable} -m tinyboard"
    found = shutil.which("tinyboard")
    if found is not None and Path(found).resolve() == started.resolve():
        return "tinyboard"
    return sys.argv[0]
