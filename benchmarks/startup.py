"""Start-up time and idle memory of `tinyboard serve` (DESIGN §7: ≤ 1 s to listening, ≤ 80 MB
with the dashboard loaded), with the dashboard (the default) and with `--no-dashboard`.

First start on a fresh data directory: creates the database and the admin user (an argon2
hash), then listens on the line, MQTT and HTTP ports.

Baseline in the same run: a bare `python -c pass`, the floor any Python server pays.
Usage: python benchmarks/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from common import serve_argv


def python_floor() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def tinyboard_once(*extra: str) -> tuple[float, float]:
    """Seconds from spawn to the ready line, and RSS in MB one second later."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        proc = subprocess.Popen(
            serve_argv([sys.executable, "-m", "tinyboard"], Path(tmp) / "data", *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            elapsed = time.perf_counter() - started
            if "ready" not in line:
                raise RuntimeError(f"server did not start: {line!r}")
            time.sleep(1)
            rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        finally:
            proc.terminate()
            proc.wait(10)
        return elapsed, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    floor = statistics.median(python_floor() for _ in range(runs))
    print(f"python -c pass        median {floor * 1000:7.1f} ms")
    for label, extra in (("with the dashboard", ()), ("--no-dashboard", ("--no-dashboard",))):
        samples = [tinyboard_once(*extra) for _ in range(runs)]
        start = statistics.median(s for s, _ in samples)
        rss = statistics.median(r for _, r in samples)
        slowest = max(s for s, _ in samples)
        print(f"tinyboard serve, {label}:")
        print(f"  ready     median {start * 1000:7.1f} ms  (max {slowest * 1000:.1f} ms)")
        print(f"  idle RSS  median {rss:7.1f} MB")
        print(f"  ratio start-up / python floor: {start / floor:.1f}x")


if __name__ == "__main__":
    main()
