"""Small helpers the benchmark scripts share."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]


def revision() -> str:
    """The tinyboard source measured: git commit, and whether src/ had uncommitted edits."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args], check=False, capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "src")
    except (OSError, subprocess.SubprocessError):
        return "source revision unknown"
    if not commit:
        return "source revision unknown"
    return f"tinyboard at {commit}" + (" + uncommitted changes in src/" if dirty else "")


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values; NaN when there are none."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# -- child processes ---------------------------------------------------------------------------
# Children are started through this launcher: on Linux it asks the kernel to SIGTERM the child
# when the benchmark dies, even by SIGKILL (PR_SET_PDEATHSIG), then execs the real command, so
# the pid we watch is the child's own. A preexec_fn would do the same but is unsafe with threads.
LAUNCHER = """
import ctypes, ctypes.util, os, signal, sys
parent = int(sys.argv[1])
if sys.platform.startswith("linux") and (libc := ctypes.util.find_library("c")):
    ctypes.CDLL(libc).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
if os.getppid() != parent:
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""

children: set[subprocess.Popen[bytes]] = set()
"""Processes started by `spawn`; `stop_all_children` stops them on the way out."""


def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    launcher = [sys.executable, "-c", LAUNCHER, str(os.getpid())]
    exe = shutil.which(argv[0]) or argv[0]
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.Popen([*launcher, exe, *argv[1:]], **kwargs)
    children.add(proc)
    return proc


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
    """SIGTERM, wait, then SIGKILL. Returns the exit code (None if it had to be killed)."""
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                return None
        return proc.returncode
    finally:
        children.discard(proc)


def stop_all_children(timeout: float = 5.0) -> None:
    for proc in list(children):
        stop_process(proc, timeout)


def serve_argv(tinyboard: str | list[str], data_dir: Path, *extra: str) -> list[str]:
    """`tinyboard serve` on 127.0.0.1 with every listener on a free port (1883 and 8080 may be
    taken on the benchmark machine). `tinyboard` is the program, or its argv prefix."""
    program = [tinyboard] if isinstance(tinyboard, str) else tinyboard
    return [
        *program, "serve", "--bind", "127.0.0.1", "--line-port", "0", "--mqtt-port", "0",
        "--http-port", "0", "--data-dir", str(data_dir), *extra,
    ]  # fmt: skip


# -- a tinyboard server for the benchmarks that drive it over its APIs ----------------------
SERVE_READY = re.compile(r"MQTT on [^:]+:(\d+), HTTP on [^:]+:(\d+)")
ADMIN_PASSWORD = re.compile(r"with password (\S+)")


class Tinyboard:
    """`tinyboard serve` as a child process on free ports, with a REST client logged in as
    the admin it created on first start."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        program = str(Path(sys.executable).parent / "tinyboard")
        self.proc = spawn(
            serve_argv(program, data_dir, *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        self.mqtt_port = self.http_port = 0
        self.password = ""
        while not self.password:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise RuntimeError("tinyboard did not start")
            if match := SERVE_READY.search(line):
                self.mqtt_port, self.http_port = int(match.group(1)), int(match.group(2))
            if match := ADMIN_PASSWORD.search(line):
                self.password = match.group(1)
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.rest = httpx.Client(base_url=self.base, timeout=60)
        token = self.rest.post(
            "/api/auth/login",
            json={"username": "admin@tinyboard.local", "password": self.password},
        ).json()["token"]
        self.rest.headers["X-Authorization"] = f"Bearer {token}"

    def add_device(self, name: str) -> tuple[str, str]:
        """(id, access token) of a new device."""
        device_id: str = self.rest.post("/api/device", json={"name": name}).json()["id"]["id"]
        token: str = self.rest.get(f"/api/device/{device_id}/credentials").json()["credentialsId"]
        return device_id, token

    def stop(self) -> int | None:
        self.rest.close()
        return stop_process(self.proc)
