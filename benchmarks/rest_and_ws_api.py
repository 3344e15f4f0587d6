"""ThingsBoard's REST controllers and the `/api/ws` WebSocket API (issue 15), each against a
floor measured by the same script in the same run.

One `tinyboard serve --no-dashboard` (`--sync full`, a fresh temporary data directory, every
listener on a free port). Before it starts, --devices devices are created in its store
(names bench-0000..., the default profile) and each gets one value of key `t`; once it is up,
--alarms alarms are raised with `POST /api/alarm` (ThingsBoard's Alarm JSON, one per device,
type "bench-high", severities cycling). Every answer below is checked for its shape (page
sizes, totals, the key asked for) before it is timed.

1. REST controllers. --clients tasks in this process, each with its own httpx.AsyncClient
   (one keep-alive connection, `X-Authorization: Bearer <the admin's JWT>` from
   `POST /api/auth/login`), run closed-loop (send, wait for the answer, send the next)
   against one route at a time: --warmup s unmeasured, then --seconds s measured. That is
   repeated for --rounds rounds, the route order reversed every other round so the
   machine's drift falls on every route alike. Routes:
     no-auth /               no JWT check: a 307 redirect to /docs. The framework alone
                             (uvicorn + tinyboard's HTTP guard, Starlette, FastAPI routing,
                             the security-header middleware).
     floor /api/clients      THE FLOOR: the cheapest route that checks the JWT (signature
                             and expiry, then one store read of the user, which revokes
                             tokens after a password change); answers [] (nothing is
                             connected during this part).
     devices                 GET /api/tenant/devices?pageSize=100&page=0 (1 count + 1 page
                             query, 100 Device objects).
     device                  GET /api/device/{id}, cycling over every device.
     deviceInfos             GET /api/tenant/deviceInfos?pageSize=100&page=0 (also each
                             device's profile name and whether it is connected).
     profileInfos            GET /api/deviceProfileInfos?pageSize=100&page=0 (one profile).
     alarms                  GET /api/alarms?pageSize=100&page=0 (--alarms in the store).
     latest                  GET /api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=t
                             (the latest value), cycling over every device.
   Columns: req/s = answers in the measured windows / their total length; p50/p99 ms over
   every request of the measured windows; `rounds req/s` each round's own figure (their
   spread is the noise); srv µs/req = the server process's CPU time (all threads) per
   answered request, which is the controller's cost even when the generator is the limit;
   srv CPU% and loop CPU% (its event-loop thread alone) in % of one core; gen CPU% = this
   process (near 100 % means the generator, not the server, set the pace: then req/s is
   the generator's ceiling and srv µs/req is the figure to compare); other CPU% = the
   machine's remaining busy time (about 0 when nothing else ran; a point with more than
   --max-other is measured again, up to --retries times); bytes = the answer's body; bad =
   answers with another status than expected.
   Ratios: each route's req/s ÷ the floor's, and its srv µs/req ÷ the floor's: how much the
   controller costs over the framework + JWT check (no-auth ÷ floor shows what the JWT
   check itself costs).

2a. WebSocket first answer, --ws-runs runs of each, alternating, each on a new connection
   (the `websockets` client, permessage-deflate as browsers offer it); median, min and max
   ms, the WebSocket messages the answer took and their size (JSON text, bytes):
     ENTITY_DATA             /api/ws, authenticated first (an authCmd with an
                             ENTITY_COUNT, waited for), then the clock runs from sending
                             one ENTITY_DATA command (entityFilter entityType DEVICE,
                             pageLink pageSize --page, sorted by createdTime DESC as the
                             UI's default page link, entityFields name and label,
                             latestValues and latestCmd TIME_SERIES `t`) to receiving its
                             `data` message (one page of --page devices with their `t`).
     legacy tsSubCmds        /api/ws/plugins/telemetry?token=JWT (the token is checked
                             before the socket opens), then the clock runs from sending one
                             message of --page tsSubCmds (the same devices as that page,
                             key `t`, latest) to the first reply, and to the last (every
                             subscription has answered: the same data as the page).
     error reply             the floor of a WebSocket round trip: on an authenticated
                             /api/ws, a command of an unknown type, answered with an error
                             at once (no store read).
   Ratio: ENTITY_DATA ÷ legacy (all replies), for the same data.

2b. Publish → update latency. Both subscriptions of 2a are open at once, one /api/ws socket
   with that ENTITY_DATA page and one legacy socket with the --page tsSubCmds; one MQTT
   3.1.1 connection per device of the page (QoS 1, hand-encoded, benchmarks/live_load.py)
   publishes `{"t": <send time>}` at a steady --rate msg/s in total (round robin, paced every
   ms) for --live-warmup + --live-seconds s. Latency = receive time − the send time in the
   value (CLOCK_MONOTONIC, this one process), for every value sent in the measured window:
     publish -> PUBACK       the floor: the reading is committed (fsync) and acknowledged.
     /api/ws ENTITY_DATA     the value arrives as an `update` of its device's latest `t`.
     legacy tsSubCmd         the value arrives in its subscription's `data`.
   `superseded` = values that did not arrive because a newer value of their device, sent
   before the first was acknowledged (so perhaps committed with it), did: ENTITY_DATA sends
   a device's latest value per commit, not every point; `lost` = the other values sent in
   the window that did not arrive (after a 1 s drain; for PUBACK: not acknowledged);
   `values/WS msg` = values per WebSocket message (1.00: every value its own message).
   Ratio: ENTITY_DATA ÷ legacy, p50 and p99.

The load runs in this one process (uvloop), which shares the 2 cores with the server: read
`gen CPU%` before reading req/s. Before every REST point and each WebSocket part the script
waits while the rest of the machine is busier than --max-other % of a core (at most
--max-wait s in all); parts 2a and 2b print their `other` CPU too. The server is stopped
with SIGTERM at the end (its exit code is printed: 0 expected), on an error or Ctrl+C, and
by the kernel (PR_SET_PDEATHSIG) if this script is killed.

    .venv/bin/python benchmarks/rest_and_ws_api.py [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import uvloop
import websockets
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Tinyboard, percentile, revision, stop_all_children
from live_load import MqttClient

Doc = dict[str, Any]
SEVERITIES = ("CRITICAL", "MAJOR", "MINOR", "WARNING", "INDETERMINATE")
ALARM_TYPE = "bench-high"
FIRST_TS = 1_700_000_000_000


def now_ms() -> float:
    return time.monotonic() * 1000.0


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- the server and its data ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceRef:
    id: str
    token: str


async def seed_store(data_dir: Path, devices: int) -> list[DeviceRef]:
    """Devices and one `t` value each, written with the store API before the server starts."""
    from tinyboard.storage import open_store

    store = open_store(f"sqlite:{data_dir / 'tinyboard.db'}", sync="normal")
    await store.open()
    try:
        made = [await store.create_device(f"bench-{i:04d}") for i in range(devices)]
        await store.write(
            [(d.key, "t", FIRST_TS + i, 20.0 + i % 10) for i, d in enumerate(made)], []
        )
    finally:
        await store.close()
    return [DeviceRef(d.id, d.token) for d in made]


def start_server(data_dir: Path) -> Tinyboard:
    server = Tinyboard(data_dir, "--no-dashboard", "--sync", "full")
    out = server.proc.stdout
    assert out is not None
    # Nobody reads the server's stdout after start-up: drain it so a full pipe never blocks it.
    threading.Thread(target=lambda: [None for _ in out], daemon=True).start()
    return server


def raise_alarms(server: Tinyboard, devices: list[DeviceRef], count: int) -> None:
    for i, device in enumerate(devices[:count]):
        alarm = {
            "type": ALARM_TYPE,
            "originator": {"entityType": "DEVICE", "id": device.id},
            "severity": SEVERITIES[i % len(SEVERITIES)],
            "details": {"n": i},
        }
        response = server.rest.post("/api/alarm", json=alarm)
        response.raise_for_status()


def jwt_of(server: Tinyboard) -> str:
    return str(server.rest.headers["X-Authorization"]).removeprefix("Bearer ")


# -- CPU ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """CPU seconds used so far (a difference of two: used in between)."""

    server_s: float
    loop_s: float
    generator_s: float
    machine_s: float
    """The whole machine's busy time (all CPUs, not idle or waiting for I/O)."""

    @staticmethod
    def take(server: psutil.Process) -> CpuSnapshot:
        times = server.cpu_times()
        loop = next((t for t in server.threads() if t.id == server.pid), None)
        own = psutil.Process().cpu_times()
        every = psutil.cpu_times()
        return CpuSnapshot(
            times.user + times.system,
            (loop.user_time + loop.system_time) if loop else float("nan"),
            own.user + own.system,
            sum(every) - every.idle - getattr(every, "iowait", 0.0),
        )

    def __sub__(self, other: CpuSnapshot) -> CpuSnapshot:
        return CpuSnapshot(
            self.server_s - other.server_s,
            self.loop_s - other.loop_s,
            self.generator_s - other.generator_s,
            self.machine_s - other.machine_s,
        )

    @property
    def other_s(self) -> float:
        """Busy time of everything but the server and this process."""
        return self.machine_s - self.server_s - self.generator_s


