"""`tinyboard demo`: a server and two simulated ESP8266 boards in one process, so a new user
sees live temperatures, light and an alarm in the dashboard within a minute.

The boards connect over MQTT with the firmware's token and topics, to the port the server really
bound. The demo keeps its own data directory; each start gives the demo user a fresh
password and prints it with the dashboard's address.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any

from tinyboard.addresses import local_host
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


async def run_demo(config: Config) -> None:
    server = Server(config)
    serving = asyncio.create_task(server.serve())
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({serving, ready}, return_when=asyncio.FIRST_COMPLETED)
    if serving.done():
        ready.cancel()
        serving.result()  # start-up failed: raise why
        return
    store = server.store
    identities = []
    for name, kind in DEVICES:
        try:
            device = await store.get_device(name)
        except NotFoundError:
            device = await store.create_device(name, type=kind)
        await give_units(server, device)
        identities.append(Identity(device.name, device.token))
    if "demo-too-hot" not in server.alarms.rules:
        await server.alarms.save_rule(DEMO_RULE)
    password = secrets.token_urlsafe(9)
    hashed = await asyncio.to_thread(hash_password, password)
    try:
        await store.create_user(DEMO_USER, hashed, role="TENANT_ADMIN")
    except ConflictError:
        await store.set_password_hash(DEMO_USER, hashed)
    host = local_host(config.bind)
    print(
        f"\ndemo: two simulated ESP8266 boards send every {DEMO_INTERVAL:g} s over MQTT.\n"
        f"  Dashboard: http://{host}:{server.ports['http_port']}/  "
        f"log in as {DEMO_USER} / {password}\n"
        f"  In about a minute the temperature board overheats and the rule "
        f'"{DEMO_RULE["name"]}" raises an alarm.\n  Ctrl+C stops everything.\n',
        flush=True,
    )
    boards = build_boards(
        identities,
        protocol="mqtt",
        host=local_host(config.bind),
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
