"""OTA downloads: N devices fetch one package over MQTT in chunks at once (ThingsBoard's
`v2/fw/request/{id}/chunk/{n}`, each waiting for a chunk before asking for the next, as the
SDKs do). Prints the time until every device has the whole file, and the server's RSS.

Baseline in the same run: the same devices, connected the same way, each publishing as many
QoS 1 telemetry messages as it asked for chunks; the server's RSS peak then is what serving
those devices costs without downloads. Downloads should add about a chunk per device, never
a file per device.
Usage: python benchmarks/ota_download.py [--devices 20] [--size-mb 2] [--chunk 65536]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from common import Tinyboard, revision, stop_all_children


class Board:
    """A paho client in its own network thread; messages land in a queue."""

    def __init__(self, port: int, token: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(token)
        self.messages: queue.Queue[bytes] = queue.Queue()
        self.client.on_message = lambda c, u, msg: self.messages.put(msg.payload)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def download(self, size: int, chunk: int) -> str:
        digest = hashlib.sha256()
        for n in range(-(-size // chunk)):
            self.client.publish(f"v2/fw/request/1/chunk/{n}", str(chunk), qos=1)
            digest.update(self.messages.get(timeout=60))
        return digest.hexdigest()

    def telemetry(self, size: int, chunk: int) -> str:
        for n in range(-(-size // chunk)):
            self.client.publish("v1/devices/me/telemetry", f'{{"n":{n}}}', qos=1).wait_for_publish(
                60
            )
        return ""

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run(boards: list[Board], work: Callable[[Board], str], server: psutil.Process) -> tuple[
    float, float, list[str]
]:  # fmt: skip
    """(seconds until every board is done, peak server RSS in MB, each board's result)."""
    results: list[str] = []
    threads = [threading.Thread(target=lambda b=b: results.append(work(b))) for b in boards]
    peak = server.memory_info().rss
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, server.memory_info().rss)
        time.sleep(0.01)
    return time.perf_counter() - started, peak / 1e6, results


def package(server: Tinyboard, data: bytes) -> str:
    """A profile running a package holding `data`; its id."""
    rest = server.rest
    profile = rest.post("/api/deviceProfile", json={"name": "bench", "type": "DEFAULT"}).json()
    info = rest.post(
        "/api/otaPackage",
        json={"title": "fw", "version": "1", "type": "FIRMWARE", "deviceProfileId": profile["id"]},
    ).json()
    uploaded = rest.post(
        f"/api/otaPackage/{info['id']['id']}",
        params={"checksumAlgorithm": "SHA256"},
        files={"file": ("fw.bin", data, "application/octet-stream")},
    )
    uploaded.raise_for_status()
    profile["firmwareId"] = info["id"]
    rest.post("/api/deviceProfile", json=profile).raise_for_status()
    return str(profile["id"]["id"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--size-mb", type=float, default=2.0)
    parser.add_argument("--chunk", type=int, default=65536)
    args = parser.parse_args(argv)
    data = os.urandom(int(args.size_mb * 1024 * 1024))
    with tempfile.TemporaryDirectory() as tmp:
        server = Tinyboard(Path(tmp) / "data", "--no-dashboard")
        try:
            profile_id = package(server, data)
            tokens = []
            for n in range(args.devices):
                device = server.rest.post(
                    "/api/device",
                    json={
                        "name": f"ota-{n}",
                        "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": profile_id},
                    },
                ).json()
                credentials = server.rest.get(f"/api/device/{device['id']['id']}/credentials")
                tokens.append(credentials.json()["credentialsId"])
            proc = psutil.Process(server.proc.pid)
            boards = [Board(server.mqtt_port, token) for token in tokens]
            time.sleep(0.5)
            idle = proc.memory_info().rss / 1e6
            base_s, base_peak, _ = run(boards, lambda b: b.telemetry(len(data), args.chunk), proc)
            ota_s, ota_peak, digests = run(
                boards, lambda b: b.download(len(data), args.chunk), proc
            )
            for board in boards:
                board.close()
        finally:
            server.stop()
            stop_all_children()
    sent = len(data) * args.devices / 1e6
    ok = digests == [hashlib.sha256(data).hexdigest()] * args.devices
    print(revision())
    print(
        f"{args.devices} devices × {len(data) / 1e6:.1f} MB in {args.chunk}-byte chunks "
        f"({sent:.0f} MB sent): all downloaded in {ota_s:.2f} s ({sent / ota_s:.0f} MB/s), "
        f"bytes {'equal' if ok else 'DIFFERENT'}"
    )
    print(
        f"server RSS: idle {idle:.1f} MB; peak with the same devices publishing telemetry "
        f"(baseline, {base_s:.2f} s) {base_peak:.1f} MB; peak downloading {ota_peak:.1f} MB "
        f"(+{ota_peak - base_peak:.1f} MB, {(ota_peak - base_peak) / args.devices:.2f} MB a "
        f"device; a file per device would be {len(data) / 1e6:.1f} MB a device)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