class QuietGuard:
    """Waits, before a measurement, while something else on the machine (other sessions'
    tests, another benchmark) uses more than --max-other % of a core; at most --max-wait s
    over the whole run, then it measures anyway (and the other CPU% column shows it)."""

    def __init__(self, server: psutil.Process, args: argparse.Namespace) -> None:
        self.server, self.limit, self.left = server, args.max_other, args.max_wait

    async def wait(self, what: str) -> None:
        waited = 0.0
        while self.left > 0:
            before = CpuSnapshot.take(self.server)
            await asyncio.sleep(0.5)
            if 100 * (CpuSnapshot.take(self.server) - before).other_s / 0.5 <= self.limit:
                break
            waited, self.left = waited + 0.5, self.left - 0.5
        if waited:
            log(f"waited {waited:.1f} s for a quiet machine before {what}")


# -- 1. REST controllers ------------------------------------------------------------------------
Check = Callable[[Any], str | None]
"""Looks at a decoded answer; a text saying what is wrong, or None."""


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    shown: str
    paths: tuple[str, ...]
    check: Check
    status: int = 200


def page_check(size: int, total: int) -> Check:
    def check(doc: Any) -> str | None:
        got = (len(doc.get("data", ())), doc.get("totalElements"))
        return None if got == (size, total) else f"expected {size} of {total}, got {got}"

    return check


