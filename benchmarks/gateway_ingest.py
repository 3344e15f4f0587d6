"""Gateway ingest benchmark: one gateway connection against direct devices, same run (issue 16).

For each child count N (`--children`, default 100,1000) it runs two points, each on a fresh
`tinyboard serve` (fresh data directory, `--sync full`, `--no-dashboard`, `--device-rate-limit
off`, `--max-packet` 1 MiB; the devices are created in the store before the server starts):

  gateway  ONE MQTT 3.1.1 connection, username = the token of a device whose additionalInfo
           is `{"gateway": true}`, publishing QoS 1 to `v1/gateway/telemetry`; every message
           carries one reading for each of the N children, batched as thingsboard-gateway
           sends them: `{"gw-child-00000": [{"ts": T, "values": {"temperature": 21.5,
           "seq": n}}], ...}`. `--gateway-window` messages in flight, each PUBACK releasing
           the next. The N children are pre-created; the first message (in the warm-up)
           connects them all to the gateway.
  direct   the baseline: N device connections, each publishing the same readings
           `{"ts": T, "values": {"temperature": 21.5, "seq": n}}` to
           `v1/devices/me/telemetry`, `--direct-window` messages in flight per connection.

After a `--warmup` it measures for `--seconds` and reports, per point: acknowledged msg/s
(PUBACKs in the window / its length), readings/s (acknowledged readings: msgs x N for the
gateway, msgs for direct), p50/p99/max publish->PUBACK latency (every PUBACK of the window;
it includes the wait behind the rest of the window), the server's CPU (all threads, % of one
core, over the window) and RSS (MB = 10^6 bytes, at the end of the window), this generator's
CPU (one thread: near 100 % means it is the bottleneck) and "other" CPU (the machine's busy
time minus both; far from zero means something else ran). Ratio: gateway readings/s / direct
readings/s for the same N.

Durability check after each point: the generator stops sending, waits for the outstanding
PUBACKs, disconnects; the server gets SIGTERM (exit 0 expected) and the script opens its
SQLite file: for every child (or direct device) the stored `seq` values 1..k must all be
there, k = the PUBACKs covering it (each gateway PUBACK covers one reading of every child).

    .venv/bin/python benchmarks/gateway_ingest.py --children 100,1000 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import percentile, revision, serve_argv

HOST = "127.0.0.1"
READY_TIMEOUT = 30.0
TINYBOARD_READY = re.compile(r"ready: line protocol on \S+, MQTT on [^\s:]+:(\d+)")
SERVER_OPTIONS = ("--sync", "full", "--no-dashboard", "--device-rate-limit", "off")
# One message with a reading for each of 1,000 children is ~78 KB, over serve's default
# --max-packet of 65,536 bytes (the server then closes the connection: MQTT 3 has no reason
# code for it). `--max-packet` (default 1 MiB here) raises it for both modes.

spawn = partial(common.spawn, start_new_session=True)  # Ctrl+C reaches only us

CREATE_DEVICES = """
import asyncio, sys
from tinyboard.storage import open_store

