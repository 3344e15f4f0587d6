"""MQTT ingest benchmark: tinyboard against Mosquitto, same generator, same run (issue 4).

Part 1, ingest. For each device count N and each server it opens N MQTT 3.1.1 connections
(clean session, username = the device's access token), then every connection publishes
QoS 1 telemetry `{"temperature":21.5,"seq":n}` to `v1/devices/me/telemetry` as fast as the
PUBACKs allow: `--window` PUBLISHes in flight per connection, each PUBACK releasing the
next. After a warm-up it measures for `--seconds` and reports, per point:

- acked msg/s: PUBACKs received in the measured window / its length;
- p50, p99 and max publish->PUBACK latency in ms (every PUBACK of the window; with a
  window of W messages in flight this includes the time queued behind the other W-1);
- the server's RSS (psutil, MB = 10^6 bytes) at the end of the window and its CPU (all
  threads, % of one core) over the window; for tinyboard also its event-loop thread alone
  ("loop", the rest being the SQLite writer and reader threads);
- the generator's CPU: the sum over its worker processes (and this script), % of one core,
  and the busiest worker: a worker near 100 % is saturated and the figure a lower bound;
- "other" CPU: the machine's busy time minus the server's and the generator's, % of one
  core: softirq work of loopback TCP not charged to either, and any other program. Far
  above the usual level means something else ran during the point: re-run it.
- lost connections and protocol errors (bytes other than in-order PUBACKs).

Servers:
  tinyboard  a fresh `tinyboard serve` (fresh data directory, N devices created in the store
             before it starts, `--sync` as given: `full` by default, every PUBACK is a
             write committed with fsync). After each point the server is stopped (SIGTERM,
             exit 0 expected) and the SQLite file is checked: for every device, the stored
             `seq` values 1..k must all be there, k = the PUBACKs that device received, so
             no acknowledged reading is missing.
  mosquitto  the Mosquitto broker already running (`--mosquitto`, default 127.0.0.1:1883;
             its pid found by process name); it stores nothing and acks at once: the
             ceiling of a C broker on this machine, the baseline of the ratio.

Part 2, idle connections (`--idle` N, default 10,000; 0 skips it): RSS of a fresh tinyboard
(N devices in its store) `--settle` seconds after it is ready, then again `--settle` seconds
after N devices have connected (CONNECT keep-alive 300 s, CONNACK received, then silence),
and the same for the running Mosquitto (its RSS before and after N connections), in MB and
KB per connection.

`--profile FILE` adds a tinyboard point at `--profile-devices` (default 1,000) with py-spy
sampling the server through the measured window (raw collapsed stacks written to FILE) and
prints where its threads spend their time; the figures of that point are printed apart,
since sampling costs the server some CPU.

The generator is `--workers` processes (benchmarks/mqtt_load.py; one uvloop loop each,
hand-encoded MQTT, connections split evenly). Every process started here is stopped on
exit, error, Ctrl+C or SIGTERM; the whole run is bounded by --max-time.

    .venv/bin/python benchmarks/mqtt_ingest.py --devices 100,1000 --seconds 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import pwd
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import partial
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import mqtt_load  # the generator worker, a sibling module
from common import percentile, revision, serve_argv

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
SERVERS = ("tinyboard", "mosquitto")
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0
SETUP_TIMEOUT = 300.0
IDLE_KEEPALIVE = 300
TINYBOARD_READY = re.compile(r"ready: line protocol on \S+, MQTT on [^\s:]+:(\d+)")

spawn = partial(common.spawn, start_new_session=True)  # Ctrl+C reaches only us
stop_process = partial(common.stop_process, timeout=STOP_TIMEOUT)

CREATE_DEVICES = """
import asyncio, sys
from tinyboard.storage import open_store

async def main(path, n):
    store = open_store(f"sqlite:{path}", sync="normal")
    await store.open()
    try:
        for i in range(n):
            device = await store.create_device(f"bench-{i:05d}")
            print(device.key, device.token)
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


class Stop(Exception):
    """SIGTERM or --max-time: unwind, stopping everything on the way."""


_workers: set[BaseProcess] = set()


def stop_workers(workers: list[tuple[BaseProcess, Pipe]]) -> None:
    for proc, pipe in workers:
        pipe.close()
        proc.join(2)  # a worker exits on its own once its pipe is closed
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(2)
        _workers.discard(proc)


