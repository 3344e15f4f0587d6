"""A full disk and a poisoned batch (issue 13, points 2 and 3).

Found by the abuse run: when SQLite's disk filled, the store's own ROLLBACK failed, the key-id
cache kept ids of a rolled-back transaction and later acknowledged readings were stored under
keys that did not exist; and one reading PostgreSQL refused (a NUL in a key) failed the whole
batch, so other devices lost their connections again and again. Every test here runs against
real stores (a real tmpfs that really fills up, a real PostgreSQL) and real clients.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import queue
import sqlite3
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import IN_CI
from tests.helpers import FixedClock, LineClient, ServerThread
from tests.mqtt_clients import V5, V311, Device
from tests.web_helpers import login
from tinyboard.core.ingest import (
    MAX_JSON_DEPTH,
    parse_attributes,
    parse_line,
    parse_telemetry,
)
from tinyboard.core.models import AttributeRow, Reading
from tinyboard.core.models import Device as DeviceRecord
from tinyboard.core.pipeline import Pipeline
from tinyboard.errors import PayloadError, RejectedDataError, StoreFullError
from tinyboard.storage.base import Store
from tinyboard.storage.postgres import PostgresStore, split_url
from tinyboard.storage.sqlite import SQLiteStore

TELEMETRY = "v1/devices/me/telemetry"
LINE_DISK_FULL = "ERROR the server's disk is full; send the reading again later"

AT_1000 = FixedClock(1000)


# -- a small disk that really fills up ------------------------------------------------------
def _skip_or_fail(why: str) -> None:
    if IN_CI:
        pytest.fail(f"{why}; the disk-full tests must run under CI=true")
    pytest.skip(why)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root: skipped elsewhere, failed under CI=true)."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0:
        _skip_or_fail("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode:
        _skip_or_fail(f"cannot mount a tmpfs on {where}: {mounted.stderr.strip()}")
    try:
        yield where
    finally:  # lazily if a failed test left a file open: never leave a mount behind
        if subprocess.run(["umount", str(where)], check=False).returncode:
            subprocess.run(["umount", "--lazy", str(where)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no byte left; delete the file to free the space."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 512, b"\0"):
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


# -- pipeline over a real store -------------------------------------------------------------


class Jobs:
    """Submits jobs straight to a pipeline (past ingest's checks) and keeps their outcomes."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.outcomes: dict[str, BaseException | None] = {}
        self.notified: list[Reading] = []
        pipeline.on_commit(lambda readings, _: self.notified.extend(readings))

    def submit(
        self, name: str, readings: list[Reading], attributes: list[AttributeRow] | None = None
    ) -> None:
        def done(error: BaseException | None) -> None:
            self.outcomes[name] = error

        self.pipeline.submit(readings, done, attributes or [])


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def nested(levels: int) -> bytes:
    """JSON text of `deep(levels)` (orjson refuses to write it past 254 levels)."""
    return b"[" * levels + b"1" + b"]" * levels


POISONS: dict[str, tuple[list[Reading], list[AttributeRow]]] = {
    "integer over 64 bits": ([(0, "big", 5, 2**70)], []),
    "JSON deeper than orjson writes": ([(0, "deep", 5, deep(300))], []),
    "attribute over 64 bits": ([], [(0, "CLIENT", "big", 5, 2**70)]),
    "NUL in a key": ([(0, "a\x00b", 5, 1)], []),
    "NUL in an attribute key": ([], [(0, "CLIENT", "a\x00b", 5, 1)]),
}
"""Jobs a store refuses (device 0 is replaced by a real one). Ingest refuses all of them."""


@pytest.mark.parametrize(
    ("store", "poison"),
    [
        (backend, poison)
        for poison in POISONS
        for backend in ("sqlite", "postgres")
        if backend == "postgres"
        or "NUL" not in poison  # SQLite holds NUL: only PostgreSQL refuses it
    ],
    indirect=["store"],
)
async def test_a_poisoned_job_fails_alone_and_the_rest_of_its_batch_commits(
    store: Store, poison: str
) -> None:
    devices = [await store.create_device(f"d{i}") for i in range(8)]
    bad = await store.create_device("bad")
    pipeline = Pipeline(store, batch_limit=10_000)
    jobs = Jobs(pipeline)
    pipeline.start()
    readings, attributes = POISONS[poison]
    for round_ in range(5):  # submitted without a pause: they share one batch
        for d in devices:
            jobs.submit(f"{d.name}/{round_}", [(d.key, f"k{round_}", 100 + round_, round_)])
            if round_ == 2 and d is devices[3]:
                jobs.submit(
                    "poison",
                    [(bad.key, *r[1:]) for r in readings],
                    [(bad.key, *a[1:]) for a in attributes],
                )
    await pipeline.drain()
    await pipeline.stop()
    assert isinstance(jobs.outcomes.pop("poison"), RejectedDataError)
    assert jobs.outcomes == dict.fromkeys(jobs.outcomes)  # every other job committed
    assert len(jobs.outcomes) == 40
    for d in devices:
        latest = await store.latest(d.key)
        assert {k: v for k, (_, v) in latest.items()} == {f"k{r}": r for r in range(5)}
    assert await store.latest(bad.key) == {}
    assert await store.attributes(bad.key, "CLIENT") == {}
    assert len(jobs.notified) == 40  # listeners hear of what was committed, and only that
    stats = pipeline.stats
    assert (stats.commits, stats.errors, stats.rejected) == (1, 1, 1)
    assert stats.retries <= 2 * 6  # halving 41 jobs: two writes per level, not one per job


async def test_two_poisoned_jobs_in_a_batch_fail_and_the_others_keep_their_order(
    store: Store,
) -> None:
    d = await store.create_device("ordered")
    pipeline = Pipeline(store)
    jobs = Jobs(pipeline)
    pipeline.start()
    for i in range(20):  # one point rewritten by every job: the last job must win
        value: Any = 2**70 if i in (4, 13) else i
        jobs.submit(str(i), [(d.key, "same", 1000, i), (d.key, "own", i, value)])
    await pipeline.drain()
    await pipeline.stop()
    assert [name for name, error in jobs.outcomes.items() if error] == ["4", "13"]
    assert await store.history(d.key, "same", start_ts=0, end_ts=2000) == [(1000, 19)]
    own = await store.history(d.key, "own", start_ts=0, end_ts=2000, descending=False)
    assert own == [(i, i) for i in range(20) if i not in (4, 13)]
    assert pipeline.stats.rejected == 2


Free = Callable[[], Coroutine[Any, Any, None]]


async def disk_full_postgres(url: str) -> Free:
    """PostgreSQL's own disk-full error (SQLSTATE 53100, what it sends when it cannot extend
    a table file), raised by a trigger in the test's schema; dropping it frees the "disk"."""
    dsn, schema = split_url(url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema or "public"})
    await conn.execute(
        "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'could not extend file: No space left on device' "
        "USING ERRCODE = 'disk_full'; END $$; "
        "CREATE TRIGGER disk_full BEFORE INSERT ON ts_kv "
        "FOR EACH STATEMENT EXECUTE FUNCTION disk_full()"
    )

    async def free() -> None:
        await conn.execute("DROP TRIGGER disk_full ON ts_kv")
        await conn.close()

    return free


