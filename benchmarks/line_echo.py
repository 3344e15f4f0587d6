"""Line protocol echo benchmark: tinyboard against the thread-per-client baseline (issue 3).

For each client count N and each server mode, the script starts a fresh server process
(fresh temporary data directory), opens N TCP connections from one uvloop event loop
(`asyncio.Protocol`, not streams). Each connection makes one round trip (`hello`, or
`TOKEN <token>` for devices) before it counts as connected, so all N are really being
served when the load starts. Then every client runs closed-loop: send one short line,
wait for its reply, record the round trip, send the next. After a warm-up it measures for
`--seconds` and reports, per point:

- msgs/s: replies received in the measured window / its length;
- p50, p99 and max round trip in ms (over every reply in the window; the max shows
  clients that starve);
- the server's RSS (psutil, MB = 10^6 bytes) at the end of the point, and its CPU use
  (all threads, % of one core) over the window;
- the generator's own CPU use (its process CPU time / wall time, % of one core). The
  generator is one thread: near 100 % it is the bottleneck and the msgs/s figure is a
  lower bound of what the server can do;
- bad replies (not the CAPITALS echo of the line sent), connections lost, and
  "starved" clients: connections that got no reply at all in the measured window;
- "other" CPU: the machine's busy time minus the server's and the generator's, % of one
  core: interrupt and softirq work (loopback TCP) not charged to either, plus any other
  program. Well above the usual level means something else ran during the point.

Modes:
  tinyboard          `tinyboard serve`, anonymous connections: the CAPITALS echo.
  threaded           benchmarks/baselines/threaded_server.py (thread per client).
  tinyboard-devices  `tinyboard serve`, every connection first sends TOKEN <its own device
                     token>, then readings `t=<n>`; each echo is sent only after the
                     reading is committed to SQLite, so each reply is a durable write.

It prints a table and, for each N, the ratio of each tinyboard mode's msgs/s to the
threaded server's. Every process it starts is stopped on exit, error, Ctrl+C or SIGTERM;
the whole run is bounded by --max-time.

    .venv/bin/python benchmarks/line_echo.py --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import uvloop

from common import (
    percentile,
    revision,
    serve_argv,
    spawn,
    stop_all_children,
    stop_process,
)

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baselines" / "threaded_server.py"
HOST = "127.0.0.1"
ECHO_LINE = b"hello tinyboard\n"
MODES = ("tinyboard", "threaded", "tinyboard-devices")
CONNECT_CONCURRENCY = 64
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
SETUP_TIMEOUT = 120.0

TINYBOARD_READY = re.compile(r"ready: line protocol on [^\s:]+:(\d+)")
THREADED_READY = re.compile(r"listening on [^\s:]+:(\d+)")

CREATE_DEVICES = """
import asyncio, sys
from tinyboard.storage import open_store

async def main(path, n):
    store = open_store(f"sqlite:{path}", sync="normal")
    await store.open()
    try:
        for i in range(n):
            device = await store.create_device(f"bench-{i:05d}")
            print(device.token)
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@dataclass
class ServerProcess:
    mode: str
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


async def start_server(mode: str, data_dir: Path, tinyboard: str) -> ServerProcess:
    log = data_dir / "server.log"
    if mode == "threaded":
        argv = [sys.executable, str(BASELINE), "--host", HOST, "--port", "0"]
        ready = THREADED_READY
    else:
        argv = serve_argv(tinyboard, data_dir)
        ready = TINYBOARD_READY
    with log.open("wb") as out:
        # A new session: Ctrl+C reaches only us, and we stop the server ourselves.
        proc = spawn(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if match := ready.search(text):
            return ServerProcess(mode, proc, int(match.group(1)), data_dir, log)
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.05)
    stop_process(proc)
    tail = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{mode} server did not become ready; its output:\n{tail}")


async def stop_server(server: ServerProcess) -> int | None:
    return await asyncio.get_running_loop().run_in_executor(None, stop_process, server.proc)


