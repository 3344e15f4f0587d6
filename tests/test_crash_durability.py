"""Every reading whose echo reached the device survives `kill -9` of the server."""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

import pytest

from tests.helpers import ServeProcess, tinyboard
from tinyboard.storage.sqlite import SQLiteStore

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


async def _stored(db: Path, device_names: list[str]) -> list[set[int]]:
    store = SQLiteStore(db)
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


@pytest.mark.slow
@pytest.mark.parametrize("sync", ["full", "normal"])
def test_acknowledged_readings_survive_kill_9(tmp_path: Path, sync: str) -> None:
    data = tmp_path / "data"
    names = [f"crash-{i}" for i in range(DEVICES)]
    tokens = [tinyboard("device", "add", n, "--data-dir", str(data)).stdout.strip() for n in names]
    total_acked = 0
    for _ in range(3):
        server = ServeProcess(data, "--sync", sync)
        acked = asyncio.run(_load_then_kill(server, tokens))
        assert server.wait()[0] == -signal.SIGKILL
        total_acked += sum(map(len, acked))
        restarted = ServeProcess(data, "--sync", sync)  # the data dir opens again after a crash
        stored = asyncio.run(_stored(data / "tinyboard.db", names))
        restarted.signal(signal.SIGTERM)
        assert restarted.wait()[0] == 0
        for name, got, want in zip(names, stored, acked, strict=True):
            missing = set(want) - got
            assert not missing, f"{name}: {len(missing)} acknowledged readings lost"
    assert total_acked > 1000  # the load was real
