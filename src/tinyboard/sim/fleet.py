"""A fleet of simulated boards: where their tokens come from, how they connect, and the
summary of a run.

Tokens come from a file (JSON `[{"name": ..., "token": ...}]`, or one token per line) or
are made through the REST API (`--create N`), which also works against ThingsBoard.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from tinyboard.sim.board import Board
from tinyboard.sim.links import HttpLink, LineLink, Link, MqttLink
from tinyboard.sim.sensors import BoardKind, Sensors

Protocol = Literal["line", "mqtt", "http"]
DEFAULT_PORTS: dict[str, int] = {"line": 12000, "mqtt": 1883, "http": 8080}


class FleetError(Exception):
    """The fleet cannot be set up; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    token: str


def read_tokens(path: Path) -> list[Identity]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise FleetError(f"cannot read the tokens file {path}: {exc.strerror}") from None
    if text.lstrip().startswith("["):
        try:
            entries = json.loads(text)
            return [Identity(str(e["name"]), str(e["token"])) for e in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise FleetError(
                f'{path}: expected [{{"name": ..., "token": ...}}, ...] ({exc})'
            ) from None
    return named([line.strip() for line in text.splitlines() if line.strip()])


def named(tokens: list[str]) -> list[Identity]:
    """Boards for bare tokens: board-1, board-2, ..."""
    return [Identity(f"board-{i + 1}", token) for i, token in enumerate(tokens)]


def create_devices(
    base_url: str, username: str, password: str, count: int, prefix: str
) -> list[Identity]:
    """`count` devices named prefix1, prefix2, ... over the REST API (existing ones reused)."""
    with httpx.Client(base_url=base_url, timeout=30) as rest:
        try:
            login = rest.post("/api/auth/login", json={"username": username, "password": password})
        except httpx.HTTPError as exc:
            raise FleetError(f"cannot reach the REST API at {base_url}: {exc}") from None
        if login.status_code != 200:
            raise FleetError(f"login as {username} failed: {login.text[:200]}")
        rest.headers["X-Authorization"] = f"Bearer {login.json()['token']}"
        made = []
        for i in range(1, count + 1):
            name = f"{prefix}{i}"
            kind = kind_of(i - 1)
            created = rest.post("/api/device", json={"name": name, "type": f"esp8266-{kind}"})
            if created.status_code == 200:
                device_id = created.json()["id"]["id"]
            else:
                found = rest.get("/api/tenant/devices", params={"deviceName": name})
                if found.status_code != 200:
                    raise FleetError(f"cannot create {name}: {created.text[:200]}")
                device_id = found.json()["id"]["id"]
            credentials = rest.get(f"/api/device/{device_id}/credentials").json()
            made.append(Identity(name, credentials["credentialsId"]))
        return made


def kind_of(index: int) -> BoardKind:
    """Boards alternate: temperature (DHT22) and light (LDR), as in the course."""
    return "temperature" if index % 2 == 0 else "light"


def build_boards(
    identities: list[Identity],
    *,
    protocol: Protocol,
    host: str,
    port: int,
    interval: float,
    fault_after: float | None = None,
    started: float = 0.0,
    seed: int = 0,
    http: httpx.AsyncClient | None = None,
) -> list[Board]:
    boards = []
    for index, who in enumerate(identities):
        kind = kind_of(index)
        sensors = Sensors(kind, seed=seed + index, fault_after=fault_after, started=started)
        board = Board(who.name, sensors, interval=interval, seed=seed + index)
        board.link_factory = _factory(board, who, protocol, host, port, http)
        boards.append(board)
    return boards


def _factory(
    board: Board,
    who: Identity,
    protocol: Protocol,
    host: str,
    port: int,
    http: httpx.AsyncClient | None,
) -> Callable[[], Link]:
    if protocol == "line":
        return lambda: LineLink(host, port, who.token)
    if protocol == "mqtt":
        return lambda: MqttLink(host, port, who.token, client_id=who.name, commands=board)
    if http is None:
        raise FleetError("the HTTP protocol needs an HTTP client")
    client = http
    return lambda: HttpLink(host, port, who.token, client)
