"""Devices download their OTA package with ThingsBoard's own clients against a real
tinyboard, on SQLite and on PostgreSQL: tb-mqtt-client's firmware flow over MQTT (chunks,
checksum verified by the SDK, fw_state reported), its HTTP client (whole file and chunks),
and the bad requests: a chunk over --ota-max-chunk, a request id that is not a number, a
chunk past the end, no package, a stale title or version."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tb_device_http import TBHTTPDevice
from tb_device_mqtt import TBDeviceMqttClient
from tb_rest_client.models.models_ce import Device as TbDevice
from tb_rest_client.models.models_ce import DeviceProfile, OtaPackageId, OtaPackageInfo
from tb_rest_client.rest_client_ce import RestClientCE

from tests.helpers import ServerThread
from tests.mqtt_clients import V5
from tests.mqtt_clients import Device as Board
from tests.test_tb_rest_ota import new_info, profile, upload
from tests.web_helpers import login
from tinyboard.core.models import Device
from tinyboard.core.ota_download import parse_size
from tinyboard.errors import PayloadError

TIMEOUT = 30
CHUNK = 16384


@pytest.fixture
def server(server_on_each_store: ServerThread) -> ServerThread:
    return server_on_each_store


@pytest.fixture
def client(server: ServerThread) -> Iterator[RestClientCE]:
    rest = RestClientCE(base_url=server.base_url)
    rest.login(*server.admin)
    yield rest
    rest.stop()


def assigned(
    client: RestClientCE, server: ServerThread, tmp_path: Path, data: bytes, **kw: Any
) -> tuple[Device, OtaPackageInfo, DeviceProfile]:
    """A device of a new profile that runs a package holding `data`."""
    boards = profile(client, "boards")
    info = upload(client, new_info(client, boards.id, **kw), data, tmp_path)
    field = "software_id" if kw.get("type") == "SOFTWARE" else "firmware_id"
    setattr(boards, field, OtaPackageId(info.id.id, "OTA_PACKAGE"))
    client.save_device_profile(boards)
    return board(client, server, "board-1", boards), info, boards


def board(client: RestClientCE, server: ServerThread, name: str, boards: DeviceProfile) -> Device:
    """A device of `boards` saved over REST, so it is told what to run, as in ThingsBoard."""
    made = client.save_device(TbDevice(name=name, device_profile_id=boards.id))
    return server.call(server.server.store.get_device(made.id.id))


def states(server: ServerThread, device: Device, key: str = "fw_state") -> list[Any]:
    response = httpx.get(
        f"{server.base_url}/api/plugins/telemetry/DEVICE/{device.id}/values/timeseries",
        params={"keys": key, "startTs": 0, "endTs": 2**62, "limit": 100, "orderBy": "ASC"},
        headers=login(server),
    )
    assert response.status_code == 200, response.text
    return [point["value"] for point in response.json().get(key, [])]


def wait_for_state(server: ServerThread, device: Device, state: str) -> list[Any]:
    deadline = time.monotonic() + TIMEOUT
    while (seen := states(server, device))[-1:] != [state]:
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    return seen


def test_the_sdk_downloads_firmware_in_chunks_verifies_it_and_reports_its_states(
    client: RestClientCE, server: ServerThread, tmp_path: Path
) -> None:
    data = os.urandom(5 * CHUNK + 123)
    device, info, _ = assigned(client, server, tmp_path, data)
    sdk = TBDeviceMqttClient(
        "127.0.0.1", port=server.mqtt_port, username=device.token, chunk_size=CHUNK
    )
    received: list[bytes] = []

    def on_received(sdk: TBDeviceMqttClient, firmware: bytes, version: str) -> None:
        received.append(firmware)
        sdk.update_firmware_info(state=sdk_state("UPDATING"))
        sdk.update_firmware_info(info.title, version, sdk_state("UPDATED"))

    sdk.set_on_firmware_received_callback(on_received)
    sdk.connect()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not sdk.is_connected():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        sdk.get_firmware_update()
        seen = wait_for_state(server, device, "UPDATED")
    finally:
        sdk.stop()
        sdk.disconnect()
        sdk._client._reset_sockets()
    assert received == [data]
    assert seen == ["QUEUED", "INITIATED", "IDLE", "DOWNLOADING", "DOWNLOADED", "VERIFIED",
                    "UPDATING", "UPDATED"]  # fmt: skip
    assert states(server, device, "current_fw_version")[-1] == "1.0"


def sdk_state(name: str) -> Any:
    from tb_device_mqtt import TBFirmwareState

    return TBFirmwareState[name]


@pytest.mark.parametrize("chunk_size", [0, CHUNK])
def test_the_http_sdk_downloads_firmware_whole_or_in_chunks(
    client: RestClientCE,
    server: ServerThread,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    chunk_size: int,
) -> None:
    data = os.urandom(3 * 65536 + 7)  # over --ota-max-chunk: a whole file is streamed
    device, _, _ = assigned(client, server, tmp_path, data, title="http-fw")
    files = tmp_path / "device"
    files.mkdir()
    monkeypatch.chdir(files)  # the SDK writes the firmware to a file named by its title
    http = TBHTTPDevice(server.base_url, device.token, chunk_size=chunk_size)
    # what the board runs now (the SDK starts from None, which is not a telemetry value)
    http.current_firmware_info = {"current_fw_title": "Initial", "current_fw_version": "v0"}
    assert http.connect()
    try:
        http.get_firmware_update()
        wait_for_state(server, device, "UPDATED")
    finally:
        http.stop_publish_worker()
    assert (files / "http-fw").read_bytes() == data


def test_http_chunks_limits_and_errors_follow_thingsboard(
    client: RestClientCE, server: ServerThread, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    device, info, _ = assigned(client, server, tmp_path, data)
    url = f"{server.base_url}/api/v1/{device.token}/firmware"
    asked = {"title": "fw", "version": "1.0"}
    whole = httpx.get(url, params=asked)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-length"] == str(len(data))
    second = httpx.get(url, params={**asked, "size": 65536, "chunk": 1})
    assert second.status_code == 200 and second.content == data[65536:]
    past = httpx.get(url, params={**asked, "size": 65536, "chunk": 2})
    assert past.status_code == 200 and past.content == b""

    too_big = httpx.get(url, params={**asked, "size": 65537})
    assert too_big.status_code == 400 and "65536-byte limit" in too_big.json()["message"]
    stale = httpx.get(url, params={"title": "fw", "version": "0.9"})
    assert stale.status_code == 400 and "fw_version" in stale.json()["message"]
    assert httpx.get(url, params={"title": "fw"}).status_code == 400  # version is required
    assert httpx.get(url, params={**asked, "size": -1}).status_code == 400
    software = httpx.get(f"{server.base_url}/api/v1/{device.token}/software", params=asked)
    assert software.status_code == 404 and "no software" in software.json()["message"]
    assert httpx.get(f"{server.base_url}/api/v1/nope/firmware", params=asked).status_code == 401
    assert hashlib.sha256(httpx.get(url, params=asked).content).hexdigest() == info.checksum
    # TBHTTPDevice asks `sharedKeys=a&sharedKeys=b`: Spring reads that as "a,b"
    attributes = httpx.get(
        f"{server.base_url}/api/v1/{device.token}/attributes",
        params=[("sharedKeys", "fw_title"), ("sharedKeys", "fw_version,fw_size")],
    )
    assert attributes.json() == {"shared": {"fw_title": "fw", "fw_version": "1.0",
                                            "fw_size": len(data)}}  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "size"), [(b"", None), (b"0", None), (b" 1024\n", 1024), (b"65536", 65536)]
)
def test_an_mqtt_chunk_size_is_read_as_thingsboard_reads_it(
    payload: bytes, size: int | None
) -> None:
    assert parse_size(payload) == size


@pytest.mark.parametrize("payload", [b"-1", b"1e3", b"abc", b"12345678901", "٣".encode()])
def test_an_mqtt_chunk_size_that_is_not_a_number_is_a_bad_payload(payload: bytes) -> None:
    with pytest.raises(PayloadError, match="chunk size in bytes as text"):
        parse_size(payload)


def test_mqtt_errors_follow_thingsboard_and_leave_other_devices_alone(
    client: RestClientCE, server: ServerThread, tmp_path: Path
) -> None:
    data = os.urandom(70_000)
    device, _, boards = assigned(client, server, tmp_path, data)
    other = board(client, server, "board-2", boards)
    bare = server.add_device("bare")  # the default profile: no package
    watcher = Board(server.mqtt_port, other.token, protocol=V5)
    try:
        # chunks, a remembered size, the end, past the end
        a = Board(server.mqtt_port, device.token, protocol=V5)
        assert [int(r.value) for r in a.subscribe("v2/fw/response/+/chunk/+")] == [1]
        a.publish("v2/fw/request/1/chunk/0", b"65536")
        first = a.next_message()
        assert (first.topic, first.payload) == ("v2/fw/response/1/chunk/0", data[:65536])
        a.publish("v2/fw/request/1/chunk/1", b"")
        assert a.next_message().payload == data[65536:]
        a.publish("v2/fw/request/1/chunk/0", b"0")  # 0 is no size, as in ThingsBoard
        assert a.next_message().payload == data[:65536]
        a.publish("v2/fw/request/1/chunk/5", b"")
        past = a.next_message()
        assert (past.topic, past.payload) == ("v2/fw/response/1/chunk/5", b"")
        # a request id that is not a number: an unknown topic (0x90), the session goes on
        info = a.publish("v2/fw/request/x/chunk/0", b"1024")
        assert info.is_published()
        a.publish("v2/fw/request/2/chunk/0", b"1000")
        assert a.next_message().payload == data[:1000]
        # a whole file over the limit of one message, then a chunk over it: the error, closed
        a.publish("v2/fw/request/3/chunk/0", b"", qos=0)
        error = a.next_message()
        assert (error.topic, error.payload) == ("v2/fw/error", b"PAYLOAD_TOO_LARGE")
        a.disconnected.get(timeout=10)
        a.close()

        b = Board(server.mqtt_port, device.token, protocol=V5)
        b.publish("v2/fw/request/1/chunk/0", b"65537", qos=0)
        assert b.next_message().payload == b"PAYLOAD_TOO_LARGE"
        b.disconnected.get(timeout=10)
        b.close()

        c = Board(server.mqtt_port, bare.token)
        c.publish("v2/sw/request/1/chunk/0", b"1024", qos=0)
        error = c.next_message()
        assert (error.topic, error.payload) == ("v2/fw/error", b"NOT_FOUND")
        c.disconnected.get(timeout=10)
        c.close()

        # the other device of the profile was never disturbed
        watcher.publish("v2/fw/request/7/chunk/1", b"60000")
        assert watcher.next_message().payload == data[60000:]
    finally:
        watcher.close()


def test_software_downloads_as_firmware_does(
    client: RestClientCE, server: ServerThread, tmp_path: Path
) -> None:
    data = os.urandom(40_000)
    device, _, _ = assigned(client, server, tmp_path, data, title="app", type="SOFTWARE")
    board_ = Board(server.mqtt_port, device.token)
    try:
        board_.publish("v2/sw/request/1/chunk/1", b"30000")
        answer = board_.next_message()
        assert (answer.topic, answer.payload) == ("v2/sw/response/1/chunk/1", data[30000:])
        board_.publish("v2/sw/request/2/chunk/0", b"")  # the whole file: under the limit
        assert board_.next_message().payload == data
    finally:
        board_.close()
    url = f"{server.base_url}/api/v1/{device.token}/software"
    assert httpx.get(url, params={"title": "app", "version": "1.0"}).content == data
    firmware = httpx.get(f"{server.base_url}/api/v1/{device.token}/firmware",
                         params={"title": "app", "version": "1.0"})  # fmt: skip
    assert firmware.status_code == 404


def test_devices_downloading_2_mb_at_once_keep_memory_bounded(
    client: RestClientCE, server: ServerThread, tmp_path: Path
) -> None:
    """Eight devices fetch a 2 MiB package in 64 KiB chunks at once (16 MiB sent): the
    process's Python allocations (server and clients together) peak at a few chunks."""
    data = os.urandom(2 * 1024 * 1024)
    device, _, boards = assigned(client, server, tmp_path, data)
    devices = [device] + [board(client, server, f"board-{n}", boards) for n in range(2, 9)]
    clients = [Board(server.mqtt_port, d.token) for d in devices]
    digests: list[str] = []

    def fetch(board_: Board) -> None:
        digest = hashlib.sha256()
        for n in range(len(data) // 65536):
            board_.publish(f"v2/fw/request/1/chunk/{n}", b"65536")
            digest.update(board_.next_message().payload)
        digests.append(digest.hexdigest())

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        threads = [threading.Thread(target=fetch, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT * 4)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
        for c in clients:
            c.close()
    assert digests == [hashlib.sha256(data).hexdigest()] * len(devices)
    assert peak < 6 * 1024 * 1024, peak  # whole files held would be 16 MiB and more