async def main(path, n, gateway):
    store = open_store(f"sqlite:{path}", sync="normal")
    await store.open()
    try:
        if gateway:
            gw = await store.create_device("bench-gateway", additional_info={"gateway": True})
            print(gw.key, gw.token, gw.name)
        for i in range(n):
            device = await store.create_device(f"gw-child-{i:05d}")
            print(device.key, device.token, device.name)
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"))
"""


@dataclass
class Device:
    key: int
    token: str
    name: str


def create_devices(db: Path, n: int, gateway: bool) -> list[Device]:
    argv = [sys.executable, "-c", CREATE_DEVICES, str(db), str(n), "1" if gateway else "0"]
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=300)
    common.stop_process(proc, timeout=2)
    if proc.returncode != 0:
        raise RuntimeError(f"creating devices failed:\n{err.decode(errors='replace')}")
    rows = [line.split() for line in out.decode().splitlines()]
    return [Device(int(k), t, name) for k, t, name in rows]


def start_tinyboard(data_dir: Path, max_packet: int) -> tuple[subprocess.Popen[bytes], int]:
    program = str(Path(sys.executable).parent / "tinyboard")
    log = data_dir / "server.log"
    argv = serve_argv(program, data_dir, *SERVER_OPTIONS, "--max-packet", str(max_packet))
    with log.open("wb") as out:
        proc = spawn(argv, stdout=out, stderr=out)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if match := TINYBOARD_READY.search(log.read_text(errors="replace")):
            return proc, int(match.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    common.stop_process(proc)
    raise RuntimeError(f"tinyboard did not become ready:\n{log.read_text()[-2000:]}")


# -- MQTT bytes, hand-encoded from the 3.1.1 spec -------------------------------------------
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(username: str) -> bytes:
    user = username.encode()
    body = (
        b"\x00\x04MQTT\x04"  # protocol name, level 4 (3.1.1)
        + b"\x82"  # flags: username, clean session
        + (60).to_bytes(2, "big")  # keep-alive
        + b"\x00\x00"  # empty client id
        + len(user).to_bytes(2, "big")
        + user
    )
    return b"\x10" + varint(len(body)) + body


def publish_packet(topic: bytes, packet_id: int, payload: bytes) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + varint(len(body)) + body


DISCONNECT = b"\xe0\x00"
DIRECT_TOPIC = b"v1/devices/me/telemetry"
GATEWAY_TOPIC = b"v1/gateway/telemetry"
READING = b'{"ts":%(t)d,"values":{"temperature":21.5,"seq":%(n)d}}'


def gateway_template(names: list[str]) -> bytes:
    return b"{" + b",".join(b'"%s":[%s]' % (n.encode(), READING) for n in names) + b"}"


# -- the generator -------------------------------------------------------------------------
@dataclass
class Run:
    measuring: bool = False
    sending: bool = True
    latencies: list[float] = field(default_factory=list)
    window_acks: int = 0
    errors: int = 0
    lost: int = 0


class Client(asyncio.Protocol):
    def __init__(self, run: Run, token: str, topic: bytes, template: bytes, window: int) -> None:
        self.run, self.token, self.topic, self.template = run, token, topic, template
        self.window = window
        self.connected = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.seq = 0  # last sent
        self.acked = 0
        self.sent_at: dict[int, float] = {}
        self.t0 = int(time.time() * 1000) - 10_000_000  # distinct ts per message: t0 + seq
        self.drained = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        self.transport.write(connect_packet(self.token))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("closed before CONNACK"))
        if not self.drained.done():
            self.run.lost += 1
            self.drained.set_result(None)

    def start(self) -> None:
        for _ in range(self.window):
            self.send()

    def send(self) -> None:
        self.seq += 1
        n = self.seq
        pid = (n - 1) % 65535 + 1
        self.sent_at[pid] = time.perf_counter()
        payload = self.template % {b"t": self.t0 + n, b"n": n}
        assert self.transport is not None
        self.transport.write(publish_packet(self.topic, pid, payload))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        i = 0
        run = self.run
        while len(buf) - i >= 2:
            kind = buf[i]
            size = buf[i + 1]  # PUBACK and CONNACK have remaining length 2
            if size & 0x80 or len(buf) - i < 2 + size:
                if size & 0x80:
                    run.errors += 1
                    i = len(buf)
                break
            if kind == 0x40 and size == 2:
                self.puback(int.from_bytes(buf[i + 2 : i + 4], "big"))
            elif kind == 0x20 and not self.connected.done():
                if buf[i + 3] == 0:
                    self.connected.set_result(None)
                else:
                    self.connected.set_exception(ConnectionError(f"CONNACK {buf[i + 3]}"))
            else:
                run.errors += 1
            i += 2 + size
        self.buf = buf[i:]

    def puback(self, pid: int) -> None:
        run = self.run
        sent = self.sent_at.pop(pid, None)
        if sent is None:
            run.errors += 1
            return
        self.acked += 1
        if run.measuring:
            run.window_acks += 1
            run.latencies.append(time.perf_counter() - sent)
        if run.sending:
            self.send()
        elif not self.sent_at and not self.drained.done():
            self.drained.set_result(None)

    def stop_sending(self) -> None:
        if not self.sent_at and not self.drained.done():
            self.drained.set_result(None)


@dataclass
class Point:
    mode: str
    children: int
    connections: int
    msgs_per_s: float
    readings_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    srv_rss_mb: float
    srv_cpu: float
    gen_cpu: float
    other_cpu: float
    acked_readings: int = 0
    stored_ok: int = 0
    missing: int = 0
    lost: int = 0
    errors: int = 0
    server_exit: int | None = None


def busy_seconds() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


def proc_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


async def drive(
    mode: str, port: int, server_pid: int, devices: list[Device], args: argparse.Namespace
) -> tuple[Point, list[Client]]:
    loop = asyncio.get_running_loop()
    run = Run()
    if mode == "gateway":
        gateway, children = devices[0], devices[1:]
        template = gateway_template([c.name for c in children])
        specs = [(gateway.token, GATEWAY_TOPIC, template, args.gateway_window)]
    else:
        children = devices
        specs = [(d.token, DIRECT_TOPIC, READING, args.direct_window) for d in devices]
    clients: list[Client] = []
    for start in range(0, len(specs), 200):  # connect in batches, every CONNACK before the clock
        batch = []
        for token, topic, tmpl, window in specs[start : start + 200]:
            _, client = await loop.create_connection(
                partial(Client, run, token, topic, tmpl, window), HOST, port
            )
            batch.append(client)
        await asyncio.wait_for(asyncio.gather(*(c.connected for c in batch)), 30)
        clients.extend(batch)
    for client in clients:
        client.start()
    await asyncio.sleep(args.warmup)
    server, me = psutil.Process(server_pid), psutil.Process()
    srv0, gen0, all0 = proc_seconds(server), proc_seconds(me), busy_seconds()
    t0 = time.perf_counter()
    run.measuring = True
    await asyncio.sleep(args.seconds)
    run.measuring = False
    elapsed = time.perf_counter() - t0
    srv1, gen1, all1 = proc_seconds(server), proc_seconds(me), busy_seconds()
    rss = server.memory_info().rss / 1e6
    run.sending = False
    for client in clients:
        client.stop_sending()
    await asyncio.wait_for(asyncio.gather(*(c.drained for c in clients)), 60)
    for client in clients:
        if client.transport is not None and not client.transport.is_closing():
            client.transport.write(DISCONNECT)
            client.transport.close()
    await asyncio.sleep(0.2)
    per_msg = len(children) if mode == "gateway" else 1
    lat = sorted(run.latencies)
    srv_cpu = 100 * (srv1 - srv0) / elapsed
    gen_cpu = 100 * (gen1 - gen0) / elapsed
    point = Point(
        mode=mode,
        children=len(children),
        connections=len(clients),
        msgs_per_s=run.window_acks / elapsed,
        readings_per_s=run.window_acks * per_msg / elapsed,
        p50_ms=1000 * percentile(lat, 0.50),
        p99_ms=1000 * percentile(lat, 0.99),
        max_ms=1000 * lat[-1] if lat else float("nan"),
        srv_rss_mb=rss,
        srv_cpu=srv_cpu,
        gen_cpu=gen_cpu,
        other_cpu=100 * (all1 - all0) / elapsed - srv_cpu - gen_cpu,
        lost=run.lost,
        errors=run.errors,
    )
    return point, clients


def check_database(db: Path, acked: dict[int, int]) -> tuple[int, int]:
    """(stored seq values 1..k found, missing) over every device, k = its acknowledged readings."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT id FROM ts_key WHERE key = 'seq'").fetchone()
        if row is None:
            return 0, sum(acked.values())
        found_total = missing = 0
        for device, k in acked.items():
            (found,) = conn.execute(
                "SELECT count(DISTINCT v) FROM ts_kv WHERE device = ? AND key = ? "
                "AND v BETWEEN 1 AND ?",
                (device, row[0], k),
            ).fetchone()
            found_total += found
            missing += max(0, k - found)
        return found_total, missing
    finally:
        conn.close()


