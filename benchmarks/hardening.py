"""What the hardening of issue 13 costs: MQTT ingest and line echo, before and after, one run.

The `--before` revision (default: the last commit before issue 13) is checked out into a
temporary git worktree; each round runs `benchmarks/mqtt_ingest.py` (tinyboard only, QoS 1,
`--devices`, `--sync full`) and `benchmarks/line_echo.py` (`tinyboard` chat echo and
`tinyboard-devices` readings, `--clients`) once against it and once against this tree, in
alternating order (before/after, then after/before, ...) so that the machine's drift falls
on both alike. The same benchmark scripts (this tree's) and the same Python drive both; only
`PYTHONPATH` says which tinyboard is served. It prints each round's figures, then the median
per side and the ratio after / before: 1.00 means no cost.

    .venv/bin/python benchmarks/hardening.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BEFORE = "52985d3"
"""The last commit of main before issue 13's work."""


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    value: float
    unit: str


def run_json(script: str, args: list[str], src: Path, out: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    argv = [sys.executable, str(HERE / script), *args, "--json", str(out)]
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    document: dict[str, object] = json.loads(out.read_text())
    return document


def mqtt_figures(args: argparse.Namespace, src: Path, tmp: Path) -> list[Figure]:
    opts = ["--servers", "tinyboard", "--devices", str(args.devices), "--idle", "0"]
    opts += ["--seconds", str(args.seconds)]
    doc = run_json("mqtt_ingest.py", opts, src, tmp / "mqtt.json")
    [point] = doc["points"]  # type: ignore[misc]
    n = args.devices
    return [
        Figure(f"MQTT QoS 1, {n} devices", point["msgs_per_s"], "msg/s"),
        Figure(f"MQTT p99, {n} devices", point["p99_ms"], "ms"),
    ]


def echo_figures(args: argparse.Namespace, src: Path, tmp: Path) -> list[Figure]:
    opts = ["--servers", "tinyboard,tinyboard-devices", "--clients", str(args.clients)]
    opts += ["--seconds", str(args.seconds)]
    doc = run_json("line_echo.py", opts, src, tmp / "echo.json")
    figures = []
    for point in doc["points"]:  # type: ignore[attr-defined]
        what = "line echo" if point["mode"] == "tinyboard" else "line readings"
        figures.append(Figure(f"{what}, {point['clients']} clients", point["msgs_per_s"], "/s"))
        figures.append(Figure(f"{what} p99, {point['clients']} clients", point["p99_ms"], "ms"))
    return figures


def one_round(args: argparse.Namespace, src: Path) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        return mqtt_figures(args, src, Path(tmp)) + echo_figures(args, src, Path(tmp))


def worktree(revision: str, where: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), revision],
        check=True,
        capture_output=True,
    )
    return where / "src"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n    .venv")[0])
    parser.add_argument("--before", default=BEFORE, help="revision to compare against")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side (default: 3)")
    parser.add_argument("--devices", type=int, default=1000, help="MQTT devices (1000)")
    parser.add_argument("--clients", type=int, default=1000, help="line clients (1000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per point (5)")
    args = parser.parse_args()
    results: dict[str, list[list[Figure]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        sides = {"before": worktree(args.before, Path(tmp) / "before"), "after": ROOT / "src"}
        try:
            for i in range(args.rounds):
                order = ("before", "after") if i % 2 == 0 else ("after", "before")
                for side in order:
                    figures = one_round(args, sides[side])
                    results[side].append(figures)
                    shown = ", ".join(f"{f.name} {f.value:,.1f} {f.unit}" for f in figures)
                    print(f"round {i + 1} {side:>6}: {shown}", flush=True)
        finally:
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(ROOT),
                    "worktree",
                    "remove",
                    "--force",
                    str(sides["before"].parent),
                ],
                check=False,
            )
    print(f"\nmedians of {args.rounds} rounds (before = {args.before}):")
    print(f"{'figure':<34} {'before':>12} {'after':>12} {'after/before':>13}")
    for j, figure in enumerate(results["after"][0]):
        before = statistics.median(r[j].value for r in results["before"])
        after = statistics.median(r[j].value for r in results["after"])
        ratio = after / before if before else float("nan")
        print(f"{figure.name:<34} {before:>12,.1f} {after:>12,.1f} {ratio:>12.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