def stop_everything() -> None:
    for proc in list(_workers):
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        if proc.is_alive():
            proc.kill()
        _workers.discard(proc)
    common.stop_all_children(timeout=10)


@dataclass
class Server:
    name: str
    port: int
    pid: int
    proc: subprocess.Popen[bytes] | None = None  # None: not ours (Mosquitto)
    data_dir: Path | None = None


def start_tinyboard(tinyboard: str, data_dir: Path, sync: str, extra: str = "") -> Server:
    log = data_dir / "server.log"
    argv = serve_argv(tinyboard, data_dir, "--sync", sync, *extra.split())
    with log.open("wb") as out:
        proc = spawn(argv, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if match := TINYBOARD_READY.search(log.read_text(errors="replace")):
            return Server("tinyboard", int(match.group(1)), proc.pid, proc, data_dir)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop_process(proc)
    tail = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"tinyboard did not become ready; its output:\n{tail}")


def find_mosquitto(address: str) -> Server:
    host, _, port = address.rpartition(":")
    pids = [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "mosquitto"]
    if len(pids) != 1:
        raise RuntimeError(f"expected one running mosquitto process, found pids {pids}")
    if host and host != HOST:
        raise RuntimeError(f"the generator connects to {HOST}; got --mosquitto {address}")
    return Server("mosquitto", int(port), pids[0])


MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_connections -1
log_dest file {log}
user {user}
"""


def start_private_mosquitto(data_dir: Path) -> Server:
    """A new Mosquitto of our own on a free port (the running one is left alone): its RSS
    before the connections is that of a broker that never held any."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    conf = data_dir / "mosquitto.conf"
    # `user`: stay who we are (as root, Mosquitto would switch to its own user, and a
    # change of user clears the "SIGTERM me when my parent dies" request).
    user = pwd.getpwuid(os.getuid()).pw_name
    conf.write_text(MOSQUITTO_CONF.format(port=port, log=data_dir / "mosquitto.log", user=user))
    with (data_dir / "mosquitto.out").open("wb") as out:
        proc = spawn(["mosquitto", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with socket.socket() as s, contextlib.suppress(OSError):
            s.connect((HOST, port))
            return Server("mosquitto (new)", port, proc.pid, proc, data_dir)
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"a new mosquitto did not start; see {data_dir / 'mosquitto.out'}")


def create_devices(data_dir: Path, n: int) -> list[tuple[int, str]]:
    """N devices straight into the store (one process, before the server starts)."""
    argv = [sys.executable, "-c", CREATE_DEVICES, str(data_dir / "tinyboard.db"), str(n)]
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=SETUP_TIMEOUT)
    finally:
        stop_process(proc, timeout=2)  # a no-op when it has finished
    if proc.returncode != 0:
        raise RuntimeError(f"creating devices failed:\n{err.decode(errors='replace')}")
    devices = [(int(k), t) for k, t in (line.split() for line in out.decode().splitlines())]
    if len(devices) != n:
        raise RuntimeError(f"expected {n} devices, got {len(devices)}")
    return devices


# -- generator workers -------------------------------------------------------------------------
def start_workers(jobs: list[mqtt_load.Job]) -> list[tuple[BaseProcess, Pipe]]:
    ctx = multiprocessing.get_context("spawn")
    workers = []
    for job in jobs:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=mqtt_load.worker_main, args=(child,), daemon=True)
        proc.start()
        _workers.add(proc)
        child.close()
        parent.send(job)
        workers.append((proc, parent))
    return workers


def expect(workers: list[tuple[BaseProcess, Pipe]], what: str, timeout: float) -> list[Any]:
    """The next message of every worker, which must be `what`."""
    deadline = time.monotonic() + timeout
    replies = []
    for proc, pipe in workers:
        if not pipe.poll(max(0.0, deadline - time.monotonic())):
            raise RuntimeError(f"generator worker {proc.pid}: no {what!r} within {timeout:.0f} s")
        try:
            kind, body = pipe.recv()
        except EOFError:
            raise RuntimeError(
                f"generator worker {proc.pid} died (exit code {proc.exitcode})"
            ) from None
        if kind != what:
            raise RuntimeError(f"generator worker {proc.pid}: {kind}: {body}")
        replies.append(body)
    return replies