def no_clients(doc: Any) -> str | None:
    return None if doc == [] else f"expected [], got {doc}"


def is_device(doc: Any) -> str | None:
    return None if doc.get("id", {}).get("entityType") == "DEVICE" else f"not a device: {doc}"


def has_t(doc: Any) -> str | None:
    return None if doc.get("t") else f"no latest t: {doc}"


def routes(devices: list[DeviceRef], alarms: int) -> list[Route]:
    """The routes of part 1, in order; paths with an id cycle over every device."""
    ids = tuple(d.id for d in devices)
    page = "pageSize=100&page=0"
    on_page = page_check(min(100, len(devices)), len(devices))
    latest = "/api/plugins/telemetry/DEVICE/{}/values/timeseries?keys=t"

    def one(name: str, path: str, check: Check) -> Route:
        return Route(name, f"GET {path}", (path,), check)

    return [
        Route("no-auth", "GET / (no JWT, 307)", ("/",), lambda _: None, 307),
        Route("floor", "GET /api/clients (JWT floor)", ("/api/clients",), no_clients),
        one("devices", f"/api/tenant/devices?{page}", on_page),
        Route("device", "GET /api/device/{id}", tuple(f"/api/device/{i}" for i in ids), is_device),
        one("deviceInfos", f"/api/tenant/deviceInfos?{page}", on_page),
        one("profileInfos", f"/api/deviceProfileInfos?{page}", page_check(1, 1)),
        one("alarms", f"/api/alarms?{page}", page_check(min(100, alarms), alarms)),
        Route(
            "latest",
            "GET .../DEVICE/{id}/values/timeseries?keys=t",
            tuple(latest.format(i) for i in ids),
            has_t,
        ),
    ]


@dataclass(slots=True)
class Window:
    """One measured point: what the workers saw between `start` and `end` (perf_counter)."""

    start: float
    end: float
    stop: float
    latencies: list[float] = field(default_factory=list)
    bad: int = 0
    body_bytes: int = 0

    def record(self, sent: float, done: float, good: bool, size: int) -> None:
        if self.start <= done < self.end:
            self.latencies.append((done - sent) * 1000.0)
            self.bad += not good
            self.body_bytes = size


async def worker(client: httpx.AsyncClient, route: Route, first: int, window: Window) -> None:
    paths, i = route.paths, first
    while True:
        sent = time.perf_counter()
        if sent >= window.stop:
            return
        response = await client.get(paths[i % len(paths)])
        window.record(
            sent, time.perf_counter(), response.status_code == route.status, len(response.content)
        )
        i += 1


@dataclass(slots=True)
class RoundFigures:
    requests: int
    seconds: float
    latencies: list[float]
    bad: int
    body_bytes: int
    cpu: CpuSnapshot


async def rest_point(
    clients: list[httpx.AsyncClient], route: Route, server: psutil.Process, args: argparse.Namespace
) -> RoundFigures:
    now = time.perf_counter()
    start = now + args.warmup
    window = Window(start, start + args.seconds, start + args.seconds)
    step = max(1, len(route.paths) // len(clients))
    tasks = [asyncio.create_task(worker(c, route, n * step, window)) for n, c in enumerate(clients)]
    await asyncio.sleep(start - time.perf_counter())
    before = CpuSnapshot.take(server)
    await asyncio.sleep(window.end - time.perf_counter())
    cpu = CpuSnapshot.take(server) - before
    await asyncio.gather(*tasks)
    return RoundFigures(
        len(window.latencies), args.seconds, window.latencies, window.bad, window.body_bytes, cpu
    )


@dataclass(slots=True)
class RestResult:
    name: str
    shown: str
    rounds: list[RoundFigures]

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.rounds)

    @property
    def req_per_s(self) -> float:
        return self.requests / sum(r.seconds for r in self.rounds)

    def pct(self, name: str) -> float:
        return (
            100.0
            * sum(getattr(r.cpu, name) for r in self.rounds)
            / sum(r.seconds for r in self.rounds)
        )

    @property
    def server_us_per_request(self) -> float:
        return 1e6 * sum(r.cpu.server_s for r in self.rounds) / max(self.requests, 1)

    def latency(self, q: float) -> float:
        return percentile(sorted(x for r in self.rounds for x in r.latencies), q)


async def check_route(client: httpx.AsyncClient, route: Route) -> None:
    response = await client.get(route.paths[0])
    if response.status_code != route.status:
        raise RuntimeError(f"{route.shown}: HTTP {response.status_code}: {response.text[:300]}")
    if route.status == 200 and (problem := route.check(response.json())):
        raise RuntimeError(f"{route.shown}: {problem}")


