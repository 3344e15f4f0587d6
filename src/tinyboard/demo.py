"""`tinyboard demo`: a server and two simulated ESP8266 boards in one process, so a new user
sees live temperatures, light and an alarm in the dashboard within a minute.

The boards connect over MQTT with the firmware's token and topics, to the port the server really
bound. The demo keeps its own data directory; each start gives the demo user a fresh
password and prints it with the dashboard's address. A port the user did not choose moves to
the next free one when it is taken (Mosquitto often holds 1883): a first look should not stop
at a busy port. `serve` still fails fast instead, since boards are configured for its ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import secrets
import socket
import time
from collections.abc import Collection
from typing import Any

from tinyboard import announce
from tinyboard.addresses import local_host, url_host
from tinyboard.config import Config
from tinyboard.core.models import Device
from tinyboard.core.users import hash_password
from tinyboard.errors import ConflictError, NotFoundError
from tinyboard.server import Server
from tinyboard.sim.fleet import Identity, build_boards

DEMO_USER = "demo@tinyboard.local"
DEMO_INTERVAL = 2.0
FAULT_AFTER = 60.0
"""The temperature board's sensor jumps 15 °C after a minute, so the demo's rule fires."""
DEVICES = (("demo-temperature", "esp8266-temperature"), ("demo-light", "esp8266-light"))
BY_HAND = "demo-by-hand"
"""The device the printed test lines send to: the user's own readings, apart from the boards'."""
PORTS = {"line_port": "line protocol", "mqtt_port": "MQTT", "http_port": "HTTP"}
PORT_TRIES = 100
DEMO_UNITS: dict[str, dict[str, Any]] = {
    "esp8266-temperature": {
        "temperature": {"units": "°C", "decimals": 1},
        "humidity": {"units": "%", "decimals": 0},
    },
    "esp8266-light": {"light": {"units": "lx", "decimals": 0}},
}
"""The boards' keys (sim/sensors.py) with their units, in the server attribute `units` that
the dashboard reads (dashboard/units.py; a documented name, like a REST path)."""
UNITS = "units"
DEMO_RULE = {
    "id": "demo-too-hot",
    "name": "Demo: too hot",
    "deviceType": "esp8266-temperature",
    "key": "temperature",
    "condition": {"op": ">", "value": 30},
    "clearCondition": {"op": "<", "value": 28},
    "forSeconds": 5,
    "severity": "MAJOR",
    "alarmType": "Too hot",
}


async def give_units(server: Server, device: Device) -> None:
    """Set the demo units on a demo board, unless someone has set its units already."""
    if not await server.store.attributes(device.key, "SERVER", [UNITS]):
        await server.attributes.update_server(device, {UNITS: DEMO_UNITS[device.type]})


async def run_demo(config: Config, movable: Collection[str] = ()) -> None:
    """Run the demo until a signal; ports named in `movable` (settings the user did not
    choose) move to the next free port when taken."""
    config = free_ports(config, movable)
    server = Server(config, announce_examples=False)
    serving = asyncio.create_task(server.serve())
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({serving, ready}, return_when=asyncio.FIRST_COMPLETED)
    if serving.done():
        ready.cancel()
        serving.result()  # start-up failed: raise why
        return
    identities = [await _device(server, name, kind) for name, kind in DEVICES]
    by_hand = await _device(server, BY_HAND, "default")
    if "demo-too-hot" not in server.alarms.rules:
        await server.alarms.save_rule(DEMO_RULE)
    password = await _demo_password(server)
    host = local_host(config.bind)
    print(
        f"\ndemo: two simulated ESP8266 boards send every {DEMO_INTERVAL:g} s over MQTT.\n"
        f"  Dashboard: http://{url_host(host)}:{server.ports['http_port']}/  "
        f"log in as {DEMO_USER} / {password}\n"
        f"  In about a minute the temperature board overheats and the rule "
        f'"{DEMO_RULE["name"]}" raises an alarm.\n'
        f"  Send a reading of your own to the device {BY_HAND} (these lines carry its token):\n"
        + "\n".join(
            "  " + line
            for line in announce.try_lines(
                announce.example_host(config.bind), server.ports, by_hand.token
            )
        )
        + "\n  Ctrl+C stops everything.\n",
        flush=True,
    )
    boards = build_boards(
        identities,
        protocol="mqtt",
        host=host,
        port=server.ports["mqtt_port"],
        interval=DEMO_INTERVAL,
        fault_after=FAULT_AFTER,
        started=time.time(),
    )
    running = [asyncio.create_task(b.run(), name=f"board {b.name}") for b in boards]
    try:
        await serving
    finally:
        for task in running:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*running, return_exceptions=True)


async def _device(server: Server, name: str, kind: str) -> Identity:
    try:
        device = await server.store.get_device(name)
    except NotFoundError:
        device = await server.store.create_device(name, type=kind)
    if kind in DEMO_UNITS:
        await give_units(server, device)
    return Identity(device.name, device.token)


async def _demo_password(server: Server) -> str:
    """A fresh password for the demo user on every start (printed, never stored in clear)."""
    password = secrets.token_urlsafe(9)
    hashed = await asyncio.to_thread(hash_password, password)
    try:
        await server.store.create_user(DEMO_USER, hashed, role="TENANT_ADMIN")
    except ConflictError:
        await server.store.set_password_hash(DEMO_USER, hashed)
    return password


def free_ports(config: Config, movable: Collection[str]) -> Config:
    """`config` with each taken port in `movable` replaced by the next free one, said aloud."""
    changes: dict[str, int] = {}
    for setting in movable:
        wanted: int = getattr(config, setting)
        port = next_free_port(config.bind, wanted)
        if port is not None and port != wanted:
            flag = "--" + setting.replace("_", "-")
            print(
                f"demo: port {wanted} ({PORTS[setting]}) is taken by another program"
                f"{' (another MQTT broker, such as Mosquitto?)' if setting == 'mqtt_port' else ''}"
                f": using {port} instead (choose one with {flag})",
                flush=True,
            )
            changes[setting] = port
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def next_free_port(host: str, first: int) -> int | None:
    """The first port from `first` on that a listener can bind on `host` (as the server
    binds: with SO_REUSEADDR), or None when none of the next `PORT_TRIES` is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in range(first, min(first + PORT_TRIES, 65536)):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                return None  # not a busy port (no such address?): the server will say why
            return port
    return None
