"""Load clients for the publish → WebSocket latency part of `http_and_queries.py`.

`http_and_queries.py` runs each role as its own process, so the subscriber's receive times
are not delayed by the publishers' work (and each role's CPU is measured separately).
Times are CLOCK_MONOTONIC in milliseconds, which every process of the machine shares.

  publish    Connects one MQTT 3.1.1 client per device token (username = token, raw
             `asyncio.Protocol`, no library in the way), prints READY, waits for a line on
             stdin, then publishes `{"t": <send time>}` to `v1/devices/me/telemetry` at a
             steady total rate for --seconds (round robin over the devices, paced every
             millisecond), waits for every PUBACK at QoS 1, and prints one JSON line of
             counts.
  subscribe  Opens one WebSocket to tinyboard, sends one tsSubCmd per device (key `t`),
             waits for every subscription's first reply, prints READY, then records the
             (send time, receive time) of every value it gets until SIGTERM, writes them
             to --out and prints one JSON line of counts.

    python benchmarks/live_load.py publish --port P --tokens tokens.json --rate 5000 --seconds 12
    python benchmarks/live_load.py subscribe --url ws://... --devices ids.json --out lat.bin
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import orjson
import uvloop

TOPIC = b"v1/devices/me/telemetry"
CONNECT_CONCURRENCY = 32
LATE = 0.002
"""A pacing tick this many seconds behind schedule is counted as late."""


def read_json(path: str) -> Any:
    """A small input file, read before the load starts."""
    return json.loads(Path(path).read_text())


def write_times(path: str, sends: array[float], recvs: array[float]) -> None:
    with Path(path).open("wb") as out:
        sends.tofile(out)
        recvs.tofile(out)


def _now_ms() -> float:
    return time.monotonic() * 1000.0


# -- MQTT publisher --------------------------------------------------------------------------
def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def connect_packet(client_id: str, token: str, keepalive: int = 60) -> bytes:
    # Protocol name, level 4 (3.1.1), flags: username + clean session.
    variable = _string(b"MQTT") + bytes([4, 0x82]) + keepalive.to_bytes(2, "big")
    payload = _string(client_id.encode()) + _string(token.encode())
    body = variable + payload
    return b"\x10" + _remaining_length(len(body)) + body


class MqttClient(asyncio.Protocol):
    def __init__(self, token: str, index: int, qos: int) -> None:
        self.token = token
        self.index = index
        self.qos = qos
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buf = bytearray()
        self.sent = 0
        self.acked = 0
        self.packet_id = 0
        self.closed = False
        self.closing = False
        self.all_acked: asyncio.Event | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(connect_packet(f"live-{self.index}", self.token))  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= 2:
            length, shift, i = 0, 0, 1
            while True:
                if i >= len(buf):
                    return
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                shift += 7
                i += 1
                if not byte & 0x80:
                    break
            if len(buf) < i + length:
                return
            kind = buf[0] >> 4
            body = bytes(buf[i : i + length])
            del buf[: i + length]
            if kind == 2 and not self.connack.done():  # CONNACK
                if len(body) >= 2 and body[1] == 0:
                    self.connack.set_result(None)
                else:
                    self.connack.set_exception(RuntimeError(f"CONNACK refused: {body!r}"))
            elif kind == 4:  # PUBACK
                self.acked += 1
                if self.all_acked is not None and self.acked >= self.sent:
                    self.all_acked.set()

    def publish(self, payload: bytes) -> None:
        if self.qos:
            self.packet_id = self.packet_id % 65535 + 1
            head = _string(TOPIC) + self.packet_id.to_bytes(2, "big")
            first = 0x32
        else:
            head = _string(TOPIC)
            first = 0x30
        size = len(head) + len(payload)
        self.transport.write(bytes([first]) + _remaining_length(size) + head + payload)  # type: ignore[union-attr]
        self.sent += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.all_acked is not None:
            self.all_acked.set()
        if not self.connack.done():
            self.connack.set_exception(ConnectionError(f"connection lost: {exc}"))

    def disconnect(self) -> None:
        self.closing = True
        if self.transport is not None and not self.closed:
            self.transport.write(b"\xe0\x00")
            self.transport.close()


async def run_publisher(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    tokens: list[str] = read_json(args.tokens)
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[MqttClient] = []

    async def one(i: int, token: str) -> None:
        async with gate:
            _, client = await loop.create_connection(
                lambda: MqttClient(token, i, args.qos), args.host, args.port
            )
            clients.append(client)
            await client.connack

    await asyncio.wait_for(
        asyncio.gather(*(one(i, t) for i, t in enumerate(tokens))), args.connect_timeout
    )
    clients.sort(key=lambda c: c.index)
    print("READY", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)

    rate, tick, n = args.rate, args.tick / 1000.0, len(clients)
    start = time.monotonic()
    deadline = start + args.seconds
    sent = 0
    i = 0
    late_ticks = 0
    next_tick = start
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        due = int((now - start) * rate) + 1 - sent
        for _ in range(due):
            clients[i].publish(b'{"t":%.3f}' % _now_ms())
            i = i + 1 if i + 1 < n else 0
        sent += max(due, 0)
        next_tick += tick
        delay = next_tick - time.monotonic()
        if delay < 0:
            if delay < -LATE:
                late_ticks += 1
            next_tick = time.monotonic()
            delay = 0
        await asyncio.sleep(delay)
    end = time.monotonic()

    if args.qos:
        waits = []
        for c in clients:
            c.all_acked = asyncio.Event()
            if c.acked >= c.sent or c.closed:
                c.all_acked.set()
            waits.append(c.all_acked.wait())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), args.ack_timeout)
    lost_connections = sum(1 for c in clients if c.closed)
    result = {
        "sent": sent,
        "acked": sum(c.acked for c in clients),
        "start_ms": start * 1000.0,
        "end_ms": end * 1000.0,
        "late_ticks": late_ticks,
        "lost_connections": lost_connections,
    }
    for c in clients:
        c.disconnect()
    await asyncio.sleep(0.1)
    return result


# -- WebSocket subscriber --------------------------------------------------------------------
async def run_subscriber(args: argparse.Namespace) -> dict[str, Any]:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.get_running_loop()
    device_ids: list[str] = read_json(args.devices)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    sends = array("d")
    recvs = array("d")
    counts = {"messages": 0, "errors": 0, "values": 0}
    closed: str | None = None
    compression = "deflate" if args.compression == "deflate" else None
    async with connect(
        args.url, max_size=None, compression=compression, ping_interval=None, open_timeout=30
    ) as ws:
        cmds = [
            {"cmdId": i + 1, "entityType": "DEVICE", "entityId": device_id, "keys": "t"}
            for i, device_id in enumerate(device_ids)
        ]
        await ws.send(orjson.dumps({"tsSubCmds": cmds}).decode())
        pending = set(range(1, len(cmds) + 1))
        async with asyncio.timeout(30):
            while pending:
                doc = orjson.loads(await ws.recv())
                if doc.get("errorCode"):
                    raise RuntimeError(f"subscription refused: {doc}")
                pending.discard(doc.get("subscriptionId"))
        print("READY", flush=True)

        async def receive() -> None:
            while True:
                raw = await ws.recv()
                now = _now_ms()
                doc = orjson.loads(raw)
                counts["messages"] += 1
                if doc.get("errorCode"):
                    counts["errors"] += 1
                    continue
                for points in doc["data"].values():
                    for _, value in points:
                        sends.append(float(value))
                        recvs.append(now)

        receiver = asyncio.create_task(receive())
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({receiver, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if receiver in done:
            exc = receiver.exception()
            closed = repr(exc) if exc is not None else "receiver ended"
        receiver.cancel()
        stopper.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(receiver, stopper, return_exceptions=True)
        with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
            await asyncio.wait_for(ws.close(), 2)
    counts["values"] = len(sends)
    write_times(args.out, sends, recvs)
    return {**counts, "closed": closed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n    python")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    roles = parser.add_subparsers(dest="role", required=True)
    pub = roles.add_parser("publish", help="MQTT publishers at a steady total rate")
    pub.add_argument("--host", default="127.0.0.1")
    pub.add_argument("--port", type=int, required=True, help="tinyboard's MQTT port")
    pub.add_argument("--tokens", required=True, help="JSON file: list of device tokens")
    pub.add_argument("--rate", type=float, default=5000.0, help="total messages/s")
    pub.add_argument("--seconds", type=float, required=True, help="how long to publish")
    pub.add_argument("--qos", type=int, choices=(0, 1), default=0)
    pub.add_argument("--tick", type=float, default=1.0, help="pacing period in ms")
    pub.add_argument("--connect-timeout", type=float, default=60.0)
    pub.add_argument("--ack-timeout", type=float, default=10.0)
    sub = roles.add_parser("subscribe", help="one WebSocket subscribed to every device")
    sub.add_argument("--url", required=True, help="ws://HOST:PORT/api/ws/plugins/telemetry?token=")
    sub.add_argument("--devices", required=True, help="JSON file: list of device ids")
    sub.add_argument("--out", required=True, help="binary file: send times, then receive times")
    sub.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    args = parser.parse_args(argv)
    runner = run_publisher if args.role == "publish" else run_subscriber
    result = uvloop.run(runner(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