async def rest_part(
    base: str, jwt: str, all_routes: list[Route], guard: QuietGuard, args: argparse.Namespace
) -> list[RestResult]:
    headers = {"X-Authorization": f"Bearer {jwt}"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    results = {r.name: RestResult(r.name, r.shown, []) for r in all_routes}
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30)
            )
            for _ in range(args.clients)
        ]
        for route in all_routes:
            await check_route(clients[0], route)
        for n in range(args.rounds):
            for route in all_routes if n % 2 == 0 else all_routes[::-1]:
                figures = await quiet_point(clients, route, guard, args)
                results[route.name].rounds.append(figures)
                rate = figures.requests / figures.seconds
                log(f"REST round {n + 1} {route.name}: {rate:,.0f} req/s")
    return [results[r.name] for r in all_routes]


async def quiet_point(
    clients: list[httpx.AsyncClient], route: Route, guard: QuietGuard, args: argparse.Namespace
) -> RoundFigures:
    """A point measured again (up to --retries times) while something else on the machine
    used more than --max-other % of a core during it; the last one counts."""
    for attempt in range(args.retries + 1):
        await guard.wait(route.name)
        figures = await rest_point(clients, route, guard.server, args)
        other = 100 * figures.cpu.other_s / figures.seconds
        if other <= args.max_other:
            break
        if attempt < args.retries:
            log(f"{route.name}: other CPU {other:.0f} % during the point; measuring it again")
    return figures


# -- 2. /api/ws and the legacy endpoint -----------------------------------------------------------
def first_message(token: str, *cmds: Doc) -> str:
    return orjson.dumps({"authCmd": {"cmdId": 0, "token": token}, "cmds": list(cmds)}).decode()


def cmds(*commands: Doc) -> str:
    return orjson.dumps({"cmds": list(commands)}).decode()


EVERY_DEVICE = {"type": "entityType", "entityType": "DEVICE"}


def entity_count(cmd_id: int) -> Doc:
    return {"type": "ENTITY_COUNT", "cmdId": cmd_id, "query": {"entityFilter": EVERY_DEVICE}}


def entity_data(cmd_id: int, page_size: int) -> Doc:
    """What ThingsBoard's UI (entity-data-subscription.ts) sends for a page of devices."""
    latest = [{"type": "TIME_SERIES", "key": "t"}]
    return {
        "type": "ENTITY_DATA",
        "cmdId": cmd_id,
        "query": {
            "entityFilter": EVERY_DEVICE,
            "pageLink": {
                "pageSize": page_size,
                "page": 0,
                "sortOrder": {
                    "key": {"type": "ENTITY_FIELD", "key": "createdTime"},
                    "direction": "DESC",
                },
            },
            "entityFields": [
                {"type": "ENTITY_FIELD", "key": "name"},
                {"type": "ENTITY_FIELD", "key": "label"},
            ],
            "latestValues": latest,
        },
        "latestCmd": {"keys": latest},
    }


def ts_sub_cmds(device_ids: list[str]) -> str:
    subs = [
        {"cmdId": i + 1, "entityType": "DEVICE", "entityId": d, "keys": "t"}
        for i, d in enumerate(device_ids)
    ]
    return orjson.dumps({"tsSubCmds": subs}).decode()


async def receive(ws: ClientConnection, timeout: float = 30) -> Doc:
    doc: Doc = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
    return doc


async def until_cmd(ws: ClientConnection, cmd_id: int) -> Doc:
    while True:
        doc = await receive(ws)
        if doc.get("cmdId", doc.get("subscriptionId")) == cmd_id:
            if doc.get("errorCode") and cmd_id != ERROR_CMD:
                raise RuntimeError(f"command {cmd_id} refused: {doc}")
            return doc


ERROR_CMD = 77


def open_api(ws_base: str) -> Any:
    return connect(f"{ws_base}/api/ws", max_size=None, ping_interval=None, open_timeout=30)


def open_legacy(ws_base: str, jwt: str) -> Any:
    url = f"{ws_base}/api/ws/plugins/telemetry?token={jwt}"
    return connect(url, max_size=None, ping_interval=None, open_timeout=30)


def page_ids(doc: Doc, page_size: int) -> list[str]:
    entities = doc["data"]["data"]
    if len(entities) != page_size:
        raise RuntimeError(f"ENTITY_DATA page of {len(entities)}, expected {page_size}")
    for e in entities:
        if not e["latest"]["TIME_SERIES"]["t"]["value"]:
            raise RuntimeError(f"no latest t in {e}")
    return [e["entityId"]["id"] for e in entities]


async def time_entity_data(ws_base: str, jwt: str, page_size: int) -> tuple[float, list[str], int]:
    """ms from sending ENTITY_DATA to its page; the page's device ids; its size in bytes."""
    async with open_api(ws_base) as ws:
        await ws.send(first_message(jwt, entity_count(1)))
        await until_cmd(ws, 1)
        started = time.perf_counter()
        await ws.send(cmds(entity_data(2, page_size)))
        raw = await asyncio.wait_for(ws.recv(), 30)
        elapsed = (time.perf_counter() - started) * 1000.0
        doc = orjson.loads(raw)
        if doc.get("cmdId") != 2 or doc.get("data") is None:
            raise RuntimeError(f"not the page: {str(doc)[:300]}")
        return elapsed, page_ids(doc, page_size), len(raw)


