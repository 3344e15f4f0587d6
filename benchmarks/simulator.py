"""How much load `tinyboard simulate` itself can drive over MQTT, per core.

One `tinyboard serve --no-dashboard`; 100 devices. For each requested `--rate`, runs
`tinyboard simulate --tokens ... --rate R --duration D` as a child process and reads the
acknowledged rate from its summary and its CPU time from the OS. A rate is "steady" when
at least 95 % of it was acknowledged. The baseline is the requested rate itself (the ratio
printed is achieved / requested) and the simulator's CPU per 1,000 readings/s.

    .venv/bin/python benchmarks/simulator.py [--rates 1000,2000,5000,10000,20000 --duration 10]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Tinyboard, revision, stop_all_children

SUMMARY = re.compile(r"(\d+) readings taken, (\d+) acknowledged by the server \(([\d,.]+)/s\)")
DEVICES = 100
STEADY = 0.95


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1000,2000,5000,10000,20000")
    parser.add_argument("--duration", type=float, default=10)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    tinyboard = str(Path(sys.executable).parent / "tinyboard")
    print(f"# simulator benchmark ({revision()})")
    with tempfile.TemporaryDirectory() as tmp:
        server = Tinyboard(Path(tmp) / "data", "--no-dashboard")
        mqtt_port = server.mqtt_port
        try:
            tokens = [
                {"name": f"s{i}", "token": server.add_device(f"s{i}")[1]} for i in range(DEVICES)
            ]
            tokens_file = Path(tmp) / "tokens.json"
            tokens_file.write_text(json.dumps(tokens))
            results = []
            for rate in rates:
                cpu0 = children_cpu()
                done = subprocess.run(
                    [
                        tinyboard, "simulate", "--tokens", str(tokens_file), "--port",
                        str(mqtt_port), "--rate", str(rate), "--duration", str(args.duration),
                    ],
                    capture_output=True, text=True, check=True, timeout=args.duration + 60,
                )  # fmt: skip
                cpu = children_cpu() - cpu0
                match = SUMMARY.search(done.stdout)
                assert match, done.stdout + done.stderr
                achieved = float(match.group(3).replace(",", ""))
                core = cpu / args.duration
                results.append((rate, achieved, core))
                print(
                    f"requested {rate:8,.0f}/s  acked {achieved:9,.1f}/s "
                    f"({achieved / rate:.2f}×)  simulator CPU {core * 100:5.1f} % of a core "
                    f"({core * 100 / (achieved / 1000):.2f} % per 1k/s)",
                    flush=True,
                )
        finally:
            code = server.stop()
            stop_all_children()
    steady = [r for r in results if r[1] >= STEADY * r[0]]
    if steady:
        rate, achieved, core = max(steady)
        print(
            f"highest steady rate: {rate:,.0f}/s using {core * 100:.0f} % of a core → about "
            f"{achieved / max(core, 1e-9):,.0f} readings/s per core"
        )
    print(f"server exit code {code}")


if __name__ == "__main__":
    main()