@pytest.fixture
async def store_on_small_disk(
    request: pytest.FixtureRequest, postgres_url: Callable[[], str]
) -> AsyncIterator[tuple[Store, Callable[[], Coroutine[Any, Any, Free]]]]:
    """(store, full): `await full()` fills the store's disk and returns what frees it."""
    if request.param == "sqlite":
        disk: Path = request.getfixturevalue("small_disk")
        opened: Store = SQLiteStore(disk / "store.db")

        async def full() -> Free:
            filler = fill(disk)

            async def free() -> None:
                filler.unlink()

            return free
    else:
        url = postgres_url()
        opened = PostgresStore(url)

        async def full() -> Free:
            return await disk_full_postgres(url)

    await opened.open()
    try:
        yield opened, full
    finally:
        await opened.close()


@pytest.mark.parametrize("store_on_small_disk", ["sqlite", "postgres"], indirect=True)
async def test_a_full_disk_fails_the_batch_at_once_and_writing_resumes_after(
    store_on_small_disk: tuple[Store, Callable[[], Coroutine[Any, Any, Free]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, full = store_on_small_disk
    a, b = await store.create_device("a"), await store.create_device("b")
    await store.write([(a.key, "before", 1, 1)], [])
    free = await full()
    pipeline = Pipeline(store)
    jobs = Jobs(pipeline)
    pipeline.start()
    for i in range(10):  # keys never seen before: the store must not remember their ids
        jobs.submit(f"full{i}", [(a.key, f"new{i}", 10, "x" * 2000), (b.key, f"new{i}", 10, i)])
    await pipeline.drain()
    assert all(isinstance(e, StoreFullError) for e in jobs.outcomes.values()), jobs.outcomes
    assert len(jobs.outcomes) == 10
    assert pipeline.stats.retries == 0  # not the data's fault: no job is tried on its own
    assert jobs.notified == []
    await free()
    # Space is back: the same readings go in (the devices send them again), under their keys.
    jobs.outcomes.clear()
    jobs.submit("other", [(b.key, "other", 20, -1)])  # a new key takes the next free id
    for i in range(10):
        jobs.submit(f"again{i}", [(a.key, f"new{i}", 10, "x"), (b.key, f"new{i}", 10, i)])
    await pipeline.drain()
    await pipeline.stop()
    assert jobs.outcomes == dict.fromkeys(jobs.outcomes) and len(jobs.outcomes) == 11
    latest_b = {k: v for k, (_, v) in (await store.latest(b.key)).items()}
    assert latest_b == {"other": -1, **{f"new{i}": i for i in range(10)}}
    latest_a = {k: v for k, (_, v) in (await store.latest(a.key)).items()}
    assert latest_a == {"before": 1, **{f"new{i}": "x" for i in range(10)}}
    messages = [r.getMessage() for r in caplog.records]
    assert any("full" in m and "free space" in m for m in messages), messages
    assert not any("cannot rollback" in m for m in messages), messages
    assert any("storing again" in m for m in messages), messages


def test_a_failed_write_never_leaves_key_ids_of_a_rolled_back_transaction(
    small_disk: Path,
) -> None:
    """Found by the abuse run: the key-id cache kept ids of the transaction a full disk had
    rolled back, so a later reading was stored under a key id no key (or another key) had."""

    async def scenario() -> None:
        store = SQLiteStore(small_disk / "keys.db")
        await store.open()
        try:
            d = await store.create_device("k")
            filler = fill(small_disk)
            with pytest.raises(StoreFullError, match=r"disk holding .* is full"):
                await store.write([(d.key, "first", 1, "x" * 5000)], [])
            filler.unlink()
            await store.write([(d.key, "second", 2, 2)], [])
            await store.write([(d.key, "first", 3, 3)], [])
            assert await store.history(d.key, "first", start_ts=0, end_ts=10) == [(3, 3)]
            assert await store.history(d.key, "second", start_ts=0, end_ts=10) == [(2, 2)]
        finally:
            await store.close()

    asyncio.run(scenario())
    assert orphaned_points(small_disk / "keys.db") == 0


def orphaned_points(db: Path) -> int:
    """Points whose key id belongs to no key."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        sql = "SELECT count(*) FROM ts_kv WHERE key NOT IN (SELECT id FROM ts_key)"
        return int(conn.execute(sql).fetchone()[0])


# -- ingest: one check, every path -----------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("a\x00b=1", "keys cannot contain NUL"),
        ("ok=1 a\x00b=2", "keys cannot contain NUL"),
        ("a=x\x00y", "contains a NUL"),
        ("free text \x00 with NUL", "contains a NUL"),
        ('{"a\\u0000b": 1}', "keys cannot contain NUL"),
        ("k" * 256 + "=1", "keys need 1 to 255 characters"),
    ],
)
def test_the_line_protocol_refuses_what_no_store_can_hold(line: str, why: str) -> None:
    with pytest.raises(PayloadError, match=why):
        parse_line(line, 1, AT_1000)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b'{"a\\u0000b": 1}', "keys cannot contain NUL"),
        (b'{"s": "x\\u0000"}', "contains a NUL"),
        (b'{"j": {"in\\u0000side": 1}}', "contains a NUL"),
        (b'{"j": [1, ["deep \\u0000"]]}', "contains a NUL"),
        (b'{"ts": 1, "values": {"s": "\\u0000"}}', "contains a NUL"),
        (b'{"j": ' + nested(MAX_JSON_DEPTH + 1) + b"}", "nests deeper"),
    ],
)
def test_json_telemetry_and_attributes_refuse_what_no_store_can_hold(
    payload: bytes, why: str
) -> None:
    with pytest.raises(PayloadError, match=why):
        parse_telemetry(payload, 1, AT_1000)
    with pytest.raises(PayloadError, match=why):
        parse_attributes(payload.replace(b'"ts": 1, "values": ', b'"v": '))


def test_what_every_store_can_hold_still_passes() -> None:
    payload = b'{"j": ' + nested(MAX_JSON_DEPTH) + b', "s": "no nul", "' + b"k" * 255 + b'": 1}'
    [(*_, j), (*_, text), (_, key, _, n)] = parse_telemetry(payload, 1, AT_1000)
    assert (j, text, key, n) == (deep(MAX_JSON_DEPTH), "no nul", "k" * 255, 1)
    orjson.dumps(j)  # what ingest lets through, the stores can write
    assert parse_line("k" * 255 + "=1", 1, AT_1000) == [(1, "k" * 255, 1000, 1)]


# -- over the wire ---------------------------------------------------------------------------
class Ledger:
    """What the server acknowledged, per device: {key: {ts: value}}; readings carry their own
    ts, so "stored exactly once under its key" can be checked point by point."""

    def __init__(self) -> None:
        self.acked: dict[str, dict[str, dict[int, Any]]] = {}
        self._ts = 1_000

    def reading(self, key: str, value: Any) -> tuple[dict[str, Any], tuple[str, int, Any]]:
        self._ts += 1
        return {"ts": self._ts, "values": {key: value}}, (key, self._ts, value)

    def ack(self, device: str, point: tuple[str, int, Any]) -> None:
        key, ts, value = point
        self.acked.setdefault(device, {}).setdefault(key, {})[ts] = value


def stored(server: ServerThread, device: DeviceRecord) -> dict[str, dict[int, Any]]:
    store = server.server.store
    out = {}
    for key in server.call(store.ts_keys(device.key)):
        points = server.call(store.history(device.key, key, start_ts=0, end_ts=2**62))
        out[key] = dict(points)
    return out


class Watched(Device):
    """A paho device that records why it was disconnected, and reconnects (and resends its
    unacknowledged messages) every second, as a real device would."""

    def __init__(self, port: int, token: str, protocol: int) -> None:
        super().__init__(port, token, protocol=protocol, client_id=f"watched-{protocol}")
        self.why: queue.Queue[tuple[int, Any]] = queue.Queue()
        self.client.reconnect_delay_set(1, 1)
        self.client.on_disconnect = lambda c, u, f, rc, props: self.why.put((rc.value, props))

    def send(self, payload: dict[str, Any]) -> Any:
        return self.client.publish(TELEMETRY, orjson.dumps(payload), qos=1)


def _while_full(
    server: ServerThread,
    devices: dict[str, DeviceRecord],
    ledger: Ledger,
    clients: Any,
    admin: dict[str, str],
) -> list[tuple[str, Any, Any]]:
    """Every transport refuses, and says the disk is full; returns what must be sent again."""
    line, mqtt5, mqtt3 = clients
    doc, line_point = ledger.reading("full_line", 1)
    assert line.ask(orjson.dumps(doc).decode()) == LINE_DISK_FULL
    doc, http_point = ledger.reading("full_http", 2)
    url = f"{server.base_url}/api/v1/{devices['http'].token}/telemetry"
    response = httpx.post(url, json=doc)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert "disk is full" in response.json()["message"]
    pending = [("line", line_point, None), ("http", http_point, None)]
    for name, client in (("mqtt5", mqtt5), ("mqtt3", mqtt3)):
        doc, point = ledger.reading(f"full_{name}", 3)
        info = client.send(doc)
        code, props = client.why.get(timeout=10)
        if name == "mqtt5":
            assert code == 0x97  # quota exceeded
            assert "disk is full" in props.ReasonString
        assert not info.is_published()  # no PUBACK: the device keeps it and sends it again
        pending.append((name, point, info))
    # a person's write over REST (a shared attribute) is refused the same way, not as a 400
    device_id = devices["http"].id
    rest = httpx.post(
        f"{server.base_url}/api/plugins/telemetry/DEVICE/{device_id}/attributes/SHARED_SCOPE",
        json={"interval": 5},
        headers=admin,
    )
    assert rest.status_code == 503, rest.text
    assert rest.headers["Retry-After"] == "30"
    assert "disk" in rest.json()["message"]
    with LineClient(server.line_port) as chat:  # the server is up, reads still work
        assert chat.ask("still here?") == "STILL HERE?"
    assert httpx.get(f"{server.base_url}/api/v1/{devices['http'].token}/attributes").is_success
    return pending


@pytest.mark.slow
def test_a_full_disk_is_said_on_every_transport_and_every_acknowledged_reading_survives(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = small_disk / "data"
    ledger = Ledger()
    server = ServerThread(data).start()
    try:
        devices = {name: server.add_device(name) for name in ("line", "http", "mqtt5", "mqtt3")}
        line = LineClient(server.line_port)
        assert line.ask(f"TOKEN {devices['line'].token}") == "OK line"
        mqtt5 = Watched(server.mqtt_port, devices["mqtt5"].token, V5)
        mqtt3 = Watched(server.mqtt_port, devices["mqtt3"].token, V311)
        clients = (line, mqtt5, mqtt3)

        def send_all(phase: str) -> None:
            doc, point = ledger.reading(f"{phase}_line", 1)
            assert line.ask(orjson.dumps(doc).decode()) == orjson.dumps(doc).decode().upper()
            ledger.ack("line", point)
            doc, point = ledger.reading(f"{phase}_http", 2)
            url = f"{server.base_url}/api/v1/{devices['http'].token}/telemetry"
            assert httpx.post(url, json=doc).status_code == 200
            ledger.ack("http", point)
            for name, client in (("mqtt5", mqtt5), ("mqtt3", mqtt3)):
                doc, point = ledger.reading(f"{phase}_{name}", 3)
                client.send(doc).wait_for_publish(10)
                ledger.ack(name, point)

        send_all("before")
        admin = login(server)
        filler = fill(small_disk)
        pending = _while_full(server, devices, ledger, clients, admin)
        filler.unlink()
        # Space is back: what was refused is sent again (paho does it by itself on reconnect).
        for name, point, info in pending:
            if info is None:
                doc = {"ts": point[1], "values": {point[0]: point[2]}}
                if name == "line":
                    assert line.ask(orjson.dumps(doc).decode()).startswith("{")
                else:
                    url = f"{server.base_url}/api/v1/{devices['http'].token}/telemetry"
                    assert httpx.post(url, json=doc).status_code == 200
            else:
                info.wait_for_publish(30)
            ledger.ack(name, point)
        send_all("after")
        line.close()
        mqtt5.close()
        mqtt3.close()
    finally:
        server.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert any("is full" in m and "free space" in m for m in messages), messages
    assert not any("cannot rollback" in m for m in messages), messages
    again = ServerThread(data).start()  # after a restart: each point once, under its own key
    try:
        for name, device in devices.items():
            assert stored(again, device) == ledger.acked[name], name
    finally:
        again.stop()
    assert orphaned_points(data / "tinyboard.db") == 0


def _poison_forever(server: ServerThread, line_token: str, http_token: str, stop: Any) -> Any:
    """Send NUL keys over the line protocol and HTTP until `stop`; returns the odd answers."""
    odd: list[str] = []
    with LineClient(server.line_port) as line:
        line.ask(f"TOKEN {line_token}")
        while not stop.is_set():
            answer = line.ask("a\x00b=1 ok=2")
            if not answer.startswith("ERROR keys cannot contain NUL"):
                odd.append(answer)
            response = httpx.post(
                f"{server.base_url}/api/v1/{http_token}/telemetry", json={"a\x00b": 1}
            )
            if response.status_code != 400 or "NUL" not in response.text:
                odd.append(f"{response.status_code} {response.text}")
    return odd


def test_a_nul_key_from_one_device_never_costs_another_device_its_connection(
    server_on_each_store: ServerThread,
) -> None:
    server = server_on_each_store
    good, line, http, mqtt = (server.add_device(n) for n in ("good", "line", "http", "mqtt"))
    victim = Watched(server.mqtt_port, good.token, V311)  # v3: any failed commit drops it
    refused: queue.Queue[int] = queue.Queue()
    bad = Device(server.mqtt_port, mqtt.token, protocol=V5)
    bad.client.on_publish = lambda c, u, mid, rc, props: refused.put(rc.value)
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poisoner = pool.submit(_poison_forever, server, line.token, http.token, stop)
        sent = [victim.send({"ts": 10 + i, "values": {"n": i}}) for i in range(300)]
        for _ in range(20):
            bad.client.publish(TELEMETRY, b'{"a\\u0000b": 1}', qos=1)
        for info in sent:
            info.wait_for_publish(20)
        stop.set()
        odd_answers = poisoner.result(30)
    assert victim.why.empty(), "the victim lost its connection"
    assert odd_answers == []
    assert [refused.get(timeout=10) for _ in range(20)] == [0x99] * 20  # payload format invalid
    assert all(info.is_published() for info in sent)
    points = server.call(
        server.server.store.history(good.key, "n", start_ts=0, end_ts=10**6, limit=1000)
    )
    assert len(points) == 300
    for client in (victim, bad):
        client.close()
