"""Issue 13.5–13.8: one MQTT or line client cannot hurt the others, nor hold memory for ever.

Before: 120,000 QoS 0 attribute requests from one device took RSS from 148 to 733 MB (a task
each, the socket never paused) and delayed another device's PUBACKs by 7–13 s; a device with
its own token and another device's client id kicked that device off; one byte every 2 s kept
a connection in CONNECT for ever; with keep-alive 0 an unfinished PUBLISH was held for ever;
idle line connections were never reclaimed; the listen backlog was 100.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.helpers import LineClient, ServerThread
from tests.mqtt_clients import V5, V311, Device, raw_connect
from tinyboard.mqtt.codec import encode
from tinyboard.mqtt.packets import MQTT_3_1_1, MQTT_5, Connect, Publish
from tinyboard.transports.mqtt import MAX_PENDING_READS

TELEMETRY = "v1/devices/me/telemetry"


def start(tmp_path: Path, **overrides: object) -> ServerThread:
    return ServerThread(tmp_path / "data", **overrides).start()


@pytest.fixture
def unlimited(tmp_path: Path) -> Iterator[ServerThread]:
    """No rate limits: what is left to protect the others is bounded work per connection."""
    running = start(tmp_path, device_rate_limit="off")
    try:
        yield running
    finally:
        running.stop()


def raw_client(
    port: int, token: str, version: int = MQTT_3_1_1, keep_alive: int = 60
) -> socket.socket:
    connect = Connect(client_id="", username=token, keep_alive=keep_alive, protocol_level=version)
    return raw_connect(port, connect, version)


def closed_within(sock: socket.socket, seconds: float) -> bytes:
    """Read until the server closes the connection; everything it sent on the way."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def attribute_flood(sock: socket.socket, n: int, version: int = MQTT_3_1_1) -> None:
    request = encode(
        Publish(topic="v1/devices/me/attributes/request/1", payload=b'{"sharedKeys":"a"}', qos=0),
        version,
    )
    try:
        for _ in range(n // 1000):
            sock.sendall(request * 1000)
    except OSError:  # the server may close a flooder
        pass


def test_an_attribute_request_flood_is_bounded_and_others_keep_their_pace(
    unlimited: ServerThread,
) -> None:
    server = unlimited
    flooder, victim = server.add_device("flooder"), server.add_device("victim")
    sock = raw_client(server.mqtt_port, flooder.token)
    ok = Device(server.mqtt_port, victim.token, client_id="victim")
    most_tasks = 0
    flooding = threading.Thread(target=attribute_flood, args=(sock, 60_000))
    flooding.start()
    try:
        for i in range(50):
            ok.publish(TELEMETRY, orjson.dumps({"i": i}))  # waits for each PUBACK
            tasks = server.on_loop(lambda: len(server.server.mqtt.tasks))
            most_tasks = max(most_tasks, tasks)
        flooding.join(60)
    finally:
        sock.close()
        ok.close()
    # the sweeper, and at most MAX_PENDING_READS answers (each may still be finishing when
    # the one it made room for starts); before, a task per request: thousands
    assert most_tasks <= 2 * MAX_PENDING_READS + 1
    latest = server.call(server.server.store.latest(victim.key))
    assert latest["i"][1] == 49


def test_a_device_over_its_rate_limit_is_disconnected_as_thingsboard_does(tmp_path: Path) -> None:
    server = start(tmp_path, device_rate_limit="100:60")
    try:
        flooder, other = server.add_device("flooder"), server.add_device("other")
        sock = raw_client(server.mqtt_port, flooder.token, MQTT_5)
        attribute_flood(sock, 1000, MQTT_5)
        received = closed_within(sock, 10)
        sock.close()
        # DISCONNECT 0x83 with a reason string naming the limit
        assert b"\xe0" in received
        tail = received[received.rindex(b"\xe0") :]
        assert tail[2] == 0x83
        assert b"100:60" in tail
        answers = received.count(b"v1/devices/me/attributes/response/1")
        assert 0 < answers <= 100
        # another device is not counted against the flooder's limit
        ok = Device(server.mqtt_port, other.token, client_id="other")
        try:
            ok.publish(TELEMETRY, '{"fine": 1}')
            assert ok.disconnected.empty()
        finally:
            ok.close()
    finally:
        server.stop()


def test_http_and_line_devices_over_the_limit_are_told_so(tmp_path: Path) -> None:
    server = start(tmp_path, device_rate_limit="3:60")
    try:
        device = server.add_device("chatty")
        url = f"{server.base_url}/api/v1/{device.token}/telemetry"
        codes = [httpx.post(url, json={"n": i}).status_code for i in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = httpx.post(url, json={"n": 4})
        assert refused.headers["retry-after"] == "1"
        assert "3:60" in refused.json()["message"]
        other = server.add_device("line-chatty")
        with LineClient(server.line_port) as client:
            assert client.ask(f"TOKEN {other.token}").startswith("OK")
            replies = [client.ask(f"n={i}") for i in range(4)]
        assert replies[:3] == ["N=0", "N=1", "N=2"]
        assert replies[3].startswith("ERROR too many readings") and "3:60" in replies[3]
        stored = server.call(server.server.store.latest(other.key))
        assert stored["n"][1] == 2
    finally:
        server.stop()


@pytest.mark.parametrize("protocol", [V311, V5])
def test_a_client_id_is_taken_over_only_within_one_device(
    unlimited: ServerThread, protocol: int
) -> None:
    server = unlimited
    a, b = server.add_device("a"), server.add_device("b")
    victim = Device(server.mqtt_port, b.token, protocol=protocol, client_id="board-7")
    intruder = Device(server.mqtt_port, a.token, protocol=protocol, client_id="board-7")
    try:
        victim.publish(TELEMETRY, '{"still": "here"}')
        intruder.publish(TELEMETRY, '{"mine": 1}')
        assert victim.disconnected.empty() and intruder.disconnected.empty()
        # the same device reconnecting with its client id still takes its session over
        again = Device(server.mqtt_port, b.token, protocol=protocol, client_id="board-7")
        victim.disconnected.get(timeout=10)
        again.close()
    finally:
        victim.close()
        intruder.close()
    assert server.call(server.server.store.latest(b.key))["still"][1] == "here"


def test_a_connect_dribbled_byte_by_byte_is_cut_at_the_deadline(unlimited: ServerThread) -> None:
    server = unlimited

    def shorten() -> None:
        server.server.mqtt.connect_timeout = 1.0

    server.on_loop(shorten)
    device = server.add_device("slow")
    packet = encode(Connect(client_id="slow", username=device.token, keep_alive=60), MQTT_3_1_1)
    sock = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=10)
    cut = False
    try:
        for byte in packet:  # ~8 s in all, each byte well inside the old per-byte deadline
            sock.sendall(bytes([byte]))
            time.sleep(0.15)
    except OSError:
        cut = True
    if not cut:
        cut = closed_within(sock, 5) == b""
    sock.close()
    assert cut


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_an_unfinished_packet_is_not_held_for_ever_with_keepalive_0(
    tmp_path: Path, version: int
) -> None:
    server = start(tmp_path, packet_timeout=1.0)
    try:
        device = server.add_device("partial")
        sock = raw_client(server.mqtt_port, device.token, version, keep_alive=0)
        publish = encode(Publish(topic=TELEMETRY, payload=b'{"a": 1}' * 100, qos=0), version)
        sock.sendall(publish[:-10])
        assert closed_within(sock, 10) in (b"", b"\xe0\x01\x8d")
        sock.close()
        # an idle connection with keep-alive 0 (nothing half-sent) is left alone
        idle = raw_client(server.mqtt_port, device.token, version, keep_alive=0)
        time.sleep(2)
        idle.sendall(encode(Publish(topic=TELEMETRY, payload=b'{"b": 2}', qos=0), version))
        idle.close()
        time.sleep(0.5)
        assert server.call(server.server.store.latest(device.key))["b"][1] == 2
    finally:
        server.stop()


def test_idle_and_unfinished_line_connections_are_reclaimed(tmp_path: Path) -> None:
    server = start(tmp_path, line_idle_timeout=1.0, packet_timeout=1.0)
    try:
        with LineClient(server.line_port) as idle:
            assert idle.ask("hello") == "HELLO"
            assert idle.recv() == "ERROR nothing arrived for 1 s; closing (connect again)"
            assert idle.at_eof()
        with LineClient(server.line_port) as half:
            half.send("temperature=2")  # no newline, ever
            assert half.recv() == "ERROR a line stayed unfinished for 1 s; closing (connect again)"
            assert half.at_eof()
        assert server.on_loop(lambda: len(server.server.line.connections)) == 0
    finally:
        server.stop()


def test_listeners_use_the_system_maximum_backlog(unlimited: ServerThread) -> None:
    server = unlimited
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    listing = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    for port in (server.line_port, server.mqtt_port, server.http_port):
        [line] = [row for row in listing.splitlines() if re.search(rf":{port}\s", row)]
        backlog = int(line.split()[2])  # Send-Q of a listening socket is its backlog
        assert backlog == min(65535, somaxconn) > 100
