"""HTTP, history queries and live updates: tinyboard against same-run baselines (issue 5).

Three parts, in one run, each against a floor measured by the same script:

1. Device HTTP API throughput. `wrk` (Debian's package: `apt-get install -y wrk`) posts
   `{"temperature": 21.5}` to `POST /api/v1/{token}/telemetry` over `--http-connections`
   keep-alive connections, the paths cycling over `--http-tokens` device tokens, for a
   `--http-warmup` run and then a measured `--http-seconds` run, against:
     tinyboard        a fresh `tinyboard serve` (SQLite, `--sync full`: every 200 is a
                      write committed with fsync); the devices are created in the store
                      before it starts.
     tinyboard-normal the same with `--sync normal` (no fsync per commit): shows how much
                      of the difference is the disk.
     null-fastapi     benchmarks/baselines/http_null_app.py: FastAPI + uvicorn with
                      tinyboard's uvicorn settings, the same route, reads the body, stores
                      nothing: the floor of any FastAPI device API on this machine.
   Per server: requests/s, p50/p99/max latency (wrk's, over every request), non-2xx and
   socket errors, server CPU over the measured run (all threads, and its event-loop thread
   alone), RSS at the end, wrk's own CPU, and the ratio of each tinyboard mode to the
   baseline.

2. History query. `--points` points (default 1,000,000) of one key `t` of one device, one per
   second, are written with the store API in batches (before any server starts), then
   `--runs` times each (median reported, and min/max):
     store           `store.aggregate(..., interval=range/--buckets, agg="AVG")` in this
                     process: the SQLite work plus the thread hand-off;
     REST            `GET /api/plugins/telemetry/DEVICE/{id}/values/timeseries?...&agg=AVG`
                     against `tinyboard serve` on the same file (httpx, keep-alive, JWT),
                     wall time of the whole request;
     sqlite avg      the floor: `SELECT avg(v)` over the same rows with the stdlib sqlite3
                     module, one range scan, no buckets.
   The answers are checked: --buckets buckets, each the mean of the points in it.

3. Publish → WebSocket latency. `--live-devices` devices; one WebSocket subscriber (its own
   process, benchmarks/live_load.py) sends one tsSubCmd per device for key `t`; a publisher
   process connects one MQTT client per device and publishes `{"t": <send time>}` at a
   steady `--live-rate` msg/s in total (paced every millisecond, round robin over the
   devices) at each QoS of `--live-qos`. Latency = receive time at the subscriber − the send
   time carried in the value (CLOCK_MONOTONIC, shared by the processes), over every value
   sent in the `--live-seconds` window after a `--live-warmup`; reported as p50/p99/max,
   with values lost (sent − received, whole run, after a drain), server CPU (and its loop
   thread), and the publisher's and subscriber's CPU.

DESIGN §7 targets: history query ≤ 50 ms (SQLite), publish → WebSocket p99 ≤ 20 ms at 5k
msg/s. The device HTTP API has no numeric target; the ratio to the floor is reported.

CPU figures are % of one core. "other" is the machine's busy time minus the server's and the
generator's: loopback softirq work, and anything else running; far above the usual means the
point was disturbed. Before each measurement the script waits (up to --max-wait seconds in
all) while another benchmark (mqtt_ingest.py, line_echo.py) runs on the machine.

`--profile DIR` also records the servers with py-spy during the measured windows (raw
collapsed stacks in DIR, plus a summary printed at the end); sampling costs the server CPU,
so figures from a profiled run are not the ones to publish.

Every process started here is stopped on exit, error, Ctrl+C or SIGTERM (and by the kernel if
this script is killed); the whole run is bounded by --max-time plus --max-wait.

    .venv/bin/python benchmarks/http_and_queries.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import uvloop

T = TypeVar("T")
from common import (  # noqa: E402 - benchmarks/ is on sys.path
    percentile,
    revision,
    serve_argv,
    spawn,
    stop_all_children,
    stop_process,
)

HERE = Path(__file__).resolve().parent
NULL_APP = HERE / "baselines" / "http_null_app.py"
LIVE_LOAD = HERE / "live_load.py"
HOST = "127.0.0.1"
HTTP_MODES = ("tinyboard", "tinyboard-normal", "null-fastapi")
OTHER_BENCHMARKS = ("mqtt_ingest.py", "line_echo.py")
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
BODY = '{"temperature": 21.5}'
FIRST_TS = 1_700_000_000_000  # ms, the first history point

TINYBOARD_READY = re.compile(
    r"ready: line protocol on [^\s:]+:(\d+), MQTT on [^\s:]+:(\d+), HTTP on [^\s:]+:(\d+)"
)
ADMIN = re.compile(r"created the admin user (\S+) with password (\S+)")
NULL_READY = re.compile(r"listening on [^\s:]+:(\d+)")

WRK_SCRIPT = """
local tokens = {%(tokens)s}
local body = '%(body)s'
local headers = {["Content-Type"] = "application/json"}
local requests = {}
local n = 0

init = function(args)
  for i, token in ipairs(tokens) do
    requests[i] = wrk.format("POST", "/api/v1/" .. token .. "/telemetry", headers, body)
  end
end