async def create_devices(data_dir: Path, n: int) -> list[str]:
    """N devices straight into the store (one process, before the server starts)."""
    argv = [sys.executable, "-c", CREATE_DEVICES, str(data_dir / "tinyboard.db"), str(n)]
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        loop = asyncio.get_running_loop()
        out, err = await asyncio.wait_for(
            loop.run_in_executor(None, proc.communicate), SETUP_TIMEOUT
        )
    finally:
        stop_process(proc, timeout=2)  # a no-op when it has finished
    if proc.returncode != 0:
        raise RuntimeError(f"creating devices failed:\n{err.decode(errors='replace')}")
    tokens = out.decode().split()
    if len(tokens) != n:
        raise RuntimeError(f"expected {n} device tokens, got {len(tokens)}")
    return tokens


# -- clients ---------------------------------------------------------------------------------
@dataclass
class Load:
    """Shared state of all clients of one point."""

    running: bool = False
    recording: bool = False
    replies: int = 0
    errors: int = 0
    lost: int = 0
    rtts: list[float] = field(default_factory=list)


class Client(asyncio.Protocol):
    """One closed-loop client: at most one line in flight."""

    def __init__(self, load: Load, token: str | None, device_mode: bool) -> None:
        self.load = load
        self.token = token
        self.device_mode = device_mode
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.identified = False
        self.buf = b""
        self.sent_at = 0.0
        self.n = 0
        self.replies = 0  # in the measured window
        self.expected = ECHO_LINE.upper()
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # One round trip before the client counts as connected: the server has really
        # accepted and served it (a busy thread-per-client server may accept late).
        self.transport = transport  # type: ignore[assignment]
        hello = b"hello\n" if self.token is None else f"TOKEN {self.token}\n".encode()
        self.transport.write(hello)  # type: ignore[union-attr]

    def line(self) -> bytes:
        """The next line to send; remembers the reply it must get (the line in CAPITALS)."""
        if self.device_mode:
            self.n += 1
            line = b"t=%d\n" % self.n
            self.expected = line.upper()
            return line
        return ECHO_LINE

    def start(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.line())

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if b"\n" not in data:
            self.buf += data
            return
        if self.buf:
            data, self.buf = self.buf + data, b""
        if not data.endswith(b"\n"):
            data, _, self.buf = data.rpartition(b"\n")
        load = self.load
        if not self.identified:
            self.identified = True
            expected = b"HELLO" if self.token is None else b"OK "
            if self.ready.done():
                pass
            elif data.startswith(expected):
                self.ready.set_result(None)
            else:
                self.ready.set_exception(RuntimeError(f"handshake refused: {data[:200]!r}"))
            return
        if data != self.expected:  # an ERROR reply, or not the echo of what was sent
            load.errors += 1
        if load.recording:
            load.replies += 1
            self.replies += 1
            load.rtts.append(now - self.sent_at)
        if load.running:
            self.sent_at = now
            self.transport.write(self.line())  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.load.lost += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


async def connect_all(
    port: int, n: int, load: Load, tokens: list[str] | None, device_mode: bool
) -> list[Client]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[Client] = []

    async def one(i: int) -> None:
        token = tokens[i] if tokens else None
        async with gate:
            _, client = await loop.create_connection(
                lambda: Client(load, token, device_mode), HOST, port
            )
            clients.append(client)
            await client.ready

    try:
        await asyncio.gather(*(one(i) for i in range(n)))
    except BaseException:
        for c in clients:
            c.close()
        raise
    return clients


# -- one measurement point -------------------------------------------------------------------
@dataclass
class Point:
    mode: str
    clients: int
    seconds: float
    replies: int
    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_rss_mb: float
    server_cpu_pct: float
    generator_cpu_pct: float
    other_cpu_pct: float
    errors: int
    lost: int
    starved: int
    server_exit: int | None = None


