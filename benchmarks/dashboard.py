"""The dashboard's cost on the server, and how fast a long chart appears.

1. Live load: one device receives `--rate` MQTT messages per second (QoS 1) for `--seconds`.
   Measured twice in the same server process: with no browser, then with `--tabs` Chromium
   tabs open on that device's page (each chart updating live). Prints the server's CPU (% of
   one core) and RSS for both, and the ratio.
2. First render: a device with 7 days of 1-minute data (10,080 points). Opens its page at
   `?range=7d` `--renders` times and measures navigation → the chart holding its points.
   Baselines in the same run: the REST query of the same aggregation, and the same page on
   the 1 h range (60 points), which is the page's fixed cost.

    .venv/bin/python benchmarks/dashboard.py [--tabs 5 --rate 50 --seconds 30]

Needs Debian's chromium at /usr/bin/chromium (never downloads a browser).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Tinyboard, revision, stop_all_children

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WEEK_MINUTES = 7 * 24 * 60


class Server(Tinyboard):
    """The server under test, with its CPU and memory readable."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.ps = psutil.Process(self.proc.pid)
        self.api = self.rest

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss / 2**20)


def publish(port: int, token: str, rate: float, seconds: float) -> int:
    """`rate` QoS 1 telemetry messages a second for `seconds`; returns how many were acked."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.username_pw_set(token)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    start = time.monotonic()
    n = 0
    while (now := time.monotonic()) - start < seconds:
        due = start + n / rate
        if now < due:
            time.sleep(due - now)
        value = 20 + (n % 100) / 10
        infos.append(client.publish("v1/devices/me/telemetry", json.dumps({"t": value}), qos=1))
        n += 1
    for info in infos:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()
    return sum(1 for info in infos if info.is_published())


def measure_load(server: Server, token: str, rate: float, seconds: float) -> dict[str, float]:
    rss: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            rss.append(server.rss_mb())

    sampler = threading.Thread(target=sample)
    sampler.start()
    cpu0, wall0 = server.cpu_seconds(), time.monotonic()
    acked = publish(server.mqtt_port, token, rate, seconds)
    cpu = (server.cpu_seconds() - cpu0) / (time.monotonic() - wall0) * 100
    done.set()
    sampler.join()
    return {"cpu": cpu, "rss": max(rss), "acked": acked}


def page_latency(
    server: Server, token: str, page: Page, n: int = 20
) -> tuple[list[float], list[float]]:
    """Publish → the value card shows it, per message; and publish → PUBACK (baseline)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.username_pw_set(token)
    client.connect("127.0.0.1", server.mqtt_port)
    client.loop_start()
    shown, acked = [], []
    page.bring_to_front()  # Chromium throttles timers in background tabs to once a second
    for i in range(n):
        value = 1000 + i
        started = time.perf_counter()
        info = client.publish("v1/devices/me/telemetry", json.dumps({"t": value}), qos=1)
        info.wait_for_publish(10)
        acked.append((time.perf_counter() - started) * 1000)
        page.wait_for_function(
            f"() => document.querySelector('[data-testid=value-t]')?.textContent === '{value}'",
            polling=5,
        )
        shown.append((time.perf_counter() - started) * 1000)
        time.sleep(0.5)
    client.disconnect()
    client.loop_stop()
    return shown, acked