def run_point(mode: str, n: int, args: argparse.Namespace) -> Point:
    data_dir = Path(tempfile.mkdtemp(prefix=f"gwbench-{mode}-{n}-", dir=args.tmp))
    proc = None
    try:
        devices = create_devices(data_dir / "tinyboard.db", n, gateway=mode == "gateway")
        proc, port = start_tinyboard(data_dir, args.max_packet)
        point, clients = asyncio.run(drive(mode, port, proc.pid, devices, args))
        point.server_exit = common.stop_process(proc, timeout=30)
        proc = None
        if mode == "gateway":
            k = clients[0].acked
            acked = {d.key: k for d in devices[1:]}
        else:
            acked = {d.key: c.acked for d, c in zip(devices, clients, strict=True)}
        point.acked_readings = sum(acked.values())
        point.stored_ok, point.missing = check_database(data_dir / "tinyboard.db", acked)
        return point
    finally:
        if proc is not None:
            common.stop_process(proc, timeout=10)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def table(points: list[Point]) -> str:
    heads = [
        "mode", "children", "conns", "acked msg/s", "readings/s", "p50 ms", "p99 ms", "max ms",
        "srv RSS MB", "srv CPU%", "gen CPU%", "other CPU%", "lost", "errors",
    ]  # fmt: skip
    rows = [
        [
            p.mode,
            f"{p.children:,}",
            f"{p.connections:,}",
            f"{p.msgs_per_s:,.0f}",
            f"{p.readings_per_s:,.0f}",
            f"{p.p50_ms:.2f}",
            f"{p.p99_ms:.2f}",
            f"{p.max_ms:.1f}",
            f"{p.srv_rss_mb:.1f}",
            f"{p.srv_cpu:.0f}",
            f"{p.gen_cpu:.0f}",
            f"{p.other_cpu:.0f}",
            str(p.lost),
            str(p.errors),
        ]
        for p in points
    ]
    out = ["| " + " | ".join(heads) + " |", "|---|" + "---:|" * (len(heads) - 1)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--children", default="100,1000", help="comma-separated child counts (100,1000)")
    add("--seconds", type=float, default=5.0, help="measured window per point (5)")
    add("--warmup", type=float, default=2.0, help="warm-up per point (2)")
    add("--gateway-window", type=int, default=10, help="gateway messages in flight (10)")
    add("--direct-window", type=int, default=10, help="messages in flight per device (10)")
    add("--max-packet", type=int, default=1 << 20, help="serve --max-packet, bytes (1 MiB)")
    add("--tmp", default=None, help="parent of the data directories (default: system temp)")
    add("--keep", action="store_true", help="keep the data directories")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(revision())
    print(
        f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, psutil {psutil.__version__}; "
        f"server options {' '.join(SERVER_OPTIONS)} --max-packet {args.max_packet}",
        flush=True,
    )
    points: list[Point] = []
    try:
        for n in (int(x) for x in args.children.split(",")):
            for mode in ("gateway", "direct"):
                point = run_point(mode, n, args)
                points.append(point)
                print(
                    f"{mode} N={n}: {point.readings_per_s:,.0f} readings/s, "
                    f"{point.msgs_per_s:,.0f} msg/s, durability {point.stored_ok:,} of "
                    f"{point.acked_readings:,} acknowledged readings stored, "
                    f"{point.missing} missing, server exit {point.server_exit}",
                    flush=True,
                )
    finally:
        common.stop_all_children()
    print()
    print(table(points))
    print()
    print("| children | gateway readings/s | direct readings/s | gateway / direct |")
    print("|---:|---:|---:|---:|")
    bad = 0
    for n in sorted({p.children for p in points}):
        gw = next(p for p in points if p.children == n and p.mode == "gateway")
        direct = next(p for p in points if p.children == n and p.mode == "direct")
        ratio = gw.readings_per_s / direct.readings_per_s if direct.readings_per_s else 0.0
        print(f"| {n:,} | {gw.readings_per_s:,.0f} | {direct.readings_per_s:,.0f} | {ratio:.2f}× |")
    for p in points:
        if p.missing or p.lost or p.errors or p.server_exit != 0:
            bad += 1
            print(f"PROBLEM: {p.mode} N={p.children}: {p}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