async def time_legacy(ws_base: str, jwt: str, ids: list[str]) -> tuple[float, float, int]:
    """ms from sending the tsSubCmds to the first reply and to the last; bytes of all."""
    async with open_legacy(ws_base, jwt) as ws:
        pending = set(range(1, len(ids) + 1))
        size, first = 0, 0.0
        started = time.perf_counter()
        await ws.send(ts_sub_cmds(ids))
        while pending:
            raw = await asyncio.wait_for(ws.recv(), 30)
            first = first or (time.perf_counter() - started) * 1000.0
            size += len(raw)
            doc = orjson.loads(raw)
            if doc.get("errorCode") or not doc["data"].get("t"):
                raise RuntimeError(f"legacy reply without t: {doc}")
            pending.discard(doc["subscriptionId"])
        return first, (time.perf_counter() - started) * 1000.0, size


async def time_error_reply(ws_base: str, jwt: str) -> float:
    async with open_api(ws_base) as ws:
        await ws.send(first_message(jwt, entity_count(1)))
        await until_cmd(ws, 1)
        started = time.perf_counter()
        await ws.send(cmds({"type": "BENCH_UNKNOWN", "cmdId": ERROR_CMD}))
        doc = await until_cmd(ws, ERROR_CMD)
        elapsed = (time.perf_counter() - started) * 1000.0
        if not doc.get("errorCode"):
            raise RuntimeError(f"an unknown command was not refused: {doc}")
        return elapsed


@dataclass(slots=True)
class FirstAnswer:
    what: str
    runs: list[float]
    bytes: int
    messages: int

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


async def first_answer_part(
    ws_base: str, jwt: str, args: argparse.Namespace
) -> tuple[list[FirstAnswer], list[str]]:
    """Part 2a; also the ids of the page's devices (the legacy commands ask for the same)."""
    page = args.page
    _, ids, page_bytes = await time_entity_data(ws_base, jwt, page)  # warm-up, and the ids
    _, _, legacy_bytes = await time_legacy(ws_base, jwt, ids)
    rows = [
        FirstAnswer(f"/api/ws ENTITY_DATA, page of {page}", [], page_bytes, 1),
        FirstAnswer(f"legacy {page} tsSubCmds, first reply", [], 0, 1),
        FirstAnswer(f"legacy {page} tsSubCmds, all replies", [], legacy_bytes, page),
        FirstAnswer("/api/ws error reply (round-trip floor)", [], 0, 1),
    ]

    async def entity_run() -> None:
        elapsed, got, _ = await time_entity_data(ws_base, jwt, page)
        if got != ids:
            raise RuntimeError("the ENTITY_DATA page changed between runs")
        rows[0].runs.append(elapsed)

    async def legacy_run() -> None:
        one, every, _ = await time_legacy(ws_base, jwt, ids)
        rows[1].runs.append(one)
        rows[2].runs.append(every)

    for n in range(args.ws_runs):
        for run in (entity_run, legacy_run) if n % 2 == 0 else (legacy_run, entity_run):
            await run()
        rows[3].runs.append(await time_error_reply(ws_base, jwt))
    log(
        f"WebSocket first answers: ENTITY_DATA {rows[0].median:.1f} ms, legacy {rows[2].median:.1f}"
    )
    return rows, ids


# -- 2b. publish -> update -------------------------------------------------------------------------
class TimedMqtt(MqttClient):
    """A QoS 1 publisher that keeps publish → PUBACK times (PUBACKs come in order)."""

    def __init__(self, token: str, index: int) -> None:
        super().__init__(token, index, 1)
        self.stamps: list[float] = []
        """The send time of every message, which is also its value."""
        self.unacked: deque[float] = deque()
        self.acks: list[tuple[float, float]] = []

    def send_now(self) -> None:
        text = b"%.3f" % now_ms()
        stamp = float(text)  # what the subscribers will parse back from the value's text
        self.stamps.append(stamp)
        self.unacked.append(stamp)
        self.publish(b'{"t":' + text + b"}")

    def data_received(self, data: bytes) -> None:
        before = self.acked
        super().data_received(data)
        done = now_ms()
        for _ in range(self.acked - before):
            self.acks.append((self.unacked.popleft(), done))


@dataclass(slots=True)
class Arrivals:
    """(send ms, receive ms) of every value one subscriber got."""

    times: list[tuple[float, float]] = field(default_factory=list)
    messages: int = 0


async def follow_entity_data(ws: ClientConnection, into: Arrivals) -> None:
    while True:
        raw = await ws.recv()
        done = now_ms()
        into.messages += 1
        for entity in orjson.loads(raw).get("update") or ():
            value = entity["latest"].get("TIME_SERIES", {}).get("t")
            if value:
                into.times.append((float(value["value"]), done))


async def follow_legacy(ws: ClientConnection, into: Arrivals) -> None:
    while True:
        raw = await ws.recv()
        done = now_ms()
        into.messages += 1
        for _, value in orjson.loads(raw).get("data", {}).get("t", ()):
            into.times.append((float(value), done))


