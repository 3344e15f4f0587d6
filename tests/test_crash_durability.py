"""Every reading whose echo reached the device survives `kill -9` of the server."""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import ServeProcess, tinyboard
from tinyboard.storage import open_store

DEVICES = 6
WINDOW = 32  # readings in flight per device


async def _device(port: int, token: str, acked: list[int], stop: asyncio.Event) -> None:
    """Send seq=N readings pipelined; the k-th reply acknowledges the k-th reading."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"TOKEN {token}\n".encode())
    assert (await reader.readline()).startswith(b"OK ")
    sent = 0
    try:
        while not stop.is_set():
            while sent - len(acked) < WINDOW:
                writer.write(f"seq={sent}\n".encode())
                sent += 1
            reply = await reader.readline()
            if not reply:
                return
            assert reply == f"SEQ={len(acked)}\n".encode()
            acked.append(len(acked))
    except ConnectionError:
        return
    finally:
        writer.close()


async def _load_then_kill(server: ServeProcess, tokens: list[str]) -> list[list[int]]:
    acked: list[list[int]] = [[] for _ in tokens]
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_device(server.line_port, t, a, stop))
        for t, a in zip(tokens, acked, strict=True)
    ]
    await asyncio.sleep(random.uniform(0.3, 1.5))
    server.signal(signal.SIGKILL)
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
    return acked


async def _stored(url: str, device_names: list[str]) -> list[set[int]]:
    """The seq values stored per device (read with the store itself)."""
    store = open_store(url)
    await store.open()
    try:
        out = []
        for name in device_names:
            device = await store.get_device(name)
            points = await store.history(device.key, "seq", start_ts=0, end_ts=2**62, limit=10**7)
            out.append({int(v) for _, v in points})  # type: ignore[call-overload]
        return out
    finally:
        await store.close()


def _add_devices(prefix: str, data: Path, chosen: list[str]) -> tuple[list[str], list[str]]:
    """DEVICES devices made with the CLI, as a user would: their names and tokens."""
    names = [f"{prefix}-{i}" for i in range(DEVICES)]
    tokens = [
        tinyboard("device", "add", n, "--data-dir", str(data), *chosen).stdout.strip()
        for n in names
    ]
    return names, tokens


def _store_args(store: str, data: Path, postgres_url: Callable[[], str]) -> tuple[str, list[str]]:
    """The store's URL and the CLI arguments that select it."""
    if store == "postgres":
        url = postgres_url()
        return url, ["--store", url]
    return f"sqlite:{data / 'tinyboard.db'}", []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("store", "sync"), [("sqlite", "full"), ("sqlite", "normal"), ("postgres", "full")]
)
def test_acknowledged_readings_survive_kill_9(
    tmp_path: Path, store: str, sync: str, postgres_url: Callable[[], str]
) -> None:
    data = tmp_path / "data"
    url, chosen = _store_args(store, data, postgres_url)
    names, tokens = _add_devices("crash", data, chosen)
    total_acked = 0
    for _ in range(3):
        server = ServeProcess(data, "--sync", sync, *chosen)
        acked = asyncio.run(_load_then_kill(server, tokens))
        assert server.wait()[0] == -signal.SIGKILL
        total_acked += sum(map(len, acked))
        restarted = ServeProcess(data, "--sync", sync, *chosen)  # opens again after a crash
        stored = asyncio.run(_stored(url, names))
        restarted.signal(signal.SIGTERM)
        assert restarted.wait()[0] == 0
        for name, got, want in zip(names, stored, acked, strict=True):
            missing = set(want) - got
            assert not missing, f"{name}: {len(missing)} acknowledged readings lost"
    assert total_acked > 1000  # the load was real