def log_in(browser: Browser, server: Server) -> Any:
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.base + "/ui/login")
    page.get_by_label("E-mail").fill("admin@tinyboard.local")
    page.get_by_label("Password").fill(server.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui/devices")
    return context


CHART_POINTS = """key => getElement(document.querySelector(`[data-testid=chart-${key}]`))
    ?.chart?.getOption()?.series?.[0]?.data?.length ?? 0"""


def wait_points(page: Page, key: str, at_least: int) -> int:
    page.wait_for_function(f"() => ({CHART_POINTS})('{key}') >= {at_least}", timeout=60_000)
    points: int = page.evaluate(CHART_POINTS, key)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tabs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--renders", type=int, default=7)
    args = parser.parse_args()
    print(f"# dashboard benchmark ({revision()})")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        server = Server(Path(tmp) / "data")
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            live_id, live_token = server.add_device("live")
            publish(server.mqtt_port, live_token, 20, 1)  # the page has a chart to open on
            time.sleep(2)
            idle = server.rss_mb()
            base = measure_load(server, live_token, args.rate, args.seconds)
            context = log_in(browser, server)
            tabs = []
            for _ in range(args.tabs):
                tab = context.new_page()
                tab.goto(f"{server.base}/ui/device/{live_id}?range=5m")
                wait_points(tab, "t", 1)
                tabs.append(tab)
            with_tabs = measure_load(server, live_token, args.rate, args.seconds)
            # every tab's chart really was updating: its last point is from the last seconds
            fresh = [
                tab.evaluate(
                    """() => { const d = getElement(document.querySelector(
                        '[data-testid=chart-t]')).chart.getOption().series[0].data;
                        return Date.now() - d[d.length - 1][0]; }"""
                )
                for tab in tabs
            ]
            latencies, acks = page_latency(server, live_token, tabs[0])
            context.close()
            print(f"server idle RSS {idle:.1f} MB")
            print(
                f"{args.rate:g} msg/s for {args.seconds:g} s, no tabs:  CPU {base['cpu']:5.1f} % "
                f"of a core, RSS max {base['rss']:.1f} MB, acked {base['acked']:.0f}"
            )
            print(
                f"{args.rate:g} msg/s for {args.seconds:g} s, {args.tabs} tabs:  "
                f"CPU {with_tabs['cpu']:5.1f} % of a core, RSS max {with_tabs['rss']:.1f} MB, "
                f"acked {with_tabs['acked']:.0f}; newest chart point "
                f"{max(fresh) / 1000:.1f} s old at the end"
            )
            print(
                f"ratio {args.tabs} tabs / no tabs: CPU {with_tabs['cpu'] / base['cpu']:.2f}×, "
                f"RSS +{with_tabs['rss'] - base['rss']:.1f} MB"
            )

            shown, committed = statistics.median(latencies), statistics.median(acks)
            print(
                f"publish → value on the page ({len(latencies)} messages, 1 every 0.5 s, "
                f"{args.tabs} tabs open): p50 {shown:.0f} ms, max {max(latencies):.0f} ms; "
                f"publish → PUBACK (committed) p50 {committed:.1f} ms; "
                f"ratio {shown / committed:.0f}×"
            )

            week_id, week_token = server.add_device("week")
            now = int(time.time() * 1000)
            points = [
                {"ts": now - i * 60_000, "values": {"temperature": 20 + (i % 60) / 10}}
                for i in range(WEEK_MINUTES)
            ]
            for start in range(0, len(points), 500):
                server.api.post(
                    f"/api/v1/{week_token}/telemetry", json=points[start : start + 500]
                ).raise_for_status()
            context = log_in(browser, server)
            page = context.new_page()
            renders, counts, small = [], [], []
            for _ in range(args.renders):
                started = time.perf_counter()
                page.goto(f"{server.base}/ui/device/{week_id}?range=7d")
                counts.append(wait_points(page, "temperature", 1000))
                renders.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                page.goto(f"{server.base}/ui/device/{week_id}?range=1h")
                wait_points(page, "temperature", 55)
                small.append((time.perf_counter() - started) * 1000)
            queries = []
            for _ in range(args.renders):
                end = int(time.time() * 1000) + 1
                start_ts = end - 7 * 86_400_000
                started = time.perf_counter()
                server.api.get(
                    f"/api/plugins/telemetry/DEVICE/{week_id}/values/timeseries",
                    params={
                        "keys": "temperature",
                        "startTs": start_ts,
                        "endTs": end,
                        "interval": -(-(end - start_ts) // 2000),
                        "agg": "AVG",
                        "limit": 2001,
                    },
                ).raise_for_status()
                queries.append((time.perf_counter() - started) * 1000)
            context.close()
            render, query = statistics.median(renders), statistics.median(queries)
            print(
                f"7 d of 1-minute data ({WEEK_MINUTES} points) → {counts[-1]} chart points: "
                f"first render median {render:.0f} ms (min {min(renders):.0f}, "
                f"max {max(renders):.0f}, {args.renders} loads)"
            )
            print(f"same aggregation over REST: median {query:.1f} ms")
            print(
                f"same page on the 1 h range (60 points): median {statistics.median(small):.0f} ms"
            )
            print(
                f"ratio 7 d page / REST query: {render / query:.1f}×; "
                f"7 d page / 1 h page: {render / statistics.median(small):.2f}×"
            )
        finally:
            browser.close()
            code = server.stop()
            stop_all_children()
            print(f"server exit code {code}")


if __name__ == "__main__":
    main()