async def connect_publishers(port: int, tokens: list[str]) -> list[TimedMqtt]:
    loop = asyncio.get_running_loop()
    clients = []
    for i, token in enumerate(tokens):
        _, client = await loop.create_connection(
            lambda t=token, n=i: TimedMqtt(t, n), "127.0.0.1", port
        )
        await asyncio.wait_for(client.connack, 30)
        clients.append(client)
    return clients


async def paced(clients: list[TimedMqtt], rate: float, seconds: float) -> tuple[float, float, int]:
    """Publish at `rate` msg/s in total, round robin, for `seconds`; (start ms, end ms, sent)."""
    start = time.monotonic()
    sent = 0
    while (now := time.monotonic()) < start + seconds:
        for _ in range(int((now - start) * rate) + 1 - sent):
            clients[sent % len(clients)].send_now()
            sent += 1
        await asyncio.sleep(0.001)
    return start * 1000.0, time.monotonic() * 1000.0, sent


@dataclass(slots=True)
class LiveRow:
    what: str
    values: int
    superseded: int
    """Values not received because a newer value of the same device, sent before the first
    was acknowledged (so possibly in the same commit), was received instead: ENTITY_DATA
    sends a device's latest value, not every point."""
    lost: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    per_message: float
    """Values per WebSocket message over the whole run (0: not a WebSocket)."""


def superseded(clients: list[TimedMqtt], received: set[float], window: tuple[float, float]) -> int:
    """How many values sent in `window` did not arrive while their device's next value, sent
    before the first was acknowledged, did."""
    lo, hi = window
    count = 0
    for client in clients:
        acked = dict(client.acks)
        for this, after in zip(client.stamps, client.stamps[1:], strict=False):
            if lo <= this < hi and this not in received and after in received:
                count += after < acked.get(this, float("inf"))
    return count


def live_row(
    what: str,
    times: list[tuple[float, float]],
    clients: list[TimedMqtt],
    window: tuple[float, float],
    messages: int,
) -> LiveRow:
    """Latencies (ms) of the values sent in `window`."""
    lo, hi = window
    lat = sorted(r - s for s, r in times if lo <= s < hi)
    sent = sum(1 for c in clients for s in c.stamps if lo <= s < hi)
    newer = superseded(clients, {s for s, _ in times}, window) if messages else 0
    return LiveRow(
        what,
        values=len(lat),
        superseded=newer,
        lost=sent - len(lat) - newer,
        p50_ms=percentile(lat, 0.5),
        p99_ms=percentile(lat, 0.99),
        max_ms=lat[-1] if lat else float("nan"),
        per_message=len(times) / messages if messages else 0.0,
    )


@dataclass(slots=True)
class LiveResult:
    rows: list[LiveRow]
    sent_rate: float
    server_cpu_pct: float
    generator_cpu_pct: float
    other_cpu_pct: float


async def live_part(
    ws_base: str,
    jwt: str,
    server: Tinyboard,
    devices: list[DeviceRef],
    ids: list[str],
    args: argparse.Namespace,
) -> LiveResult:
    tokens = {d.id: d.token for d in devices}
    entity, legacy = Arrivals(), Arrivals()
    async with open_api(ws_base) as api, open_legacy(ws_base, jwt) as old:
        await api.send(first_message(jwt, entity_data(1, args.page)))
        if page_ids(await until_cmd(api, 1), args.page) != ids:
            raise RuntimeError("the ENTITY_DATA page is not the one of part 2a")
        await old.send(ts_sub_cmds(ids))
        for _ in ids:
            await receive(old)
        clients = await connect_publishers(server.mqtt_port, [tokens[i] for i in ids])
        followers = [
            asyncio.create_task(follow_entity_data(api, entity)),
            asyncio.create_task(follow_legacy(old, legacy)),
        ]
        proc = psutil.Process(server.proc.pid)
        publishing = asyncio.create_task(
            paced(clients, args.rate, args.live_warmup + args.live_seconds)
        )
        await asyncio.sleep(args.live_warmup)
        before = CpuSnapshot.take(proc)
        await asyncio.sleep(args.live_seconds)
        cpu = CpuSnapshot.take(proc) - before
        start, end, sent_total = await publishing
        await asyncio.sleep(1.0)  # drain
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        for client in clients:
            client.disconnect()
    lo = start + args.live_warmup * 1000.0
    hi = lo + args.live_seconds * 1000.0
    acks = [a for c in clients for a in c.acks]
    window = (lo, hi)
    rows = [
        live_row("publish -> PUBACK (commit floor)", acks, clients, window, 0),
        live_row("/api/ws ENTITY_DATA update", entity.times, clients, window, entity.messages),
        live_row("legacy tsSubCmd update", legacy.times, clients, window, legacy.messages),
    ]
    rate = sent_total / ((end - start) / 1000.0)
    return LiveResult(
        rows,
        rate,
        100 * cpu.server_s / args.live_seconds,
        100 * cpu.generator_s / args.live_seconds,
        100 * cpu.other_s / args.live_seconds,
    )