async def run_point(
    mode: str, n: int, seconds: float, warmup: float, tinyboard: str, keep: bool
) -> Point:
    data_dir = Path(tempfile.mkdtemp(prefix=f"tb-bench-{mode}-{n}-"))
    server: ServerProcess | None = None
    clients: list[Client] = []
    try:
        tokens = None
        if mode == "tinyboard-devices":
            tokens = await create_devices(data_dir, n)
        server = await start_server(mode, data_dir, tinyboard)
        ps = psutil.Process(server.pid)
        load = Load()
        clients = await asyncio.wait_for(
            connect_all(server.port, n, load, tokens, mode == "tinyboard-devices"),
            timeout=60 + n / 10,
        )

        load.running = True
        for c in clients:
            c.start()
        await asyncio.sleep(warmup)

        me = psutil.Process()
        t0, gen0, srv0 = time.perf_counter(), me.cpu_times(), ps.cpu_times()
        busy0 = _busy(psutil.cpu_times())
        load.recording = True
        await asyncio.sleep(seconds)
        load.recording = False
        t1, gen1, srv1 = time.perf_counter(), me.cpu_times(), ps.cpu_times()
        busy1 = _busy(psutil.cpu_times())
        rss = ps.memory_info().rss
        load.running = False

        wall = t1 - t0
        gen, srv = _cpu(gen1) - _cpu(gen0), _cpu(srv1) - _cpu(srv0)
        rtts = sorted(load.rtts)
        point = Point(
            mode=mode,
            clients=n,
            seconds=round(wall, 3),
            replies=load.replies,
            msgs_per_s=load.replies / wall,
            p50_ms=percentile(rtts, 0.50) * 1000,
            p99_ms=percentile(rtts, 0.99) * 1000,
            max_ms=rtts[-1] * 1000 if rtts else float("nan"),
            server_rss_mb=rss / 1e6,
            server_cpu_pct=100 * srv / wall,
            generator_cpu_pct=100 * gen / wall,
            other_cpu_pct=100 * (busy1 - busy0 - gen - srv) / wall,
            errors=load.errors,
            lost=load.lost,
            starved=sum(1 for c in clients if c.replies == 0),
        )
        for c in clients:
            c.close()
        clients = []
        await asyncio.sleep(0.2)  # let the closes reach the server before SIGTERM
        point.server_exit = await stop_server(server)
        server = None
        return point
    finally:
        for c in clients:
            c.close()
        if server is not None:
            stop_process(server.proc, timeout=5)
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def _cpu(times: Any) -> float:
    return float(times.user + times.system)


def _busy(times: Any) -> float:
    """Machine-wide busy CPU seconds, all cores (user includes guest time on Linux)."""
    names = ("user", "nice", "system", "irq", "softirq")
    return float(sum(getattr(times, name, 0.0) for name in names))


# -- report ----------------------------------------------------------------------------------
COLUMNS = (
    ("server", "{:<18}", "mode"),
    ("clients", "{:>7}", "clients"),
    ("msgs/s", "{:>9,.0f}", "msgs_per_s"),
    ("p50 ms", "{:>8.2f}", "p50_ms"),
    ("p99 ms", "{:>8.2f}", "p99_ms"),
    ("max ms", "{:>8.1f}", "max_ms"),
    ("srv RSS MB", "{:>10.1f}", "server_rss_mb"),
    ("srv CPU%", "{:>8.0f}", "server_cpu_pct"),
    ("gen CPU%", "{:>8.0f}", "generator_cpu_pct"),
    ("other CPU%", "{:>10.0f}", "other_cpu_pct"),
    ("bad replies", "{:>6}", "errors"),
    ("lost", "{:>5}", "lost"),
    ("starved", "{:>7}", "starved"),
)