request = function()
  n = n + 1
  return requests[(n %% #requests) + 1]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'HQJSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


async def stop_async(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int | None:
    return await asyncio.get_running_loop().run_in_executor(None, stop_process, proc, timeout)


# -- a quiet machine -------------------------------------------------------------------------
class QuietGuard:
    """Waits while another benchmark runs; the waiting is not charged to --max-time."""

    def __init__(self, max_wait: float) -> None:
        self.budget = max_wait
        self.waited = 0.0
        self.timeout: asyncio.Timeout | None = None

    @staticmethod
    def others() -> list[str]:
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if proc.info["pid"] == os.getpid():
                continue
            if any(arg.endswith(name) for arg in cmdline for name in OTHER_BENCHMARKS):
                found.append(f"{proc.info['pid']} {' '.join(cmdline)[:120]}")
        return found

    async def wait(self) -> None:
        started = time.monotonic()
        told = False
        while others := self.others():
            waited = time.monotonic() - started
            if self.waited + waited > self.budget:
                raise RuntimeError(f"another benchmark is still running: {others}")
            if not told:
                log(f"    waiting for another benchmark to finish: {others[0]}")
                told = True
            await asyncio.sleep(2)
        waited = time.monotonic() - started
        self.waited += waited
        if self.timeout is not None and waited > 0.5:
            when = self.timeout.when()
            if when is not None:
                self.timeout.reschedule(when + waited)
        if told:
            log(f"    ... it finished after {waited:.0f} s; measuring")
            await asyncio.sleep(1)  # let its last processes exit

    def check(self, what: str) -> None:
        """After a measurement: raise Disturbed if another benchmark started meanwhile."""
        if others := self.others():
            raise Disturbed(f"{what}: another benchmark ran during the measurement: {others[0]}")


class Disturbed(RuntimeError):
    """Another benchmark ran during a measurement; the point is measured again."""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- CPU accounting --------------------------------------------------------------------------
def _cpu(times: Any) -> float:
    return float(times.user + times.system)


def _busy(times: Any) -> float:
    names = ("user", "nice", "system", "irq", "softirq")
    return float(sum(getattr(times, name, 0.0) for name in names))


def _thread_cpu(proc: psutil.Process, tid: int) -> float:
    for thread in proc.threads():
        if thread.id == tid:
            return float(thread.user_time + thread.system_time)
    return 0.0


class CpuWindow:
    """CPU seconds of the server (all threads, and its main = event-loop thread), of
    generator processes, and of the whole machine, between start() and stop()."""

    def __init__(self, server_pid: int, generator_pids: list[int]) -> None:
        self.server = psutil.Process(server_pid)
        self.generators = [psutil.Process(p) for p in generator_pids]
        self.t0 = 0.0
        self.wall = 0.0
        self.server_s = self.loop_s = self.busy_s = 0.0
        self.generator_s: list[float] = []

    def _sample(self) -> tuple[float, float, float, float, list[float]]:
        gens = []
        for g in self.generators:
            try:
                gens.append(_cpu(g.cpu_times()))
            except psutil.NoSuchProcess:
                gens.append(float("nan"))
        return (
            time.perf_counter(),
            _cpu(self.server.cpu_times()),
            _thread_cpu(self.server, self.server.pid),
            _busy(psutil.cpu_times()),
            gens,
        )

    def start(self) -> None:
        self._first = self._sample()

    def stop(self) -> None:
        t1, srv1, loop1, busy1, gens1 = self._sample()
        t0, srv0, loop0, busy0, gens0 = self._first
        self.wall = t1 - t0
        self.server_s = srv1 - srv0
        self.loop_s = loop1 - loop0
        self.busy_s = busy1 - busy0
        self.generator_s = [b - a for a, b in zip(gens0, gens1, strict=True)]

    def pct(self, seconds: float) -> float:
        return 100.0 * seconds / self.wall if self.wall > 0 else float("nan")

    def other_pct(self, extra_generator_s: float = 0.0) -> float:
        gen = sum(self.generator_s) + extra_generator_s
        return self.pct(self.busy_s - self.server_s - gen)


# -- servers ---------------------------------------------------------------------------------
@dataclass
class Server:
    mode: str
    proc: subprocess.Popen[bytes]
    http_port: int
    mqtt_port: int = 0
    admin: tuple[str, str] | None = None
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


def read_text(path: Path) -> str:
    """A small file (a server log): read at once, no need for a thread."""
    return path.read_text(errors="replace")


def db_size_mb(data_dir: Path) -> float:
    return sum(p.stat().st_size for p in data_dir.glob("tinyboard.db*")) / 1e6


async def _wait_ready(
    proc: subprocess.Popen[bytes], log_path: Path, ready: re.Pattern[str], what: str
) -> re.Match[str]:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if match := ready.search(read_text(log_path)):
            return match
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.05)
    stop_process(proc)
    tail = read_text(log_path)[-2000:]
    raise RuntimeError(f"{what} did not become ready; its output:\n{tail}")


async def start_tinyboard(tinyboard: str, data_dir: Path, sync: str = "full") -> Server:
    log_path = data_dir / "server.log"
    argv = serve_argv(tinyboard, data_dir, "--sync", sync, "--metrics-token", METRICS_TOKEN)
    with log_path.open("wb") as out:
        proc = spawn(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    match = await _wait_ready(proc, log_path, TINYBOARD_READY, "tinyboard")
    admin = None
    deadline = time.monotonic() + 5
    while admin is None and time.monotonic() < deadline:
        if found := ADMIN.search(read_text(log_path)):
            admin = (found.group(1), found.group(2))
        else:
            await asyncio.sleep(0.02)
    return Server(
        "tinyboard", proc, int(match.group(3)), int(match.group(2)), admin, log_path=log_path
    )


async def start_null_app(data_dir: Path) -> Server:
    log_path = data_dir / "null-app.log"
    argv = [sys.executable, str(NULL_APP), "--host", HOST, "--port", "0"]
    with log_path.open("wb") as out:
        proc = spawn(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    match = await _wait_ready(proc, log_path, NULL_READY, "the null FastAPI app")
    return Server("null-fastapi", proc, int(match.group(1)), log_path=log_path)


async def stop_server(server: Server) -> int | None:
    return await stop_async(server.proc)


async def login(client: httpx.AsyncClient, server: Server) -> str:
    if server.admin is None:
        raise RuntimeError(
            "tinyboard did not print the first-start admin password (not a fresh data dir?)"
        )
    email, password = server.admin
    r = await client.post(
        f"http://{HOST}:{server.http_port}/api/auth/login",
        json={"username": email, "password": password},
    )
    r.raise_for_status()
    return str(r.json()["token"])


# -- the store, used directly ---------------------------------------------------------------
async def create_devices(data_dir: Path, names: list[str]) -> list[Any]:
    from tinyboard.storage import open_store

    store = open_store(f"sqlite:{data_dir / 'tinyboard.db'}", sync="normal")
    await store.open()
    try:
        return [await store.create_device(name) for name in names]
    finally:
        await store.close()


# -- py-spy ----------------------------------------------------------------------------------
class Profiler:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.files: list[tuple[str, Path]] = []

    def start(self, name: str, pid: int, seconds: float) -> subprocess.Popen[bytes] | None:
        if self.folder is None:
            return None
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        out = self.folder / f"{name}.txt"
        argv = [py_spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
        argv += ["--rate", "200", "--format", "raw", "--threads", "--nonblocking"]
        argv += ["--output", str(out)]
        self.files.append((name, out))
        return spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def finish(self, proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loop.run_in_executor(None, proc.wait), 30)
        stop_process(proc, timeout=5)

    def summary(self, top: int = 18) -> list[str]:
        lines: list[str] = []
        for name, path in self.files:
            if not path.exists():
                lines.append(f"{name}: no profile written")
                continue
            own: Counter[str] = Counter()
            inclusive: Counter[str] = Counter()
            threads: Counter[str] = Counter()
            total = 0
            for line in path.read_text(errors="replace").splitlines():
                stack, _, count_text = line.rpartition(" ")
                if not stack or not count_text.isdigit():
                    continue
                count = int(count_text)
                frames = stack.split(";")
                total += count
                threads[frames[0]] += count
                own[frames[-1]] += count
                for frame in set(frames[1:]):
                    inclusive[frame] += count
            lines.append(f"{name}: {total} samples ({path})")
            for thread, count in threads.most_common(6):
                lines.append(f"  thread {100 * count / max(total, 1):5.1f}%  {thread}")
            lines.append("  self time:")
            for frame, count in own.most_common(top):
                lines.append(f"  {100 * count / max(total, 1):5.1f}%  {frame}")
            lines.append("  inclusive:")
            for frame, count in inclusive.most_common(top):
                lines.append(f"  {100 * count / max(total, 1):5.1f}%  {frame}")
        return lines


# -- part 1: device HTTP API ----------------------------------------------------------------
@dataclass
class HttpPoint:
    mode: str
    connections: int
    tokens: int
    seconds: float
    requests: int
    req_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    server_cpu_pct: float
    loop_cpu_pct: float
    server_rss_mb: float
    wrk_cpu_pct: float
    other_cpu_pct: float
    readings_per_commit: float | None = None
    stored: int | None = None
    server_exit: int | None = None


METRICS_TOKEN = "benchmark-scrape-token"
"""/metrics needs a scrape token (or an admin's JWT)."""


async def pipeline_counters(client: httpx.AsyncClient, port: int) -> tuple[int, int]:
    """(commits, readings stored) from tinyboard's /metrics."""
    auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    response = await client.get(f"http://{HOST}:{port}/metrics", headers=auth)
    text = response.raise_for_status().text
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("tinyboard_commits_total", "tinyboard_readings_stored_total"):
            values[name] = int(float(value))
    return values.get("tinyboard_commits_total", 0), values.get(
        "tinyboard_readings_stored_total", 0
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run_wrk(
    wrk: str, script: Path, port: int, threads: int, connections: int, seconds: float
) -> tuple[dict[str, Any], float]:
    """One wrk run; its result and its CPU seconds (rusage of the reaped child)."""
    argv = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s"]
    argv += ["--timeout", "10s", "-s", str(script), f"http://{HOST}:{port}/"]
    before = _children_cpu()
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        loop = asyncio.get_running_loop()
        out, err = await asyncio.wait_for(
            loop.run_in_executor(None, proc.communicate), seconds + 30
        )
    finally:
        stop_process(proc, timeout=2)
    cpu = _children_cpu() - before
    text = out.decode(errors="replace")
    if proc.returncode != 0 or "HQJSON " not in text:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {text[-800:]} {err.decode()[-800:]}")
    return json.loads(text.split("HQJSON ", 1)[1].splitlines()[0]), cpu


def count_rows(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        (n,) = conn.execute("SELECT count(*) FROM ts_kv").fetchone()
    return int(n)


async def http_point(
    mode: str, args: argparse.Namespace, guard: QuietGuard, profiler: Profiler
) -> HttpPoint:
    await guard.wait()
    data_dir = Path(tempfile.mkdtemp(prefix=f"tb-bench-http-{mode}-"))
    server: Server | None = None
    try:
        names = [f"http-{i:04d}" for i in range(args.http_tokens)]
        if mode == "null-fastapi":
            tokens = [f"token-{i:04d}-abcdefghijklmnopqrst" for i in range(args.http_tokens)]
            server = await start_null_app(data_dir)
        else:
            tokens = [d.token for d in await create_devices(data_dir, names)]
            sync = "normal" if mode == "tinyboard-normal" else "full"
            server = await start_tinyboard(args.tinyboard, data_dir, sync)
        # One request first: the route answers 200 for this token.
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(
                f"http://{HOST}:{server.http_port}/api/v1/{tokens[0]}/telemetry",
                content=BODY,
                headers={"Content-Type": "application/json"},
            )
            if r.status_code != 200:
                raise RuntimeError(f"{mode}: probe POST answered {r.status_code}: {r.text[:200]}")
        script = data_dir / "post.lua"
        script.write_text(
            WRK_SCRIPT % {"tokens": ", ".join(f'"{t}"' for t in tokens), "body": BODY}
        )
        threads, conns = args.wrk_threads, args.http_connections
        if args.http_warmup > 0:
            await run_wrk(args.wrk, script, server.http_port, threads, conns, args.http_warmup)
        await guard.wait()
        tinyboard = mode != "null-fastapi"
        async with httpx.AsyncClient(timeout=10) as client:
            if tinyboard:
                commits0, readings0 = await pipeline_counters(client, server.http_port)
            cpu = CpuWindow(server.pid, [])
            cpu.start()
            spy = profiler.start(f"http-{mode}", server.pid, args.http_seconds)
            result, wrk_cpu = await run_wrk(
                args.wrk, script, server.http_port, threads, conns, args.http_seconds
            )
            cpu.stop()
            batch = None
            if tinyboard:
                commits1, readings1 = await pipeline_counters(client, server.http_port)
                batch = (readings1 - readings0) / max(commits1 - commits0, 1)
        await profiler.finish(spy)
        guard.check(f"HTTP {mode}")
        rss = psutil.Process(server.pid).memory_info().rss
        seconds = result["duration_us"] / 1e6
        point = HttpPoint(
            mode=mode,
            connections=conns,
            tokens=len(tokens),
            seconds=round(seconds, 3),
            requests=result["requests"],
            req_per_s=result["requests"] / seconds,
            p50_ms=result["p50_us"] / 1000,
            p99_ms=result["p99_us"] / 1000,
            max_ms=result["max_us"] / 1000,
            non_2xx=result["status"],
            socket_errors=sum(result[k] for k in ("connect", "read", "write", "timeout")),
            server_cpu_pct=cpu.pct(cpu.server_s),
            loop_cpu_pct=cpu.pct(cpu.loop_s),
            server_rss_mb=rss / 1e6,
            wrk_cpu_pct=cpu.pct(wrk_cpu),
            other_cpu_pct=cpu.other_pct(wrk_cpu),
            readings_per_commit=batch,
        )
        point.server_exit = await stop_server(server)
        server = None
        if tinyboard:
            point.stored = count_rows(data_dir / "tinyboard.db")
        return point
    finally:
        if server is not None:
            stop_process(server.proc, timeout=5)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


# -- part 2: history query -------------------------------------------------------------------
@dataclass
class Timing:
    what: str
    runs: int
    median_ms: float
    min_ms: float
    max_ms: float
    first_ms: float
    result: str


@dataclass
class HistoryResult:
    points: int
    buckets: int
    interval_ms: int
    write_s: float
    db_mb: float
    timings: list[Timing] = field(default_factory=list)
    server_exit: int | None = None


def _timing(what: str, samples: list[float], result: str) -> Timing:
    ms = [s * 1000 for s in samples]
    return Timing(what, len(ms), statistics.median(ms), min(ms), max(ms), ms[0], result)


def expected_bucket_means(points: int, buckets: int) -> list[float]:
    """Point i has value value_of(i); bucket b holds points [b*size, (b+1)*size)."""
    size = -(-points // buckets)
    out = []
    for b in range(buckets):
        lo, hi = b * size, min((b + 1) * size, points)
        if lo < hi:
            out.append(sum(value_of(i) for i in range(lo, hi)) / (hi - lo))
    return out


def value_of(i: int) -> float:
    return 20.0 + (i % 1000) * 0.01 + (i // 1000) * 0.001


def check_means(got: list[float], want: list[float], what: str) -> None:
    if len(got) != len(want):
        raise RuntimeError(f"{what}: {len(got)} buckets, expected {len(want)}")
    worst = max((abs(a - b) for a, b in zip(got, want, strict=True)), default=0.0)
    if worst > 1e-6:
        raise RuntimeError(f"{what}: a bucket mean is off by {worst}")


async def history_part(
    args: argparse.Namespace, guard: QuietGuard, profiler: Profiler
) -> HistoryResult:
    from tinyboard.storage import open_store

    await guard.wait()
    data_dir = Path(tempfile.mkdtemp(prefix="tb-bench-history-"))
    db = data_dir / "tinyboard.db"
    server: Server | None = None
    try:
        n, buckets = args.points, args.buckets
        start, end = FIRST_TS, FIRST_TS + n * 1000
        interval = -(-(end - start) // buckets)
        if interval % 1000:
            raise RuntimeError("--points must be a multiple of --buckets (whole seconds)")
        want = expected_bucket_means(n, buckets)

        store = open_store(f"sqlite:{db}", sync="normal")
        await store.open()
        try:
            device = await store.create_device("history")
            t0 = time.perf_counter()
            batch = args.write_batch
            for first in range(0, n, batch):
                rows = [
                    (device.key, "t", FIRST_TS + i * 1000, value_of(i))
                    for i in range(first, min(first + batch, n))
                ]
                await store.write(rows, [])
            write_s = time.perf_counter() - t0
            log(f"    {n:,} points written in {write_s:.1f} s")

            await guard.wait()
            samples: list[float] = []
            got: list[Any] = []
            for _ in range(args.runs):
                t = time.perf_counter()
                got = await store.aggregate(
                    device.key,
                    "t",
                    start_ts=start,
                    end_ts=end,
                    interval=interval,
                    agg="AVG",
                    limit=buckets,
                    descending=False,
                )
                samples.append(time.perf_counter() - t)
            guard.check("history, store")
            check_means([float(v) for _, v in got], want, "store.aggregate")
            store_timing = _timing("store.aggregate (in process)", samples, f"{len(got)} buckets")
        finally:
            await store.close()
        db_mb = db_size_mb(data_dir)
        result = HistoryResult(n, buckets, interval, write_s, db_mb)

        # The floor: one range scan with the stdlib module, no buckets.
        await guard.wait()
        samples = []
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            (key_id,) = conn.execute("SELECT id FROM ts_key WHERE key = 't'").fetchone()
            sql = (
                "SELECT avg(v), count(*) FROM ts_kv "
                "WHERE device = ? AND key = ? AND ts >= ? AND ts < ?"
            )
            for _ in range(args.runs):
                t = time.perf_counter()
                _, count = conn.execute(sql, (device.key, key_id, start, end)).fetchone()
                samples.append(time.perf_counter() - t)
        guard.check("history, sqlite floor")
        if count != n:
            raise RuntimeError(f"sqlite floor: counted {count} points, expected {n}")
        floor = _timing("sqlite3 SELECT avg(v), one scan", samples, f"{count:,} rows, 1 value")

        # Through the REST API.
        server = await start_tinyboard(args.tinyboard, data_dir, "normal")
        url = (
            f"http://{HOST}:{server.http_port}/api/plugins/telemetry/DEVICE/{device.id}"
            f"/values/timeseries?keys=t&startTs={start}&endTs={end}&interval={interval}"
            f"&agg=AVG&limit={buckets}&orderBy=ASC"
        )
        async with httpx.AsyncClient(timeout=30) as client:
            jwt = await login(client, server)
            headers = {"X-Authorization": f"Bearer {jwt}"}
            await guard.wait()
            samples = []
            spy = profiler.start("history-rest", server.pid, 5) if args.profile else None
            body = b""
            for _ in range(args.runs):
                t = time.perf_counter()
                r = await client.get(url, headers=headers)
                body = r.content
                samples.append(time.perf_counter() - t)
                r.raise_for_status()
            guard.check("history, REST")
            if spy is not None:
                # More requests while py-spy samples, so the profile has enough of them.
                until = time.monotonic() + 5
                while time.monotonic() < until:
                    await client.get(url, headers=headers)
                await profiler.finish(spy)
            doc = json.loads(body)
            check_means([float(p["value"]) for p in doc["t"]], want, "REST")
            rest = _timing(
                "REST GET .../values/timeseries (HTTP round trip)",
                samples,
                f"{len(doc['t'])} buckets, {len(body):,} B",
            )
        result.server_exit = await stop_server(server)
        server = None
        result.timings = [store_timing, rest, floor]
        return result
    finally:
        if server is not None:
            stop_process(server.proc, timeout=5)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


# -- part 3: publish → WebSocket latency ------------------------------------------------------
@dataclass
class LivePoint:
    qos: int
    devices: int
    rate: float
    seconds: float
    sent: int
    sent_rate: float
    received: int
    lost: int
    window_values: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    ws_messages: int
    server_cpu_pct: float
    loop_cpu_pct: float
    server_rss_mb: float
    publisher_cpu_pct: float
    subscriber_cpu_pct: float
    other_cpu_pct: float
    late_ticks: int
    closed: str | None
    server_exit: int | None = None


async def _read_ready(proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    assert proc.stdout is not None
    line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), timeout)
    if line.strip() != b"READY":
        raise RuntimeError(f"{what} did not start: {line!r} (exit {proc.poll()})")


async def _last_json(proc: subprocess.Popen[bytes], what: str, timeout: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    out, err = await asyncio.wait_for(loop.run_in_executor(None, proc.communicate), timeout)
    lines = out.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {err.decode()[-1500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def live_point(
    qos: int, args: argparse.Namespace, guard: QuietGuard, profiler: Profiler
) -> LivePoint:
    await guard.wait()
    data_dir = Path(tempfile.mkdtemp(prefix=f"tb-bench-live-qos{qos}-"))
    server: Server | None = None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        devices = await create_devices(
            data_dir, [f"live-{i:04d}" for i in range(args.live_devices)]
        )
        (data_dir / "tokens.json").write_text(json.dumps([d.token for d in devices]))
        (data_dir / "ids.json").write_text(json.dumps([d.id for d in devices]))
        server = await start_tinyboard(args.tinyboard, data_dir, args.live_sync)
        async with httpx.AsyncClient(timeout=10) as client:
            jwt = await login(client, server)
        out = data_dir / "latencies.bin"
        url = f"ws://{HOST}:{server.http_port}/api/ws/plugins/telemetry?token={jwt}"
        subscriber = spawn(
            [
                sys.executable,
                str(LIVE_LOAD),
                "subscribe",
                "--url",
                url,
                "--devices",
                str(data_dir / "ids.json"),
                "--out",
                str(out),
                "--compression",
                args.ws_compression,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        procs.append(subscriber)
        await _read_ready(subscriber, "the WebSocket subscriber", 60)
        total = args.live_warmup + args.live_seconds
        publisher = spawn(
            [
                sys.executable,
                str(LIVE_LOAD),
                "publish",
                "--port",
                str(server.mqtt_port),
                "--tokens",
                str(data_dir / "tokens.json"),
                "--rate",
                str(args.live_rate),
                "--seconds",
                str(total),
                "--qos",
                str(qos),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        procs.append(publisher)
        await _read_ready(publisher, "the MQTT publisher", 60)

        await guard.wait()
        cpu = CpuWindow(server.pid, [publisher.pid, subscriber.pid])
        assert publisher.stdin is not None
        publisher.stdin.write(b"go\n")
        publisher.stdin.flush()
        await asyncio.sleep(args.live_warmup)
        cpu.start()
        spy = profiler.start(f"live-qos{qos}", server.pid, args.live_seconds)
        await asyncio.sleep(args.live_seconds)
        cpu.stop()
        guard.check(f"live QoS {qos}")
        rss = psutil.Process(server.pid).memory_info().rss
        pub = await _last_json(publisher, "the MQTT publisher", 60)
        await profiler.finish(spy)
        await asyncio.sleep(args.live_drain)
        subscriber.send_signal(signal.SIGTERM)
        sub = await _last_json(subscriber, "the WebSocket subscriber", 30)
        for proc in procs:
            stop_process(proc, timeout=2)
        procs = []

        raw = array("d")
        with out.open("rb") as f:
            raw.frombytes(f.read())
        half = len(raw) // 2
        sends, recvs = raw[:half], raw[half:]
        lo = pub["start_ms"] + args.live_warmup * 1000
        hi = lo + args.live_seconds * 1000
        lat = sorted(r - s for s, r in zip(sends, recvs, strict=True) if lo <= s < hi)
        point = LivePoint(
            qos=qos,
            devices=len(devices),
            rate=args.live_rate,
            seconds=args.live_seconds,
            sent=pub["sent"],
            sent_rate=pub["sent"] / ((pub["end_ms"] - pub["start_ms"]) / 1000),
            received=half,
            lost=pub["sent"] - half,
            window_values=len(lat),
            p50_ms=percentile(lat, 0.50),
            p99_ms=percentile(lat, 0.99),
            p999_ms=percentile(lat, 0.999),
            max_ms=lat[-1] if lat else float("nan"),
            ws_messages=sub["messages"],
            server_cpu_pct=cpu.pct(cpu.server_s),
            loop_cpu_pct=cpu.pct(cpu.loop_s),
            server_rss_mb=rss / 1e6,
            publisher_cpu_pct=cpu.pct(cpu.generator_s[0]),
            subscriber_cpu_pct=cpu.pct(cpu.generator_s[1]),
            other_cpu_pct=cpu.other_pct(),
            late_ticks=pub["late_ticks"],
            closed=sub["closed"],
        )
        if qos and pub["acked"] != pub["sent"]:
            log(f"warning: QoS 1: {pub['acked']} PUBACKs for {pub['sent']} messages")
        point.server_exit = await stop_server(server)
        server = None
        return point
    finally:
        for proc in procs:
            stop_process(proc, timeout=2)
        if server is not None:
            stop_process(server.proc, timeout=5)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


# -- report ----------------------------------------------------------------------------------
def table(heads: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        out = ["| " + " | ".join(heads) + " |"]
        out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(heads))) + "|")
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]

    def just(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([just(heads), just(["-" * w for w in widths]), *map(just, rows)])


def http_table(points: list[HttpPoint], markdown: bool = False) -> str:
    heads = ["server", "conns", "req/s", "p50 ms", "p99 ms", "max ms", "non-2xx", "sock err"]
    heads += ["srv CPU%", "loop CPU%", "srv RSS MB", "wrk CPU%", "other CPU%", "per commit"]
    rows = [
        [
            p.mode,
            str(p.connections),
            f"{p.req_per_s:,.0f}",
            f"{p.p50_ms:.2f}",
            f"{p.p99_ms:.2f}",
            f"{p.max_ms:.1f}",
            str(p.non_2xx),
            str(p.socket_errors),
            f"{p.server_cpu_pct:.0f}",
            f"{p.loop_cpu_pct:.0f}",
            f"{p.server_rss_mb:.1f}",
            f"{p.wrk_cpu_pct:.0f}",
            f"{p.other_cpu_pct:.0f}",
            "" if p.readings_per_commit is None else f"{p.readings_per_commit:.1f}",
        ]
        for p in points
    ]
    return table(heads, rows, markdown)


def http_ratios(points: list[HttpPoint]) -> list[str]:
    base = next((p for p in points if p.mode == "null-fastapi"), None)
    if base is None or base.req_per_s <= 0:
        return []
    return [
        f"{p.mode}/null-fastapi req/s = {p.req_per_s / base.req_per_s:.2f}x"
        f"  ({p.req_per_s:,.0f} / {base.req_per_s:,.0f})"
        for p in points
        if p.mode != "null-fastapi"
    ]


def history_table(result: HistoryResult, markdown: bool = False) -> str:
    heads = ["what", "runs", "median ms", "min ms", "max ms", "first ms", "answer"]
    rows = [
        [
            t.what,
            str(t.runs),
            f"{t.median_ms:.1f}",
            f"{t.min_ms:.1f}",
            f"{t.max_ms:.1f}",
            f"{t.first_ms:.1f}",
            t.result,
        ]
        for t in result.timings
    ]
    return table(heads, rows, markdown)


def live_table(points: list[LivePoint], markdown: bool = False) -> str:
    heads = ["QoS", "devices", "sent msg/s", "values", "p50 ms", "p99 ms", "p99.9 ms"]
    heads += ["max ms", "lost", "values/WS msg", "srv CPU%", "loop CPU%", "srv RSS MB"]
    heads += ["pub CPU%", "sub CPU%", "other CPU%"]
    rows = [
        [
            str(p.qos),
            str(p.devices),
            f"{p.sent_rate:,.0f}",
            f"{p.window_values:,}",
            f"{p.p50_ms:.2f}",
            f"{p.p99_ms:.2f}",
            f"{p.p999_ms:.2f}",
            f"{p.max_ms:.1f}",
            str(p.lost),
            f"{p.received / max(p.ws_messages, 1):.1f}",
            f"{p.server_cpu_pct:.0f}",
            f"{p.loop_cpu_pct:.0f}",
            f"{p.server_rss_mb:.1f}",
            f"{p.publisher_cpu_pct:.0f}",
            f"{p.subscriber_cpu_pct:.0f}",
            f"{p.other_cpu_pct:.0f}",
        ]
        for p in points
    ]
    return table(heads, rows, markdown)


def machine() -> str:
    return (
        f"{platform.node()} {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"Python {platform.python_version()}, uvloop {uvloop.__version__}, "
        f"SQLite {sqlite3.sqlite_version}, psutil {psutil.__version__}"
    )


def wrk_version(wrk: str) -> str:
    try:
        done = subprocess.run([wrk, "-v"], check=False, capture_output=True, text=True, timeout=5)
    except OSError:
        return "wrk ?"
    return (done.stdout + done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else ""


# -- main ------------------------------------------------------------------------------------
PARTS = ("http", "history", "live")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n    .venv")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--parts", default=",".join(PARTS), help="which parts to run (default: %(default)s)")
    add("--http-servers", default=",".join(HTTP_MODES), help="default: %(default)s")
    add("--http-connections", type=int, default=50, help="wrk connections (default: 50)")
    add("--http-tokens", type=int, default=50, help="device tokens cycled (default: 50)")
    add("--http-seconds", type=float, default=10.0, help="measured wrk run (default: 10)")
    add("--http-warmup", type=float, default=2.0, help="wrk warm-up run (default: 2)")
    add("--wrk-threads", type=int, default=1, help="wrk threads (default: 1)")
    add("--wrk", default=shutil.which("wrk") or "wrk", help="the wrk executable")
    add("--points", type=int, default=1_000_000, help="history points (default: 1,000,000)")
    add("--buckets", type=int, default=1000, help="AVG buckets asked for (default: 1000)")
    add("--runs", type=int, default=9, help="timed runs per history query (default: 9)")
    add("--write-batch", type=int, default=10_000, help="points per store.write (default: 10k)")
    add("--live-devices", type=int, default=50, help="publishing devices (default: 50)")
    add("--live-rate", type=float, default=5000.0, help="total msg/s (default: 5000)")
    add("--live-seconds", type=float, default=10.0, help="measured window (default: 10)")
    add("--live-warmup", type=float, default=2.0, help="before the window (default: 2)")
    add("--live-drain", type=float, default=2.0, help="after publishing ends (default: 2)")
    add("--live-qos", default="0,1", help="QoS levels, one point each (default: 0,1)")
    add("--live-sync", choices=("full", "normal"), default="full", help="tinyboard --sync")
    add(
        "--ws-compression",
        choices=("deflate", "none"),
        default="deflate",
        help="offer permessage-deflate as browsers do (default: deflate)",
    )
    add("--max-time", type=float, default=900.0, help="abort after this many seconds (900)")
    add("--max-wait", type=float, default=1800.0, help="most seconds to wait for others")
    add(
        "--tinyboard",
        default=str(Path(sys.executable).with_name("tinyboard")),
        help="the tinyboard executable (default: %(default)s)",
    )
    add("--profile", type=Path, help="py-spy the servers' measured windows into this folder")
    add("--json", type=Path, help="also write the results to this JSON file")
    add("--markdown", action="store_true", help="print the tables as Markdown as well")
    add("--keep", action="store_true", help="keep the temporary data dirs")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if bad := [p for p in args.parts if p not in PARTS]:
        parser.error(f"unknown part(s) {bad}; choose among {', '.join(PARTS)}")
    args.http_servers = [m.strip() for m in args.http_servers.split(",") if m.strip()]
    if bad := [m for m in args.http_servers if m not in HTTP_MODES]:
        parser.error(f"unknown server(s) {bad}; choose among {', '.join(HTTP_MODES)}")
    try:
        args.live_qos = [int(q) for q in args.live_qos.split(",") if q.strip()]
    except ValueError:
        parser.error("--live-qos takes 0, 1 or 0,1")
    if any(q not in (0, 1) for q in args.live_qos):
        parser.error("--live-qos takes 0, 1 or 0,1")
    if "http" in args.parts and not shutil.which(args.wrk):
        parser.error(f"wrk not found ({args.wrk}); `apt-get install -y wrk` or --parts")
    if args.points % args.buckets or args.points < args.buckets:
        parser.error("--points must be a multiple of --buckets")
    if min(args.http_seconds, args.live_seconds, args.runs) <= 0:
        parser.error("--http-seconds, --live-seconds and --runs must be > 0")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    return args


@dataclass
class Results:
    http: list[HttpPoint] = field(default_factory=list)
    history: HistoryResult | None = None
    live: list[LivePoint] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def retry(measure: Callable[[], Awaitable[T]], attempts: int = 3) -> T:
    """Measure again (up to `attempts` times) when another benchmark disturbed it."""
    for attempt in range(1, attempts + 1):
        try:
            return await measure()
        except Disturbed as exc:
            if attempt == attempts:
                raise
            log(f"    {exc}; measuring again")
    raise AssertionError("unreachable")


async def run_all(args: argparse.Namespace, results: Results, profiler: Profiler) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    guard = QuietGuard(args.max_wait)
    async with asyncio.timeout(args.max_time) as timeout:
        guard.timeout = timeout
        if "http" in args.parts:
            for mode in args.http_servers:
                log(f"... device HTTP API: {mode}")
                try:
                    p = await retry(lambda m=mode: http_point(m, args, guard, profiler))
                except Exception as exc:
                    results.errors.append(f"http {mode}: {exc!r}")
                    log(f"error: {mode} failed: {exc!r}")
                    continue
                results.http.append(p)
                log(
                    f"    {p.req_per_s:,.0f} req/s, p99 {p.p99_ms:.2f} ms, wrk {p.wrk_cpu_pct:.0f}%"
                )
        if "history" in args.parts:
            log(f"... history query: {args.points:,} points → {args.buckets} AVG buckets")
            try:
                results.history = await retry(lambda: history_part(args, guard, profiler))
                for t in results.history.timings:
                    log(f"    {t.what}: median {t.median_ms:.1f} ms")
            except Exception as exc:
                results.errors.append(f"history: {exc!r}")
                log(f"error: history failed: {exc!r}")
        if "live" in args.parts:
            for qos in args.live_qos:
                log(f"... publish → WebSocket at {args.live_rate:,.0f} msg/s, QoS {qos}")
                try:
                    lp = await retry(lambda q=qos: live_point(q, args, guard, profiler))
                except Exception as exc:
                    results.errors.append(f"live QoS {qos}: {exc!r}")
                    log(f"error: live QoS {qos} failed: {exc!r}")
                    continue
                results.live.append(lp)
                log(f"    p99 {lp.p99_ms:.2f} ms, lost {lp.lost}, server {lp.server_cpu_pct:.0f}%")


def report_http(args: argparse.Namespace, points: list[HttpPoint]) -> None:
    print()
    print(
        f"Device HTTP API: POST {BODY} with {wrk_version(args.wrk)}, "
        f"{args.wrk_threads} thread(s), {args.http_connections} keep-alive "
        f"connections, {args.http_tokens} tokens, {args.http_seconds:g} s measured "
        f"after {args.http_warmup:g} s"
    )
    print(http_table(points))
    for p in points:
        if p.stored is not None:
            print(f"  {p.mode}: {p.stored:,} readings in the store after the server stopped")
    for line in http_ratios(points):
        print(line)


def report_history(h: HistoryResult) -> None:
    print()
    print(
        f"History: {h.points:,} points (1/s) of one key → {h.buckets} AVG buckets of "
        f"{h.interval_ms:,} ms; written in {h.write_s:.1f} s, database {h.db_mb:.0f} MB"
    )
    print(history_table(h))
    store_t, rest_t, floor_t = h.timings
    print(
        f"store / sqlite floor = {store_t.median_ms / floor_t.median_ms:.2f}x, "
        f"REST / sqlite floor = {rest_t.median_ms / floor_t.median_ms:.2f}x, "
        f"REST − store = {rest_t.median_ms - store_t.median_ms:.1f} ms"
    )


def report_live(args: argparse.Namespace, points: list[LivePoint]) -> None:
    print()
    print(
        f"Publish → WebSocket: {args.live_devices} MQTT devices at {args.live_rate:,.0f}"
        f" msg/s in total, one WebSocket subscriber (compression {args.ws_compression}),"
        f" tinyboard --sync {args.live_sync}, {args.live_seconds:g} s measured after "
        f"{args.live_warmup:g} s"
    )
    print(live_table(points))
    for p in points:
        if p.closed or p.late_ticks:
            print(f"  QoS {p.qos}: closed={p.closed}, publisher late ticks {p.late_ticks}")


def report(args: argparse.Namespace, results: Results, started: str, source: str) -> None:
    print()
    print(f"HTTP, queries and live updates, {started}")
    print(machine())
    print(source)
    if results.http:
        report_http(args, results.http)
    if results.history is not None:
        report_history(results.history)
    if results.live:
        report_live(args, results.live)
    if args.markdown:
        tables = [
            http_table(results.http, True) if results.http else "",
            history_table(results.history, True) if results.history else "",
            live_table(results.live, True) if results.live else "",
        ]
        for text in filter(None, tables):
            print()
            print(text)
    exits = [(p.mode, p.server_exit) for p in results.http]
    if results.history is not None:
        exits.append(("history", results.history.server_exit))
    exits += [(f"live QoS {p.qos}", p.server_exit) for p in results.live]
    # uvicorn.run() re-raises the SIGTERM it caught after its graceful stop: -15 is normal.
    normal = {"null-fastapi": (0, -signal.SIGTERM)}
    if bad := [(what, code) for what, code in exits if code not in normal.get(what, (0,))]:
        print(f"warning: servers that did not exit 0 on SIGTERM: {bad}", file=sys.stderr)
    for error in results.errors:
        print(f"error: {error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    source = revision()
    results = Results()
    profiler = Profiler(args.profile)
    code = 0
    try:
        uvloop.run(run_all(args, results, profiler))
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        code = 130
    except asyncio.CancelledError:
        log("terminated; servers stopped")
        code = 143
    except TimeoutError:
        log(f"error: the run took longer than --max-time {args.max_time:.0f} s")
        code = 1
    finally:
        stop_all_children()
    report(args, results, started, source)
    if args.profile is not None:
        print()
        print("py-spy (sampled while measuring; not the run to quote figures from):")
        for line in profiler.summary():
            print(line)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "started": started,
                    "machine": machine(),
                    "source": source,
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "http": [asdict(p) for p in results.http],
                    "history": asdict(results.history) if results.history else None,
                    "live": [asdict(p) for p in results.live],
                    "errors": results.errors,
                },
                indent=2,
            )
        )
    if results.errors and code == 0:
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