# -- report ---------------------------------------------------------------------------------------
def table(heads: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        out = ["| " + " | ".join(heads) + " |"]
        out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(heads))) + "|")
        return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]

    def just(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([just(heads), just(["-" * w for w in widths]), *map(just, rows)])


def rest_table(results: list[RestResult], markdown: bool) -> str:
    heads = ["route", "req/s", "rounds req/s", "p50 ms", "p99 ms", "srv µs/req"]
    heads += ["srv CPU%", "loop CPU%", "gen CPU%", "other CPU%", "bytes", "bad"]
    rows = [
        [
            r.shown,
            f"{r.req_per_s:,.0f}",
            " / ".join(f"{x.requests / x.seconds:,.0f}" for x in r.rounds),
            f"{r.latency(0.5):.2f}",
            f"{r.latency(0.99):.2f}",
            f"{r.server_us_per_request:,.0f}",
            f"{r.pct('server_s'):.0f}",
            f"{r.pct('loop_s'):.0f}",
            f"{r.pct('generator_s'):.0f}",
            f"{r.pct('other_s'):.0f}",
            f"{r.rounds[-1].body_bytes:,}",
            str(sum(x.bad for x in r.rounds)),
        ]
        for r in results
    ]
    return table(heads, rows, markdown)


def rest_ratios(results: list[RestResult], markdown: bool) -> str:
    floor = next(r for r in results if r.name == "floor")
    rows = [
        [
            r.shown,
            f"{r.req_per_s / floor.req_per_s:.2f}×",
            f"{r.server_us_per_request / floor.server_us_per_request:.2f}×",
            f"{r.server_us_per_request - floor.server_us_per_request:+,.0f}",
        ]
        for r in results
        if r is not floor
    ]
    return table(
        ["route", "req/s ÷ floor", "srv µs/req ÷ floor", "µs/req over floor"], rows, markdown
    )


def first_table(rows: list[FirstAnswer], markdown: bool) -> str:
    body = [
        [
            r.what,
            str(len(r.runs)),
            f"{r.median:.2f}",
            f"{min(r.runs):.2f}",
            f"{max(r.runs):.2f}",
            str(r.messages),
            f"{r.bytes:,}" if r.bytes else "",
        ]
        for r in rows
    ]
    return table(
        ["what", "runs", "median ms", "min ms", "max ms", "messages", "bytes"], body, markdown
    )


def live_table(result: LiveResult, markdown: bool) -> str:
    body = [
        [
            r.what,
            f"{r.values:,}",
            str(r.superseded) if r.per_message else "",
            str(r.lost),
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.max_ms:.1f}",
            f"{r.per_message:.2f}" if r.per_message else "",
        ]
        for r in result.rows
    ]
    return table(
        ["what", "values", "superseded", "lost", "p50 ms", "p99 ms", "max ms", "values/WS msg"],
        body,
        markdown,
    )


def machine() -> str:
    return (
        f"{platform.node()} {platform.system()} {platform.release()}, "
        f"nproc {len(os.sched_getaffinity(0))}, Python {platform.python_version()}, "
        f"uvloop {uvloop.__version__}, SQLite {sqlite3.sqlite_version}, httpx {httpx.__version__}, "
        f"websockets {websockets.__version__}, psutil {psutil.__version__}"
    )


@dataclass(slots=True)
class Results:
    rest: list[RestResult] = field(default_factory=list)
    first: list[FirstAnswer] = field(default_factory=list)
    first_cpu_pct: dict[str, float] = field(default_factory=dict)
    """Part 2a's CPU, % of one core over the whole part."""
    live: LiveResult | None = None
    server_exit: int | None = None


def report(results: Results, args: argparse.Namespace, started: str, source: str) -> None:
    markdown = args.markdown
    print(f"\nREST controllers and /api/ws, {started}")
    print(machine())
    print(source)
    print(f"{args.devices} devices, {args.alarms} alarms in the store")
    if results.rest:
        print(
            f"\n1. REST, closed loop, {args.clients} keep-alive connections, {args.rounds} rounds"
            f" of {args.seconds:g} s per route\n"
        )
        print(rest_table(results.rest, markdown))
        print("\nratios to the floor (GET /api/clients, same run):\n")
        print(rest_ratios(results.rest, markdown))
    if results.first:
        cpu = ", ".join(f"{k} {v:.0f} %" for k, v in results.first_cpu_pct.items())
        print(
            f"\n2a. WebSocket: command sent -> its data received, {args.page} devices"
            f" (CPU over the part: {cpu} of one core)\n"
        )
        print(first_table(results.first, markdown))
        entity, legacy = results.first[0], results.first[2]
        ratio = entity.median / legacy.median
        print(f"\nratio ENTITY_DATA / legacy (all replies), medians: {ratio:.2f}×")
    if results.live is not None:
        live = results.live
        print(
            f"\n2b. publish -> update, {live.sent_rate:,.0f} msg/s over {args.page} devices, "
            f"{args.live_seconds:g} s measured (server CPU {live.server_cpu_pct:.0f} %, "
            f"this process {live.generator_cpu_pct:.0f} %, other {live.other_cpu_pct:.0f} %"
            " of one core)\n"
        )
        print(live_table(live, markdown))
        entity, legacy = live.rows[1], live.rows[2]
        print(
            f"\nratio ENTITY_DATA / legacy: p50 {entity.p50_ms / legacy.p50_ms:.2f}×, "
            f"p99 {entity.p99_ms / legacy.p99_ms:.2f}×"
        )
    print(f"\nserver exit code after SIGTERM: {results.server_exit}")