def _paho_device(port: int, token: str, first: int, acked: set[int], stop: threading.Event) -> None:
    """paho-mqtt publishing seq=N with QoS 1 within an in-flight window; records PUBACKs."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.username_pw_set(token)
    client.max_inflight_messages_set(WINDOW)
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent: list[Any] = []
    oldest = 0  # first message not yet acknowledged
    try:
        while not stop.is_set():
            payload = f'{{"seq": {first + len(sent)}}}'
            sent.append(client.publish("v1/devices/me/telemetry", payload, qos=1))
            while len(sent) - oldest > 2 * WINDOW and not stop.is_set():
                while oldest < len(sent) and _was_acked(sent[oldest]):
                    oldest += 1
                time.sleep(0.0005)
    finally:
        client.loop_stop()
        # is_published() turns true only when the PUBACK arrived.
        acked.update(first + i for i, info in enumerate(sent) if _was_acked(info))


def _was_acked(info: Any) -> bool:
    """Whether paho got the PUBACK; a message published after the server died was never
    sent, and paho raises for it instead of answering False."""
    try:
        return bool(info.is_published())
    except RuntimeError:
        return False


async def _wire_device(port: int, token: str, first: int, acked: set[int]) -> None:
    """A fast MQTT 3.1.1 publisher written from the spec's bytes, to load the server harder
    than paho's threads can: QoS 1, WINDOW in flight, PUBACKs arrive in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b"\x00\x04MQTT\x04\x82\x00\x3c\x00\x00" + len(token).to_bytes(2, "big") + token.encode()
    writer.write(bytes([0x10, len(body)]) + body)
    assert await reader.readexactly(4) == b"\x20\x02\x00\x00"
    topic = b"\x00\x17v1/devices/me/telemetry"
    sent = 0
    try:
        while True:
            while sent - len(acked) < WINDOW:
                seq = first + sent
                payload = b'{"seq":%d}' % seq
                packet_id = (sent % 65535 + 1).to_bytes(2, "big")
                variable = topic + packet_id + payload
                writer.write(bytes([0x32, len(variable)]) + variable)
                sent += 1
            puback = await reader.readexactly(4)
            assert puback[:2] == b"\x40\x02"
            acked.add(first + len(acked))
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


def _paho_round(server: ServeProcess, tokens: list[str], first: int) -> list[set[int]]:
    acked: list[set[int]] = [set() for _ in tokens]
    stop = threading.Event()
    threads = [
        threading.Thread(target=_paho_device, args=(server.mqtt_port, t, first, a, stop))
        for t, a in zip(tokens, acked, strict=True)
    ]
    for t in threads:
        t.start()
    time.sleep(random.uniform(0.5, 1.5))
    server.signal(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(20)
    return acked


async def _wire_round(server: ServeProcess, tokens: list[str], first: int) -> list[set[int]]:
    acked: list[set[int]] = [set() for _ in tokens]
    tasks = [
        asyncio.create_task(_wire_device(server.mqtt_port, t, first, a))
        for t, a in zip(tokens, acked, strict=True)
    ]
    await asyncio.sleep(random.uniform(0.5, 1.5))
    server.signal(signal.SIGKILL)
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    return acked


@pytest.mark.slow
@pytest.mark.parametrize(
    ("client", "store"), [("paho", "sqlite"), ("wire", "sqlite"), ("wire", "postgres")]
)
def test_pubacked_readings_survive_kill_9(
    tmp_path: Path, client: str, store: str, postgres_url: Callable[[], str]
) -> None:
    data = tmp_path / "data"
    url, chosen = _store_args(store, data, postgres_url)
    names, tokens = _add_devices("mqtt-crash", data, chosen)
    total = 0
    for round_ in range(3):
        server = ServeProcess(data, *chosen)
        first = round_ * 10_000_000  # seq values never repeat across rounds
        if client == "paho":
            acked = _paho_round(server, tokens, first)
        else:
            acked = asyncio.run(_wire_round(server, tokens, first))
        assert server.wait()[0] == -signal.SIGKILL
        total += sum(map(len, acked))
        stored = asyncio.run(_stored(url, names))
        for name, got, want in zip(names, stored, acked, strict=True):
            missing = want - got
            assert not missing, f"{name}: {len(missing)} PUBACKed readings lost"
    assert total > 3000  # the load was real
