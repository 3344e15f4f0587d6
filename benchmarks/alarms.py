"""Alarm rules' cost on ingestion, and how fast an alarm reaches a webhook.

1. Throughput: one `tinyboard serve`; 100 devices publish QoS 1 telemetry as fast as the
   server acknowledges (each connection keeps `--window` messages in flight) for
   `--seconds`, first with no rules, then with `--rules` rules (10 per device on the key
   they send, thresholds never crossed, so every message is evaluated against 10 rules and
   raises nothing), then with none again. Same server process, same run.
2. Latency: a rule `latency > 0.5` on one device and `--alarm-webhook` pointing at a local
   HTTP server; the device alternates 1 and 0, so every message creates or clears an alarm.
   Prints publish → webhook received, against publish → PUBACK (the baseline).

    .venv/bin/python benchmarks/alarms.py [--seconds 10 --rules 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import uvloop
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Tinyboard, revision, stop_all_children
from live_load import MqttClient

DEVICES = 100


# -- the load (run as a child process: `alarms.py publish ...`) -------------------------------
async def closed_loop(port: int, tokens: list[str], window: int, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    clients: list[MqttClient] = []
    for i, token in enumerate(tokens):
        _, client = await loop.create_connection(
            lambda t=token, n=i: MqttClient(t, n, 1), "127.0.0.1", port
        )
        await client.connack
        clients.append(client)
    payload = b'{"temperature":21.5}'
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        for client in clients:
            for _ in range(window - (client.sent - client.acked)):
                client.publish(payload)
        await asyncio.sleep(0.0005)
    acked_at_end = sum(c.acked for c in clients)
    elapsed = time.monotonic() - start
    for client in clients:
        client.all_acked = asyncio.Event()
        if client.acked < client.sent:
            await asyncio.wait_for(client.all_acked.wait(), 30)
        client.disconnect()
    return {"acked": acked_at_end, "seconds": elapsed, "rate": acked_at_end / elapsed}


def publish_main(args: argparse.Namespace) -> None:
    tokens = json.loads(Path(args.tokens).read_text())
    result = uvloop.run(closed_loop(args.port, tokens, args.window, args.seconds))
    print(json.dumps(result), flush=True)


# -- the engine alone, in this process -------------------------------------------------------
async def engine_ns_per_reading(data: Path, rules: int, key: str, readings: int = 200_000) -> float:
    """`AlarmEngine.on_commit` time per reading of "temperature": 100 devices, `rules` rules
    spread over them on `key`, none crossed."""
    from tinyboard.core.alarm_engine import AlarmEngine
    from tinyboard.storage.sqlite import SQLiteStore

    store = SQLiteStore(data)
    await store.open()
    devices = [await store.create_device(f"e{i}") for i in range(DEVICES)]
    engine = AlarmEngine(store)
    await engine.start()
    for i in range(rules):
        await engine.save_rule(
            {
                "deviceId": devices[i % DEVICES].id,
                "key": key,
                "condition": {"op": ">", "value": 1000 + i // DEVICES},
                "alarmType": f"t{i // DEVICES}",
            }
        )
    batch = [(devices[i % DEVICES].key, "temperature", i, 21.5) for i in range(1000)]
    started = time.perf_counter()
    for _ in range(readings // len(batch)):
        engine.on_commit(batch, ())
    elapsed = time.perf_counter() - started
    await engine.stop()
    await store.close()
    return elapsed / readings * 1e9


# -- the benchmark ------------------------------------------------------------------------------
class Receiver:
    """The webhook end: records when each body arrived."""

    def __init__(self) -> None:
        self.arrivals: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        arrivals = self.arrivals

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                arrivals.put((time.perf_counter(), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


def load(port: int, tokens_file: Path, args: argparse.Namespace) -> float:
    done = subprocess.run(
        [
            sys.executable, __file__, "publish", "--port", str(port), "--tokens",
            str(tokens_file), "--window", str(args.window), "--seconds", str(args.seconds),
        ],
        check=True, capture_output=True, text=True, timeout=args.seconds + 120,
    )  # fmt: skip
    rate: float = json.loads(done.stdout.strip().splitlines()[-1])["rate"]
    return rate


def webhook_latency(port: int, token: str, receiver: Receiver, n: int) -> tuple[list[float], ...]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.username_pw_set(token)
    client.connect("127.0.0.1", port)
    client.loop_start()
    hooks, acks = [], []
    for i in range(n):
        started = time.perf_counter()
        info = client.publish("v1/devices/me/telemetry", json.dumps({"latency": (i + 1) % 2}), 1)
        info.wait_for_publish(10)
        acks.append((time.perf_counter() - started) * 1000)
        arrived, body = receiver.arrivals.get(timeout=10)
        expected = "ALARM_CREATED" if i % 2 == 0 else "ALARM_CLEARED"
        assert body["event"] == expected, body
        hooks.append((arrived - started) * 1000)
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    return hooks, acks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    publish = sub.add_parser("publish")
    publish.add_argument("--port", type=int, required=True)
    publish.add_argument("--tokens", required=True)
    publish.add_argument("--window", type=int, default=8)
    publish.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    if args.command == "publish":
        publish_main(args)
        return
    print(f"# alarm rules benchmark ({revision()})")
    with tempfile.TemporaryDirectory() as tmp:
        costs = {
            key: min(
                uvloop.run(engine_ns_per_reading(Path(tmp) / f"{key}{k}.db", args.rules, key))
                for k in range(3)
            )
            for key in ("humidity", "temperature")
        }
    print(
        f"engine alone, on_commit per reading (best of 3, 200,000 readings, {args.rules} "
        f"rules): no rule on its key {costs['humidity']:.0f} ns; "
        f"{max(1, args.rules // DEVICES)} rules on its key {costs['temperature']:.0f} ns "
        f"(ratio {costs['temperature'] / costs['humidity']:.1f}×)"
    )
    receiver = Receiver()
    with tempfile.TemporaryDirectory() as tmp:
        server = Tinyboard(Path(tmp) / "data", "--no-dashboard", "--alarm-webhook", receiver.url)
        port, rest = server.mqtt_port, server.rest
        try:
            ids, tokens = (
                list(t)
                for t in zip(*(server.add_device(f"d{i}") for i in range(DEVICES)), strict=True)
            )
            tokens_file = Path(tmp) / "tokens.json"
            tokens_file.write_text(json.dumps(tokens))
            rates: dict[str, list[float]] = {"none": [], "rules": []}
            rates["none"].append(load(port, tokens_file, args))
            rule_ids = []
            per_device = max(1, args.rules // DEVICES)
            for i in range(args.rules):
                rule = {
                    "deviceId": ids[i % DEVICES],
                    "key": "temperature",
                    "condition": {"op": ">", "value": 1000 + i // DEVICES},
                    "alarmType": f"t{i // DEVICES}",
                }
                rule_ids.append(rest.post("/api/alarmRule", json=rule).json()["id"])
            rates["rules"].append(load(port, tokens_file, args))
            for rule_id in rule_ids:
                rest.delete(f"/api/alarmRule/{rule_id}")
            rates["none"].append(load(port, tokens_file, args))

            watched = ids[0]
            rest.post(
                "/api/alarmRule",
                json={
                    "deviceId": watched,
                    "key": "latency",
                    "condition": {"op": ">", "value": 0.5},
                    "alarmType": "Latency",
                },
            ).raise_for_status()
            hooks, acks = webhook_latency(port, tokens[0], receiver, args.samples)
        finally:
            code = server.stop()
            stop_all_children()
    base = statistics.mean(rates["none"])
    with_rules = rates["rules"][0]
    print(
        f"{DEVICES} devices, QoS 1, window {args.window}, {args.seconds:g} s per phase:"
        f"\n  no rules:            {rates['none'][0]:9,.0f} msg/s (before) "
        f"{rates['none'][1]:9,.0f} msg/s (after)"
        f"\n  {args.rules} rules active:  {with_rules:9,.0f} msg/s "
        f"({per_device} rules evaluated per message)"
        f"\n  ratio rules / no rules: {with_rules / base:.2f}×"
    )
    hooks.sort()
    print(
        f"publish → webhook received ({len(hooks)} alarms created or cleared): "
        f"p50 {statistics.median(hooks):.1f} ms, p95 {hooks[int(0.95 * len(hooks))]:.1f} ms, "
        f"max {hooks[-1]:.1f} ms; publish → PUBACK p50 {statistics.median(acks):.1f} ms; "
        f"ratio {statistics.median(hooks) / statistics.median(acks):.1f}×"
    )
    print(f"server exit code {code}")


if __name__ == "__main__":
    main()