def summary(results: Results, args: argparse.Namespace, started: str, source: str) -> Doc:
    """Every figure of the report (not the raw latencies), for --json."""
    rest = [
        {
            "route": r.shown,
            "req_per_s": r.req_per_s,
            "rounds_req_per_s": [x.requests / x.seconds for x in r.rounds],
            "p50_ms": r.latency(0.5),
            "p99_ms": r.latency(0.99),
            "server_us_per_request": r.server_us_per_request,
            "server_cpu_pct": r.pct("server_s"),
            "loop_cpu_pct": r.pct("loop_s"),
            "generator_cpu_pct": r.pct("generator_s"),
            "other_cpu_pct": r.pct("other_s"),
            "bad": sum(x.bad for x in r.rounds),
        }
        for r in results.rest
    ]
    first = [{"what": f.what, "median_ms": f.median, "runs_ms": f.runs} for f in results.first]
    return {
        "started": started,
        "machine": machine(),
        "source": source,
        "args": {k: str(v) for k, v in vars(args).items()},
        "rest": rest,
        "first_answer": first,
        "first_answer_cpu_pct": results.first_cpu_pct,
        "live": asdict(results.live) if results.live else None,
        "server_exit": results.server_exit,
    }


# -- main -----------------------------------------------------------------------------------------
async def run_all(args: argparse.Namespace, results: Results, data_dir: Path) -> None:
    log(f"creating {args.devices} devices in {data_dir}")
    devices = await seed_store(data_dir, args.devices)
    server = await asyncio.to_thread(start_server, data_dir)
    try:
        log(f"raising {args.alarms} alarms")
        await asyncio.to_thread(raise_alarms, server, devices, args.alarms)
        jwt, proc = jwt_of(server), psutil.Process(server.proc.pid)
        guard = QuietGuard(proc, args)
        ws_base = server.base.replace("http://", "ws://")
        if "rest" in args.parts.split(","):
            results.rest = await rest_part(
                server.base, jwt, routes(devices, args.alarms), guard, args
            )
        if "ws" in args.parts.split(","):
            await guard.wait("part 2a")
            before, started = CpuSnapshot.take(proc), time.perf_counter()
            results.first, ids = await first_answer_part(ws_base, jwt, args)
            cpu, seconds = CpuSnapshot.take(proc) - before, time.perf_counter() - started
            results.first_cpu_pct = {
                "server": 100 * cpu.server_s / seconds,
                "this process": 100 * cpu.generator_s / seconds,
                "other": 100 * cpu.other_s / seconds,
            }
            await guard.wait("part 2b")
            results.live = await live_part(ws_base, jwt, server, devices, ids, args)
    finally:
        results.server_exit = await asyncio.to_thread(server.stop)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n    .venv")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--parts", default="rest,ws", help="rest, ws or both (default: %(default)s)")
    add("--devices", type=int, default=1000, help="devices in the store (default: 1000)")
    add("--alarms", type=int, default=500, help="alarms raised, one per device (default: 500)")
    add("--clients", type=int, default=16, help="concurrent REST clients (default: 16)")
    add("--rounds", type=int, default=2, help="rounds over the REST routes (default: 2)")
    add("--seconds", type=float, default=4.0, help="measured s per route and round (default: 4)")
    add("--warmup", type=float, default=1.0, help="unmeasured s before each (default: 1)")
    add("--page", type=int, default=100, help="devices on the WebSocket page (default: 100)")
    add("--ws-runs", type=int, default=15, help="timed runs of each 2a command (default: 15)")
    add("--rate", type=float, default=200.0, help="2b publish rate, msg/s in all (default: 200)")
    add("--live-seconds", type=float, default=10.0, help="2b measured s (default: 10)")
    add("--live-warmup", type=float, default=2.0, help="2b unmeasured s first (default: 2)")
    add("--max-other", type=float, default=25.0, help="other CPU%% that disturbs a REST point (25)")
    add("--retries", type=int, default=2, help="re-measures of a disturbed point (default: 2)")
    add("--max-wait", type=float, default=120.0, help="s to wait for quiet, in all (120)")
    add("--markdown", action="store_true", help="print the tables as Markdown")
    add("--json", type=Path, help="also write every figure to this JSON file")
    add("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args(argv)
    if args.alarms > args.devices or args.page > args.devices:
        parser.error("--alarms and --page must not exceed --devices")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    source = revision()
    results = Results()
    data_dir = Path(tempfile.mkdtemp(prefix="tb-bench-api-"))
    code = 0
    try:
        uvloop.run(run_all(args, results, data_dir))
    except KeyboardInterrupt:
        log("interrupted; server stopped")
        code = 130
    finally:
        stop_all_children()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    report(results, args, started, source)
    if args.json:
        args.json.write_text(json.dumps(summary(results, args, started, source), indent=2))
    if results.server_exit != 0 and code == 0:
        log(f"warning: the server exited with {results.server_exit}")
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