def table(points: list[Point], markdown: bool = False) -> str:
    heads = [h for h, _, _ in COLUMNS]
    rows = []
    for p in points:
        values = asdict(p)
        rows.append([fmt.format(values[k]).strip() for _, fmt, k in COLUMNS])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    if markdown:
        lines = ["| " + " | ".join(heads) + " |"]
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(heads))) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)

    def just(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([just(heads), just(["-" * w for w in widths]), *map(just, rows)])


def ratios(points: list[Point]) -> list[str]:
    out = []
    by = {(p.mode, p.clients): p for p in points}
    for n in sorted({p.clients for p in points}):
        base = by.get(("threaded", n))
        if base is None or base.msgs_per_s <= 0:
            continue
        for mode in ("tinyboard", "tinyboard-devices"):
            p = by.get((mode, n))
            if p is not None:
                out.append(
                    f"N={n:<5} {mode}/threaded msgs/s = {p.msgs_per_s / base.msgs_per_s:.2f}x"
                    f"  ({p.msgs_per_s:,.0f} / {base.msgs_per_s:,.0f})"
                )
    return out


def machine() -> str:
    return (
        f"{platform.node()} {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"Python {platform.python_version()}, uvloop {uvloop.__version__}, "
        f"psutil {psutil.__version__}"
    )


# -- main ------------------------------------------------------------------------------------
def raise_fd_limit(clients: int) -> None:
    """Each client needs one fd here (the server is another process with its own limit)."""
    need = clients + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < need:
        print(f"warning: fd limit {target} < {need}; large client counts may fail")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n    .venv")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--clients",
        default="10,100,1000",
        help="comma-separated client counts (default: %(default)s)",
    )
    parser.add_argument(
        "--servers",
        default=",".join(MODES),
        help=f"comma-separated modes among {', '.join(MODES)} (default: all)",
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="measured seconds per point (default: 5)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="warm-up seconds per point (default: 1)"
    )
    parser.add_argument(
        "--max-time",
        type=float,
        default=None,
        help="abort the whole run after this many seconds (default: 60 s per point + 60)",
    )
    parser.add_argument(
        "--tinyboard",
        default=str(Path(sys.executable).with_name("tinyboard")),
        help="the tinyboard executable (default: next to this Python: %(default)s)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "--markdown", action="store_true", help="print the table as Markdown as well"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary data dirs (for inspection)"
    )
    args = parser.parse_args(argv)
    try:
        args.clients = [int(x) for x in args.clients.split(",") if x.strip()]
    except ValueError:
        parser.error("--clients takes integers, e.g. 10,100,1000")
    if not args.clients or min(args.clients) < 1:
        parser.error("--clients needs at least one positive count")
    args.servers = [m.strip() for m in args.servers.split(",") if m.strip()]
    if unknown := [m for m in args.servers if m not in MODES]:
        parser.error(f"unknown server mode(s) {unknown}; choose among {', '.join(MODES)}")
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be > 0 and --warmup >= 0")
    if "threaded" not in args.servers and len(args.servers) > 0:
        print("note: without the threaded mode no ratio is printed", file=sys.stderr)
    if args.max_time is None:
        points = len(args.clients) * len(args.servers)
        args.max_time = 60 + points * (60 + args.seconds + args.warmup)
    return args


async def run_all(args: argparse.Namespace) -> list[Point]:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    points: list[Point] = []
    async with asyncio.timeout(args.max_time):
        # Client count outer, modes inner: the points compared in a ratio run close in time.
        for n in args.clients:
            for mode in args.servers:
                print(f"... {mode} with {n} clients", file=sys.stderr, flush=True)
                try:
                    point = await run_point(
                        mode, n, args.seconds, args.warmup, args.tinyboard, args.keep
                    )
                except Exception as exc:  # report it, keep measuring the other points
                    print(f"error: {mode} with {n} clients failed: {exc!r}", file=sys.stderr)
                    continue
                points.append(point)
                print(
                    f"    {point.msgs_per_s:,.0f} msgs/s, p99 {point.p99_ms:.2f} ms, "
                    f"generator CPU {point.generator_cpu_pct:.0f}%",
                    file=sys.stderr,
                    flush=True,
                )
    return points


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit(max(args.clients))
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    source = revision()
    try:
        points = uvloop.run(run_all(args))
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print("terminated; servers stopped", file=sys.stderr)
        return 143
    except TimeoutError:
        print(f"error: the run took longer than --max-time {args.max_time:.0f} s", file=sys.stderr)
        return 1
    finally:
        stop_all_children()

    print()
    print(f"line protocol echo, {started}")
    print(machine())
    print(source)
    print(f"{args.seconds:g} s measured per point after {args.warmup:g} s warm-up")
    print()
    print(table(points))
    print()
    for line in ratios(points):
        print(line)
    if args.markdown:
        print()
        print(table(points, markdown=True))
    if bad := [p for p in points if p.server_exit != 0 or p.lost]:
        for p in bad:
            print(
                f"warning: {p.mode} N={p.clients}: server exit {p.server_exit}, "
                f"{p.lost} connections lost during the run",
                file=sys.stderr,
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "started": started,
                    "machine": machine(),
                    "source": source,
                    "seconds": args.seconds,
                    "warmup": args.warmup,
                    "points": [asdict(p) for p in points],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