def split(tokens: list[str], parts: int) -> list[list[str]]:
    parts = max(1, min(parts, len(tokens)))
    size, extra = divmod(len(tokens), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        out.append(tokens[start:end])
        start = end
    return out


def make_jobs(
    mode: str, server: Server, tokens: list[str], workers: int, window: int, keepalive: int
) -> list[mqtt_load.Job]:
    tag = f"bench-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
    return [
        mqtt_load.Job(
            mode=mode,
            host=HOST,
            port=server.port,
            tokens=chunk,
            client_prefix=f"{tag}-{i}",
            window=window,
            keepalive=keepalive,
            connect_timeout=60 + len(chunk) / 20,
        )
        for i, chunk in enumerate(split(tokens, workers))
    ]


# -- measurements ------------------------------------------------------------------------------
def cpu_seconds(times: Any) -> float:
    return float(times.user + times.system)


def machine_busy() -> float:
    """Machine-wide busy CPU seconds, all cores (user includes guest time on Linux)."""
    times = psutil.cpu_times()
    names = ("user", "nice", "system", "irq", "softirq")
    return float(sum(getattr(times, name, 0.0) for name in names))


def loop_thread_cpu(ps: psutil.Process) -> float:
    """CPU seconds of the process's main thread (tinyboard's event loop)."""
    for thread in ps.threads():
        if thread.id == ps.pid:
            return float(thread.user_time + thread.system_time)
    return float("nan")


def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


@dataclass
class Check:
    """The SQLite file after a tinyboard point: is every acknowledged reading stored?"""

    pubacks: int
    stored_seq_rows: int
    acked_found: int  # stored seq values 1..k (k = that device's PUBACKs), all devices
    missing: int
    devices_short: int

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.stored_seq_rows >= self.pubacks


@dataclass
class Point:
    server: str
    devices: int
    seconds: float
    acked: int
    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_rss_mb: float
    server_cpu_pct: float
    loop_cpu_pct: float
    generator_cpu_pct: float
    busiest_worker_pct: float
    workers: int
    other_cpu_pct: float
    lost: int
    errors: int
    sent_total: int
    acked_total: int
    undrained: int
    server_exit: int | None = None
    check: Check | None = None
    notes: list[str] = field(default_factory=list)


def start_py_spy(args: argparse.Namespace, pid: int, output: Path) -> subprocess.Popen[bytes]:
    argv = [args.py_spy, "record", "--pid", str(pid), "--rate", str(args.profile_rate)]
    argv += ["--duration", str(max(1, round(args.seconds))), "--nonblocking", "--threads"]
    argv += ["--idle", "--format", "raw", "--output", str(output), *args.profile_extra.split()]
    return spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_py_spy(spy: subprocess.Popen[bytes], timeout: float) -> list[str]:
    try:
        _, err = spy.communicate(timeout=timeout)
    finally:
        stop_process(spy, timeout=5)
    if spy.returncode != 0:
        return [f"py-spy: {err.decode(errors='replace')[-500:]}"]
    return []


@dataclass
class Window:
    """CPU and memory over the measured window, sampled by this script."""

    wall: float
    server: float
    loop: float
    me: float
    busy: float
    rss: int


def measure_window(ps: psutil.Process, ours: bool, t0: float, t1: float) -> Window:
    me = psutil.Process()

    def sample() -> tuple[float, float, float, float, float]:
        loop = loop_thread_cpu(ps) if ours else float("nan")
        return (
            time.monotonic(),
            cpu_seconds(ps.cpu_times()),
            loop,
            cpu_seconds(me.cpu_times()),
            machine_busy(),
        )

    sleep_until(t0)
    a = sample()
    sleep_until(t1)
    b = sample()
    rss = ps.memory_info().rss
    wall, srv, loop, mine, busy = (y - x for x, y in zip(a, b, strict=True))
    return Window(wall, srv, loop, mine, busy, rss)


def make_point(
    name: str, n: int, window_s: float, w: Window, results: list[dict[str, Any]]
) -> Point:
    acked = sum(r["acked_in_window"] for r in results)
    lat = array("d")
    for r in results:
        lat.frombytes(r["latencies"])
    rtts = sorted(lat)
    gen = sum(r["cpu"] for r in results) + w.me
    point = Point(
        server=name,
        devices=n,
        seconds=round(window_s, 3),
        acked=acked,
        msgs_per_s=acked / window_s,
        p50_ms=percentile(rtts, 0.50) * 1000,
        p99_ms=percentile(rtts, 0.99) * 1000,
        max_ms=rtts[-1] * 1000 if rtts else float("nan"),
        server_rss_mb=w.rss / 1e6,
        server_cpu_pct=100 * w.server / w.wall,
        loop_cpu_pct=100 * w.loop / w.wall,
        generator_cpu_pct=100 * gen / window_s,
        busiest_worker_pct=100 * max(r["cpu"] for r in results) / window_s,
        workers=len(results),
        other_cpu_pct=100 * (w.busy - gen - w.server) / w.wall,
        lost=sum(r["lost"] for r in results),
        errors=sum(len(r["errors"]) for r in results),
        sent_total=sum(sum(r["sent"]) for r in results),
        acked_total=sum(sum(r["acked"]) for r in results),
        undrained=sum(not r["drained"] for r in results),
    )
    for r in results:
        point.notes += r["errors"]
    return point


def run_ingest_point(
    name: str, n: int, args: argparse.Namespace, profile: Path | None = None
) -> Point:
    server: Server | None = None
    data_dir: Path | None = None
    workers: list[tuple[BaseProcess, Pipe]] = []
    spy: subprocess.Popen[bytes] | None = None
    devices: list[tuple[int, str]] = []
    try:
        if name == "tinyboard":
            data_dir = Path(tempfile.mkdtemp(prefix=f"tb-mqtt-{n}-"))
            devices = create_devices(data_dir, n)
            tokens = [t for _, t in devices]
            server = start_tinyboard(args.tinyboard, data_dir, args.sync, args.tinyboard_args)
        else:
            server = find_mosquitto(args.mosquitto)
            tokens = [f"device-{i:05d}" for i in range(n)]
        ps = psutil.Process(server.pid)
        workers = start_workers(make_jobs("ingest", server, tokens, args.workers, args.window, 60))
        expect(workers, "connected", 120 + n / 10)

        t_start = time.monotonic() + 0.2
        t_rec0 = t_start + args.warmup
        t_rec1 = t_rec0 + args.seconds
        for _, pipe in workers:
            pipe.send(("go", t_start, t_rec0, t_rec1))
        if profile is not None:
            sleep_until(t_rec0 - 0.3)  # py-spy needs a moment to attach
            spy = start_py_spy(args, server.pid, profile)
        window = measure_window(ps, server.proc is not None, t_rec0, t_rec1)
        results = expect(workers, "done", mqtt_load.DRAIN_TIMEOUT + 60)
        stop_workers(workers)
        workers = []

        point = make_point(name, n, t_rec1 - t_rec0, window, results)
        if spy is not None:
            point.notes += wait_py_spy(spy, args.seconds + 30)
            spy = None
        if server.proc is not None:
            point.server_exit = stop_process(server.proc)
            server = None
            assert data_dir is not None
            acked_by_device = [a for r in results for a in r["acked"]]
            point.check = check_database(
                data_dir / "tinyboard.db", [k for k, _ in devices], acked_by_device
            )
        return point
    finally:
        if spy is not None:
            stop_process(spy, timeout=5)
        if workers:
            stop_workers(workers)
        if server is not None and server.proc is not None:
            stop_process(server.proc, timeout=10)
        if data_dir is not None and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def check_database(db: Path, keys: list[int], acked: list[int]) -> Check:
    """Count, per device, the stored `seq` values 1..k (k = PUBACKs it got); all must be there.

    The generator sends seq 1, 2, 3 ... on each connection and PUBACKs come back in order,
    so the first k messages are exactly the acknowledged ones."""
    if len(keys) != len(acked):
        raise RuntimeError(f"{len(keys)} devices but acknowledgement counts for {len(acked)}")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT id FROM ts_key WHERE key = 'seq'").fetchone()
        if row is None:
            return Check(sum(acked), 0, 0, sum(acked), sum(1 for a in acked if a))
        key = row[0]
        (stored,) = conn.execute("SELECT count(*) FROM ts_kv WHERE key = ?", (key,)).fetchone()
        found_total = missing = short = 0
        for device, k in zip(keys, acked, strict=True):
            (found,) = conn.execute(
                "SELECT count(DISTINCT v) FROM ts_kv WHERE device = ? AND key = ? "
                "AND v BETWEEN 1 AND ?",
                (device, key, k),
            ).fetchone()
            found_total += found
            if found < k:
                missing += k - found
                short += 1
        return Check(sum(acked), stored, found_total, missing, short)
    finally:
        conn.close()


# -- idle connections --------------------------------------------------------------------------
@dataclass
class Idle:
    server: str
    connections: int
    rss_before_mb: float
    rss_after_mb: float
    delta_mb: float
    kb_per_connection: float
    connect_seconds: float
    lost: int
    server_exit: int | None = None


def run_idle(name: str, n: int, args: argparse.Namespace) -> Idle:
    server: Server | None = None
    data_dir: Path | None = None
    workers: list[tuple[BaseProcess, Pipe]] = []
    try:
        if name == "tinyboard":
            data_dir = Path(tempfile.mkdtemp(prefix=f"tb-mqtt-idle-{n}-"))
            tokens = [t for _, t in create_devices(data_dir, n)]
            server = start_tinyboard(args.tinyboard, data_dir, args.sync, args.tinyboard_args)
        elif name == "mosquitto (new)":
            data_dir = Path(tempfile.mkdtemp(prefix=f"tb-mqtt-idle-mosquitto-{n}-"))
            server = start_private_mosquitto(data_dir)
            tokens = [f"idle-{i:05d}" for i in range(n)]
        else:
            server = find_mosquitto(args.mosquitto)
            tokens = [f"idle-{i:05d}" for i in range(n)]
        ps = psutil.Process(server.pid)
        time.sleep(args.settle)
        before = ps.memory_info().rss
        started = time.monotonic()
        workers = start_workers(make_jobs("idle", server, tokens, args.workers, 1, IDLE_KEEPALIVE))
        expect(workers, "connected", 120 + n / 10)
        connect_seconds = time.monotonic() - started
        time.sleep(args.settle)
        after = ps.memory_info().rss
        for _, pipe in workers:
            pipe.send(("close",))
        results = expect(workers, "done", 60)
        stop_workers(workers)
        workers = []
        idle = Idle(
            server=name,
            connections=n,
            rss_before_mb=before / 1e6,
            rss_after_mb=after / 1e6,
            delta_mb=(after - before) / 1e6,
            kb_per_connection=(after - before) / 1e3 / n,
            connect_seconds=connect_seconds,
            lost=sum(r["lost"] for r in results),
        )
        if server.proc is not None:
            time.sleep(0.5)
            idle.server_exit = stop_process(server.proc)
            server = None
        return idle
    finally:
        if workers:
            stop_workers(workers)
        if server is not None and server.proc is not None:
            stop_process(server.proc, timeout=10)
        if data_dir is not None and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


# -- profile summary ---------------------------------------------------------------------------
LINE_NUMBER = re.compile(r":\d+\)$")


def summarize_profile(path: Path, top: int = 12) -> list[str]:
    """Per thread, % of that thread's samples: the functions with most self samples (the
    innermost Python frame), with most total samples (anywhere on the stack; frames on
    every stack, like the start-up chain, left out), and the busiest source lines.

    py-spy's raw format is one collapsed stack per line: `thread;frame;frame;... count`;
    with --idle, waiting shows as the frame that waits (for the event loop thread, uvloop's
    C code under `Runner.run`: epoll, and also socket reads and callbacks dispatch)."""
    threads: Counter[str] = Counter()
    self_fn: dict[str, Counter[str]] = {}
    self_line: dict[str, Counter[str]] = {}
    total_fn: dict[str, Counter[str]] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        threads[thread] += count
        leaf = frames[-1] if frames else "?"
        self_line.setdefault(thread, Counter())[leaf] += count
        self_fn.setdefault(thread, Counter())[LINE_NUMBER.sub(")", leaf)] += count
        totals = total_fn.setdefault(thread, Counter())
        for frame in {LINE_NUMBER.sub(")", f) for f in frames}:
            totals[frame] += count
    out = []
    for thread, samples in threads.most_common():
        out.append(f"{thread}: {samples} samples")
        sections = (
            ("self", self_fn[thread].most_common(top)),
            (
                "total",
                [(f, c) for f, c in total_fn[thread].most_common() if c < 0.99 * samples][:top],
            ),
            ("self by line", self_line[thread].most_common(top)),
        )
        for title, rows in sections:
            out.append(f"  {title}:")
            out += [f"  {100 * c / samples:6.1f} %  {f}" for f, c in rows]
    return out


# -- report ------------------------------------------------------------------------------------
COLUMNS = (
    ("server", "{:<9}", "server"),
    ("devices", "{:>7}", "devices"),
    ("acked msg/s", "{:>11,.0f}", "msgs_per_s"),
    ("p50 ms", "{:>7.2f}", "p50_ms"),
    ("p99 ms", "{:>7.2f}", "p99_ms"),
    ("max ms", "{:>7.1f}", "max_ms"),
    ("srv RSS MB", "{:>10.1f}", "server_rss_mb"),
    ("srv CPU%", "{:>8.0f}", "server_cpu_pct"),
    ("loop CPU%", "{:>9.0f}", "loop_cpu_pct"),
    ("gen CPU%", "{:>8.0f}", "generator_cpu_pct"),
    ("max worker%", "{:>11.0f}", "busiest_worker_pct"),
    ("other CPU%", "{:>10.0f}", "other_cpu_pct"),
    ("lost", "{:>4}", "lost"),
    ("errors", "{:>6}", "errors"),
)
IDLE_COLUMNS = (
    ("server", "{:<9}", "server"),
    ("connections", "{:>11,}", "connections"),
    ("RSS before MB", "{:>13.1f}", "rss_before_mb"),
    ("RSS after MB", "{:>12.1f}", "rss_after_mb"),
    ("delta MB", "{:>8.1f}", "delta_mb"),
    ("KB/connection", "{:>13.2f}", "kb_per_connection"),
    ("connect s", "{:>9.1f}", "connect_seconds"),
    ("lost", "{:>4}", "lost"),
)


def table(rows_in: list[Any], columns: tuple[tuple[str, str, str], ...], markdown: bool) -> str:
    heads = [h for h, _, _ in columns]
    rows = []
    for item in rows_in:
        values = asdict(item)
        cells = []
        for _, fmt, key in columns:
            value = values[key]
            is_nan = isinstance(value, float) and math.isnan(value)
            cells.append("–" if is_nan else fmt.format(value).strip())
        rows.append(cells)
    if markdown:
        lines = ["| " + " | ".join(heads) + " |"]
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(heads))) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]

    def just(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([just(heads), just(["-" * w for w in widths]), *map(just, rows)])


def ratios(points: list[Point]) -> list[str]:
    by = {(p.server, p.devices): p for p in points}
    out = []
    for n in sorted({p.devices for p in points}):
        tb, mq = by.get(("tinyboard", n)), by.get(("mosquitto", n))
        if tb is None or mq is None or mq.msgs_per_s <= 0:
            continue
        out.append(
            f"N={n:<5} tinyboard/mosquitto acked msg/s = {tb.msgs_per_s / mq.msgs_per_s:.2f}x"
            f"  ({tb.msgs_per_s:,.0f} / {mq.msgs_per_s:,.0f});"
            f" p99 {tb.p99_ms:.1f} ms vs {mq.p99_ms:.1f} ms"
        )
    return out


def checks(points: list[Point]) -> list[str]:
    out = []
    for p in points:
        c = p.check
        if c is None:
            continue
        verdict = "OK" if c.ok else "FAILED"
        out.append(
            f"N={p.devices:<5} {verdict}: stored seq rows {c.stored_seq_rows:,} >= PUBACKs "
            f"{c.pubacks:,}; acknowledged readings found {c.acked_found:,}, missing "
            f"{c.missing:,} (on {c.devices_short} devices); server exit {p.server_exit}"
        )
    return out


def machine() -> str:
    import uvloop

    try:
        mosquitto = subprocess.run(
            ["mosquitto", "-h"], check=False, capture_output=True, text=True, timeout=5
        ).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        mosquitto = "mosquitto version unknown"
    return (
        f"{platform.node()} {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"Python {platform.python_version()}, uvloop {uvloop.__version__}, "
        f"SQLite {sqlite3.sqlite_version}, psutil {psutil.__version__}, {mosquitto}"
    )


# -- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n    .venv")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def counts(text: str) -> list[int]:
        try:
            values = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError("takes integers, e.g. 100,1000") from None
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError("needs positive integers")
        return values

    add = parser.add_argument
    add("--devices", type=counts, default=[100, 1000], help="device counts (default: 100,1000)")
    add(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated servers among tinyboard,mosquitto (default: both)",
    )
    add("--seconds", type=float, default=5.0, help="measured seconds per point (default: 5)")
    add("--warmup", type=float, default=2.0, help="warm-up seconds per point (default: 2)")
    add("--window", type=int, default=10, help="QoS 1 messages in flight per connection (10)")
    add(
        "--workers",
        type=int,
        default=1,
        help="generator processes, connections split evenly among them (default: 1)",
    )
    add(
        "--sync",
        choices=("full", "normal"),
        default="full",
        help="tinyboard's SQLite durability (default: full, fsync at every commit)",
    )
    add(
        "--idle",
        type=int,
        default=10_000,
        help="idle connections for the memory test; 0 skips it (default: 10000)",
    )
    add(
        "--settle",
        type=float,
        default=2.0,
        help="seconds to wait before each idle RSS reading (default: 2)",
    )
    add(
        "--no-new-mosquitto",
        dest="new_mosquitto",
        action="store_false",
        help="idle test: skip the Mosquitto of our own (a new broker on a free port, "
        "stopped afterwards), measure only the running one",
    )
    add(
        "--mosquitto",
        default=f"{HOST}:1883",
        help="address of the running Mosquitto (default: %(default)s)",
    )
    add(
        "--profile",
        type=Path,
        help="also profile tinyboard with py-spy (raw collapsed stacks to this file)",
    )
    add("--profile-devices", type=int, default=1000, help="devices of the profiled point (1000)")
    add("--profile-rate", type=int, default=250, help="py-spy samples per second (250)")
    add(
        "--profile-extra",
        default="",
        help='more py-spy record options, e.g. "--gil" or "--native" (default: none)',
    )
    add(
        "--py-spy",
        default=str(Path(sys.executable).with_name("py-spy")),
        help="the py-spy executable (default: %(default)s)",
    )
    add(
        "--max-time",
        type=float,
        default=None,
        help="abort the whole run after this many seconds (default: from the points asked)",
    )
    add(
        "--tinyboard",
        default=str(Path(sys.executable).with_name("tinyboard")),
        help="the tinyboard executable (default: next to this Python: %(default)s)",
    )
    add(
        "--tinyboard-args",
        default="",
        help='more `tinyboard serve` options, e.g. "--batch-limit 20000" (default: none)',
    )
    add("--json", type=Path, help="also write the results to this JSON file")
    add("--markdown", action="store_true", help="print the tables as Markdown as well")
    add("--keep", action="store_true", help="keep the temporary data dirs (for inspection)")
    args = parser.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if unknown := [s for s in args.servers if s not in SERVERS]:
        parser.error(f"unknown server(s) {unknown}; choose among {', '.join(SERVERS)}")
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be > 0 and --warmup >= 0")
    if not 1 <= args.window <= 65535:
        parser.error("--window must be within 1..65535")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.idle < 0:
        parser.error("--idle must be >= 0")
    if args.max_time is None:
        per_point = 90 + args.seconds + args.warmup
        points = len(args.devices) * len(args.servers) + (args.profile is not None)
        args.max_time = 60 + points * per_point + (len(args.servers) * 240 if args.idle else 0)
    return args


def _on_signal(signum: int, _frame: Any) -> None:
    raise Stop(signal.Signals(signum).name)


def run_all(args: argparse.Namespace) -> tuple[list[Point], list[Idle], Point | None]:
    points: list[Point] = []
    idles: list[Idle] = []
    profiled: Point | None = None
    # Device count outer, servers inner: the points compared in a ratio run close in time.
    for n in args.devices:
        for name in args.servers:
            print(f"... {name} with {n} devices", file=sys.stderr, flush=True)
            try:
                point = run_ingest_point(name, n, args)
            except (RuntimeError, OSError, sqlite3.Error, psutil.Error) as exc:
                print(f"error: {name} with {n} devices failed: {exc}", file=sys.stderr)
                continue
            points.append(point)
            print(
                f"    {point.msgs_per_s:,.0f} msg/s, p99 {point.p99_ms:.2f} ms, "
                f"server CPU {point.server_cpu_pct:.0f}%, "
                f"generator CPU {point.generator_cpu_pct:.0f}%",
                file=sys.stderr,
                flush=True,
            )
    if args.idle:
        idle_servers = [*args.servers]
        if "mosquitto" in idle_servers and args.new_mosquitto:
            idle_servers.append("mosquitto (new)")
        for name in idle_servers:
            print(f"... {name} with {args.idle} idle connections", file=sys.stderr, flush=True)
            try:
                idles.append(run_idle(name, args.idle, args))
            except (RuntimeError, OSError, psutil.Error) as exc:
                print(f"error: idle {name} failed: {exc}", file=sys.stderr)
    if args.profile is not None:
        n = args.profile_devices
        print(f"... tinyboard with {n} devices under py-spy", file=sys.stderr, flush=True)
        try:
            profiled = run_ingest_point("tinyboard", n, args, profile=args.profile)
        except (RuntimeError, OSError, sqlite3.Error, psutil.Error) as exc:
            print(f"error: the profiled point failed: {exc}", file=sys.stderr)
    return points, idles, profiled


def raise_fd_limit() -> None:
    """Soft open-file limit up to the hard one: inherited by the Mosquitto we may start
    (each generator worker and tinyboard raise their own)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    source = revision()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGALRM, _on_signal)
    signal.alarm(max(1, int(args.max_time)))
    try:
        points, idles, profiled = run_all(args)
    except KeyboardInterrupt:
        print("interrupted; every process started here is stopped", file=sys.stderr)
        return 130
    except Stop as stop:
        why = f"--max-time {args.max_time:.0f} s reached" if str(stop) == "SIGALRM" else "stopped"
        print(f"error: {why}; every process started here is stopped", file=sys.stderr)
        return 1 if str(stop) == "SIGALRM" else 143
    finally:
        signal.alarm(0)
        stop_everything()

    report(args, started, source, points, idles, profiled)
    return 1 if warnings([*points, *([profiled] if profiled else [])], idles) else 0


def report(
    args: argparse.Namespace,
    started: str,
    source: str,
    points: list[Point],
    idles: list[Idle],
    profiled: Point | None,
) -> None:
    print()
    print(f"MQTT ingest, {started}")
    print(machine())
    print(source)
    print(
        f"{args.seconds:g} s measured per point after {args.warmup:g} s warm-up; "
        f"window {args.window} QoS 1 messages per connection; {args.workers} generator "
        f"process(es); tinyboard --sync {args.sync}"
    )
    if points:
        print()
        print(table(points, COLUMNS, markdown=False))
        print()
        for line in [*ratios(points), *checks(points)]:
            print(line)
    if idles:
        print()
        print(table(idles, IDLE_COLUMNS, markdown=False))
    if profiled is not None:
        print()
        print("profiled point (py-spy attached, so slower than the table's):")
        print(table([profiled], COLUMNS, markdown=False))
        print(f"py-spy raw stacks: {args.profile}")
        if args.profile.exists():
            for line in summarize_profile(args.profile):
                print(line)
    if args.markdown:
        for rows, columns in ((points, COLUMNS), (idles, IDLE_COLUMNS)):
            if rows:
                print()
                print(table(rows, columns, markdown=True))
    if args.json:
        document = {
            "started": started,
            "machine": machine(),
            "source": source,
            "args": {k: str(v) for k, v in vars(args).items()},
            "points": [asdict(p) for p in points],
            "idle": [asdict(i) for i in idles],
            "profiled": asdict(profiled) if profiled else None,
        }
        args.json.write_text(json.dumps(document, indent=2))


def warnings(points: list[Point], idles: list[Idle]) -> bool:
    """Print what went wrong; True if an acknowledged reading is missing (a failed run)."""
    failed = False
    for p in points:
        problems = []
        if p.server == "tinyboard" and p.server_exit != 0:
            problems.append(f"server exit {p.server_exit}")
        if p.lost or p.errors:
            problems.append(f"{p.lost} connections lost, {p.errors} protocol errors")
        if p.undrained:
            problems.append(f"{p.undrained} workers still waited for PUBACKs at the end")
        if p.check is not None and not p.check.ok:
            problems.append("acknowledged readings missing from the database")
            failed = True
        problems += p.notes
        if problems:
            print(f"warning: {p.server} N={p.devices}: {'; '.join(problems)}", file=sys.stderr)
    for i in idles:
        if i.lost or i.server_exit not in (0, None):
            print(
                f"warning: idle {i.server}: {i.lost} lost, server exit {i.server_exit}",
                file=sys.stderr,
            )
    return failed


if __name__ == "__main__":
    sys.exit(main())
