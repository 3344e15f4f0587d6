"""The ThingsBoard device API over MQTT, against real paho-mqtt clients (3.1.1 and 5)."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import orjson
import pytest

from tests.helpers import ServerThread
from tests.mqtt_clients import V5, V311, VERSIONS, Device, raw_connect
from tinyboard.core.models import Device as DeviceRecord
from tinyboard.core.rpc import DeviceOffline, RpcTimeout
from tinyboard.mqtt.codec import encode, split_frame
from tinyboard.mqtt.packets import MQTT_3_1_1, MQTT_5, Connect, Publish

TELEMETRY = "v1/devices/me/telemetry"


def wait_for(condition: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def stored(server: ServerThread, device: DeviceRecord) -> dict[str, Any]:
    latest = server.call(server.server.store.latest(device.key))
    return {k: v for k, (_, v) in latest.items()}


def history(server: ServerThread, device: DeviceRecord, key: str) -> list[tuple[int, Any]]:
    store = server.server.store
    return server.call(store.history(device.key, key, start_ts=0, end_ts=2**62, limit=10_000))


@pytest.mark.parametrize("protocol", VERSIONS)
def test_telemetry_in_every_payload_shape(server: ServerThread, protocol: int) -> None:
    device = server.add_device("shapes")
    dev = Device(server.mqtt_port, device.token, protocol=protocol)
    try:
        before = int(time.time() * 1000)
        dev.publish(TELEMETRY, '{"temperature": 21.5, "ok": true, "name": "k", "n": 7}')
        dev.publish(TELEMETRY, '[{"humidity": 40}, {"pressure": 1013.2}]')
        dev.publish(TELEMETRY, '{"ts": 1451649600512, "values": {"old": 1}}')
        dev.publish(
            TELEMETRY, '[{"ts": 1000, "values": {"s": 1}}, {"ts": 2000, "values": {"s": 2}}]'
        )
        dev.publish(TELEMETRY, '{"cfg": {"a": [1, 2]}}')
        after = int(time.time() * 1000)
    finally:
        dev.close()
    values = stored(server, device)
    assert values == {
        "temperature": 21.5,
        "ok": True,
        "name": "k",
        "n": 7,
        "humidity": 40,
        "pressure": 1013.2,
        "old": 1,
        "s": 2,
        "cfg": {"a": [1, 2]},
    }
    assert history(server, device, "s") == [(2000, 2), (1000, 1)]
    assert history(server, device, "old") == [(1451649600512, 1)]
    [(ts, _)] = history(server, device, "temperature")
    assert before <= ts <= after + 5


@pytest.mark.parametrize("protocol", VERSIONS)
def test_qos0_and_qos1(server: ServerThread, protocol: int) -> None:
    device = server.add_device("qos")
    dev = Device(server.mqtt_port, device.token, protocol=protocol)
    try:
        for i in range(50):
            dev.publish(TELEMETRY, orjson.dumps({"q0": i}), qos=0)
        infos = [dev.client.publish(TELEMETRY, orjson.dumps({"q1": i}), qos=1) for i in range(50)]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
        # PUBACK means committed: the QoS 1 readings are all there at once.
        assert len(history(server, device, "q1")) == 50
        wait_for(lambda: len(history(server, device, "q0")) == 50)
    finally:
        dev.close()


@pytest.fixture
def server(server_on_each_store: ServerThread) -> ServerThread:
    """Every test here runs on SQLite and on PostgreSQL."""
    return server_on_each_store


def test_client_attributes_are_stored(server: ServerThread) -> None:
    device = server.add_device("attrs")
    dev = Device(server.mqtt_port, device.token)
    try:
        dev.publish("v1/devices/me/attributes", '{"firmware": "1.2.3", "battery": 97}')
    finally:
        dev.close()
    attributes = server.call(server.server.store.attributes(device.key, "CLIENT"))
    assert {k: v for k, (_, v) in attributes.items()} == {"firmware": "1.2.3", "battery": 97}


@pytest.mark.parametrize("protocol", VERSIONS)
def test_attribute_request(server: ServerThread, protocol: int) -> None:
    device = server.add_device("areq")
    server.call(server.server.attributes.update_shared(device, {"interval": 30, "mode": "eco"}))
    dev = Device(server.mqtt_port, device.token, protocol=protocol)
    try:
        dev.publish("v1/devices/me/attributes", '{"fw": "1.0"}')
        assert dev.subscribe("v1/devices/me/attributes/response/+") == [1]
        dev.publish(
            "v1/devices/me/attributes/request/7",
            '{"clientKeys": "fw", "sharedKeys": "interval,missing"}',
        )
        msg = dev.next_message()
        assert msg.topic == "v1/devices/me/attributes/response/7"
        assert orjson.loads(msg.payload) == {"client": {"fw": "1.0"}, "shared": {"interval": 30}}
        dev.publish("v1/devices/me/attributes/request/8", "{}")
        everything = orjson.loads(dev.next_message().payload)
        assert everything == {"client": {"fw": "1.0"}, "shared": {"interval": 30, "mode": "eco"}}
    finally:
        dev.close()


@pytest.mark.parametrize("protocol", VERSIONS)
def test_shared_attribute_updates_are_pushed(server: ServerThread, protocol: int) -> None:
    device = server.add_device("push")
    dev = Device(server.mqtt_port, device.token, protocol=protocol)
    try:
        assert dev.subscribe("v1/devices/me/attributes") == [1]
        server.call(server.server.attributes.update_shared(device, {"interval": 5}))
        msg = dev.next_message()
        assert (msg.topic, orjson.loads(msg.payload), msg.qos) == (
            "v1/devices/me/attributes",
            {"interval": 5},
            1,
        )
    finally:
        dev.close()
    shared = server.call(server.server.store.attributes(device.key, "SHARED"))
    assert shared["interval"][1] == 5


@pytest.mark.parametrize("protocol", VERSIONS)
def test_server_side_rpc(server: ServerThread, protocol: int) -> None:
    device = server.add_device("rpc")
    dev = Device(server.mqtt_port, device.token, protocol=protocol)

    def answer(client: Any, _: Any, msg: Any) -> None:
        request = orjson.loads(msg.payload)
        request_id = msg.topic.rsplit("/", 1)[1]
        if request["method"] == "getReading":
            reply = {"temperature": 22.5, "echo": request["params"]}
            client.publish(f"v1/devices/me/rpc/response/{request_id}", orjson.dumps(reply), qos=1)
        dev.messages.put(msg)

    dev.client.on_message = answer
    rpc = server.server.rpc
    try:
        with pytest.raises(DeviceOffline):
            server.call(rpc.call(device.id, "getReading"))
        assert dev.subscribe("v1/devices/me/rpc/request/+") == [1]
        reply = server.call(rpc.call(device.id, "getReading", {"unit": "C"}))
        assert reply == {"temperature": 22.5, "echo": {"unit": "C"}}
        assert server.call(rpc.call(device.id, "setLed", {"on": True}, oneway=True)) is None
        seen = [orjson.loads(dev.next_message().payload) for _ in range(2)]
        assert seen[1] == {"method": "setLed", "params": {"on": True}}
        with pytest.raises(RpcTimeout):
            server.call(rpc.call(device.id, "neverAnswered", timeout=0.3))
    finally:
        dev.close()
    with pytest.raises(DeviceOffline):
        wait_for(lambda: not server.on_loop(lambda: server.server.hub.is_connected(device.id)))
        server.call(rpc.call(device.id, "getReading"))


@pytest.mark.parametrize("protocol", VERSIONS)
def test_client_side_rpc_get_session_limits(server: ServerThread, protocol: int) -> None:
    device = server.add_device("crpc")
    dev = Device(server.mqtt_port, device.token, protocol=protocol)
    try:
        dev.subscribe("v1/devices/me/rpc/response/+")
        dev.publish("v1/devices/me/rpc/request/3", '{"method": "getSessionLimits", "params": {}}')
        msg = dev.next_message()
        assert msg.topic == "v1/devices/me/rpc/response/3"
        limits = orjson.loads(msg.payload)
        assert limits["maxPayloadSize"] == 65536 and "rateLimits" in limits
        dev.publish("v1/devices/me/rpc/request/4", '{"method": "reboot"}')
        assert "unsupported method" in orjson.loads(dev.next_message().payload)["error"]
    finally:
        dev.close()


@pytest.mark.parametrize(
    ("protocol", "token", "code"),
    # paho reports MQTT 3 return codes as MQTT 5 reasons: 5 → 0x87, 4 → 0x86.
    [(V311, "wrong-token", 0x87), (V311, None, 0x86), (V5, "wrong-token", 0x86), (V5, None, 0x86)],
)
def test_bad_or_missing_token_is_refused(
    server: ServerThread, protocol: int, token: str | None, code: int
) -> None:
    dev = Device(server.mqtt_port, token, protocol=protocol)
    try:
        assert dev.connack.value == code
        dev.disconnected.get(timeout=10)
    finally:
        dev.client.loop_stop()


@pytest.mark.parametrize(
    ("username", "connack"),
    [("wrong-token", b"\x20\x02\x00\x05"), ("", b"\x20\x02\x00\x04")],
)
def test_v3_refusals_on_the_wire(server: ServerThread, username: str, connack: bytes) -> None:
    sock = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=10)
    sock.sendall(encode(Connect(client_id="x", username=username), MQTT_3_1_1))
    assert sock.recv(10) == connack
    assert sock.recv(10) == b""
    sock.close()


@pytest.mark.parametrize("qos", [0, 1])
def test_bad_json_closes_a_v3_session(server: ServerThread, qos: int) -> None:
    device = server.add_device(f"badjson3-{qos}")
    dev = Device(server.mqtt_port, device.token, protocol=V311)
    try:
        dev.client.publish(TELEMETRY, "{not json", qos=qos)
        dev.disconnected.get(timeout=10)
    finally:
        dev.client.loop_stop()
    assert stored(server, device) == {}


def test_bad_json_gets_puback_0x99_on_v5(server: ServerThread) -> None:
    device = server.add_device("badjson5")
    dev = Device(server.mqtt_port, device.token, protocol=V5)
    acks: list[int] = []
    dev.client.on_publish = lambda c, u, mid, rc, p: acks.append(rc.value)
    try:
        dev.publish(TELEMETRY, "{not json")
        dev.publish(TELEMETRY, '{"k": null}')
        dev.publish(TELEMETRY, '{"t": 1}')
        wait_for(lambda: len(acks) == 3)
        assert acks == [0x99, 0x99, 0]
        assert dev.disconnected.empty()
    finally:
        dev.close()
    assert stored(server, device) == {"t": 1}


def test_bad_json_at_qos0_on_v5_gets_disconnect_0x99(server: ServerThread) -> None:
    """No packet id to answer, so the session ends, with the reason (ThingsBoard's
    MqttTransportHandler.sendResponseForAdaptorErrorOrCloseContext)."""
    device = server.add_device("badjson5-qos0")
    dev = Device(server.mqtt_port, device.token, protocol=V5)
    why: list[str] = []
    dev.client.on_disconnect = lambda c, u, f, rc, p: (
        why.append(getattr(p, "ReasonString", "")),
        dev.disconnected.put(rc),
    )
    try:
        dev.publish(TELEMETRY, '{"before": 1}')
        dev.client.publish(TELEMETRY, "{not json", qos=0)
        assert dev.disconnected.get(timeout=10).value == 0x99
    finally:
        dev.client.loop_stop()
    assert why[0].startswith("payload on v1/devices/me/telemetry refused: invalid JSON")
    assert stored(server, device) == {"before": 1}


def test_bad_json_at_qos0_on_v5_on_the_wire(server: ServerThread) -> None:
    device = server.add_device("badjson5-wire")
    connect = Connect(client_id="w", username=device.token, protocol_level=MQTT_5)
    sock = raw_connect(server.mqtt_port, connect, MQTT_5)
    sock.sendall(encode(Publish(topic=TELEMETRY, payload=b"{not json"), MQTT_5))
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    sock.close()
    header, size = split_frame(data, 1 << 16) or (0, 0)
    assert data[0] == 0xE0 and data[header] == 0x99  # DISCONNECT, payload format invalid
    assert size == len(data)  # and nothing after it: the connection closed


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_unknown_publish_topic_on_v3_is_acked_and_the_session_goes_on(
    server: ServerThread, qos: int
) -> None:
    """ThingsBoard (MqttTransportHandler.processDevicePublish) acks a topic it does not
    have and keeps the session; MQTT 3 PUBACKs carry no reason."""
    device = server.add_device(f"topic3-{qos}")
    dev = Device(server.mqtt_port, device.token, protocol=V311)
    try:
        info = dev.publish("some/other/topic", '{"lost": 1}', qos=qos)
        assert qos == 0 or info.is_published()
        dev.publish(TELEMETRY, '{"after": 2}')
        assert dev.disconnected.empty()
    finally:
        dev.close()
    assert stored(server, device) == {"after": 2}


def test_unknown_publish_topic_on_v3_on_the_wire(server: ServerThread) -> None:
    device = server.add_device("topic3-wire")
    version = MQTT_3_1_1
    sock = raw_connect(server.mqtt_port, Connect(client_id="w", username=device.token), version)
    unknown = Publish(topic="v1/devices/me/nothing", payload=b"{}", qos=1, packet_id=0x1234)
    sock.sendall(encode(unknown, version))
    assert sock.recv(4) == b"\x40\x02\x12\x34"  # a plain PUBACK with its packet id
    good = Publish(topic=TELEMETRY, payload=b'{"t": 3}', qos=1, packet_id=7)
    sock.sendall(encode(good, version))
    assert sock.recv(4) == b"\x40\x02\x00\x07"
    sock.close()
    assert stored(server, device) == {"t": 3}


def test_an_unknown_topic_is_named_in_the_log_once_with_the_right_one(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    """The device hears nothing (as from ThingsBoard), so the log says what went wrong."""
    caplog.set_level(logging.INFO, logger="tinyboard.transports.mqtt")
    device = server.add_device("typo")
    dev = Device(server.mqtt_port, device.token, protocol=V311)
    try:
        for _ in range(3):
            dev.publish("v1/devices/me/telemetry/", '{"t": 1}')
    finally:
        dev.close()
    told = [r.getMessage() for r in caplog.records if "nothing stored from topic" in r.message]
    assert told == [told[0]]
    assert told[0].endswith(
        "nothing stored from topic 'v1/devices/me/telemetry/': "
        "did you mean v1/devices/me/telemetry?"
    )


def test_a_refused_token_is_explained_in_the_log(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tinyboard.transports.mqtt")
    dev = Device(server.mqtt_port, "the-device-name", protocol=V311)
    dev.client.loop_stop()
    assert "unknown token; refused (the user name must be a device's access token" in caplog.text
    assert "the-device-name" not in caplog.text  # a token, even a wrong one, is not logged


@pytest.mark.parametrize("qos", [0, 1])
def test_unknown_publish_topic_on_v5_gets_0x90(server: ServerThread, qos: int) -> None:
    device = server.add_device(f"topic5-{qos}")
    dev = Device(server.mqtt_port, device.token, protocol=V5)
    acks: list[int] = []
    dev.client.on_publish = lambda c, u, mid, rc, p: acks.append(rc.value)
    try:
        dev.publish("v1/devices/me/nothing", "{}", qos=qos)
        dev.publish(TELEMETRY, '{"after": 2}')
        wait_for(lambda: len(acks) == 2)
        assert acks == [0x90 if qos else 0, 0]
        assert dev.disconnected.empty()
    finally:
        dev.close()
    assert stored(server, device) == {"after": 2}


@pytest.mark.parametrize("protocol", VERSIONS)
def test_unknown_subscription_fails_and_qos2_is_granted_1(
    server: ServerThread, protocol: int
) -> None:
    device = server.add_device("subs")
    dev = Device(server.mqtt_port, device.token, protocol=protocol)
    try:
        codes = dev.subscribe("v1/devices/me/rpc/request/+", qos=2)
        assert [c.value for c in codes] == [1]
        codes = dev.subscribe("not/a/thingsboard/topic", qos=1)
        assert [c.value for c in codes] == [0x80]
        assert dev.disconnected.empty()
    finally:
        dev.close()


def test_qos2_publish_v3_is_stored_once_and_completes(server: ServerThread) -> None:
    device = server.add_device("qos2")
    dev = Device(server.mqtt_port, device.token, protocol=V311)
    try:
        info = dev.publish(TELEMETRY, '{"ts": 5, "values": {"x": 1}}', qos=2)
        assert info.is_published()  # PUBREC, PUBREL and PUBCOMP all went through
    finally:
        dev.close()
    assert history(server, device, "x") == [(5, 1)]


def test_qos2_publish_v5_is_refused_per_spec(server: ServerThread) -> None:
    device = server.add_device("qos2v5")
    dev = Device(server.mqtt_port, device.token, protocol=V5)
    try:
        assert dev.connack.value == 0
        dev.client.publish(TELEMETRY, '{"x": 1}', qos=2)
        reason = dev.disconnected.get(timeout=10)
        assert reason.value == 0x9B  # QoS not supported: CONNACK said maximum QoS 1
    finally:
        dev.client.loop_stop()


@pytest.mark.parametrize("protocol", VERSIONS)
def test_oversized_packet_is_refused(tmp_path: Any, protocol: int) -> None:
    server = ServerThread(tmp_path / "big", max_packet=1024).start()
    try:
        device = server.add_device("big")
        bystander = Device(server.mqtt_port, device.token, protocol=V311, client_id="ok")
        dev = Device(server.mqtt_port, device.token, protocol=protocol, client_id="big")
        dev.client.publish(TELEMETRY, orjson.dumps({"blob": "x" * 2000}), qos=1)
        reason = dev.disconnected.get(timeout=10)
        if protocol == V5:
            assert reason.value == 0x95
        dev.client.loop_stop()
        bystander.publish(TELEMETRY, '{"fine": 1}')
        bystander.close()
        assert stored(server, device) == {"fine": 1}
    finally:
        server.stop()


def test_v5_connack_announces_limits(server: ServerThread) -> None:
    device = server.add_device("limits")
    dev = Device(server.mqtt_port, device.token, protocol=V5)
    props: list[Any] = dev.connack_properties
    try:
        assert props[0].MaximumQoS == 1
        assert props[0].MaximumPacketSize == 65536
        assert props[0].AssignedClientIdentifier.startswith("tinyboard-")
    finally:
        dev.close()


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_keepalive_is_enforced_at_one_and_a_half_times(server: ServerThread, version: int) -> None:
    device = server.add_device("ka")
    sock = raw_connect(
        server.mqtt_port,
        Connect(protocol_level=version, client_id="ka", username=device.token, keep_alive=1),
        version,
    )
    started = time.monotonic()
    rest = b""
    while chunk := sock.recv(100):
        rest += chunk
    elapsed = time.monotonic() - started
    sock.close()
    assert 1.4 <= elapsed <= 3.5
    if version == MQTT_5:
        assert rest == b"\xe0\x01\x8d"  # DISCONNECT, keep alive timeout


def test_session_takeover(server: ServerThread) -> None:
    device = server.add_device("takeover")
    first = Device(server.mqtt_port, device.token, protocol=V5, client_id="same")
    second = Device(server.mqtt_port, device.token, protocol=V5, client_id="same")
    try:
        assert first.disconnected.get(timeout=10).value == 0x8E  # session taken over
        first.client.loop_stop()
        second.publish(TELEMETRY, '{"after": 1}')
        assert second.disconnected.empty()
    finally:
        second.close()
    assert stored(server, device) == {"after": 1}


def test_one_device_errors_never_affect_another(server: ServerThread) -> None:
    good, bad = server.add_device("good"), server.add_device("bad")
    ok = Device(server.mqtt_port, good.token, client_id="good")
    try:
        for i in range(5):
            troublemaker = Device(server.mqtt_port, bad.token, client_id=f"bad{i}")
            troublemaker.client.publish(TELEMETRY, b"\xff\xfe garbage", qos=1)
            troublemaker.disconnected.get(timeout=10)
            troublemaker.client.loop_stop()
            ok.publish(TELEMETRY, orjson.dumps({"i": i}))
        garbage = socket.create_connection(("127.0.0.1", server.mqtt_port))
        garbage.sendall(b"\x10\xff\xff\xff\xff\x7f not mqtt at all")
        assert garbage.recv(10) == b""
        garbage.close()
        ok.publish(TELEMETRY, '{"last": true}')
        assert ok.disconnected.empty()
    finally:
        ok.close()
    assert stored(server, good) == {"i": 4, "last": True}
    assert stored(server, bad) == {}


def test_mqtt_clients_are_in_the_registry(server: ServerThread) -> None:
    device = server.add_device("reg")
    dev = Device(server.mqtt_port, device.token)
    try:
        dev.publish(TELEMETRY, '{"a": 1}')
        clients = server.on_loop(lambda: [c.as_dict() for c in server.server.registry])
        [mine] = [c for c in clients if c["transport"] == "mqtt"]
        assert mine["who"] == "reg" and mine["deviceId"] == device.id
        assert mine["messagesIn"] >= 2 and mine["messagesOut"] >= 2
    finally:
        dev.close()


def test_connect_must_come_first_and_only_once(server: ServerThread) -> None:
    sock = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=10)
    sock.sendall(encode(Publish(topic=TELEMETRY, payload=b"{}"), MQTT_3_1_1))
    assert sock.recv(10) == b""
    sock.close()
    device = server.add_device("twice")
    connect = Connect(protocol_level=MQTT_5, client_id="t", username=device.token)
    sock = raw_connect(server.mqtt_port, connect, MQTT_5)
    sock.sendall(encode(connect, MQTT_5))
    assert sock.recv(10) == b"\xe0\x01\x82"  # DISCONNECT, protocol error
    sock.close()


def test_silent_socket_is_closed_after_the_connect_timeout(server: ServerThread) -> None:
    server.on_loop(lambda: setattr(server.server.mqtt, "connect_timeout", 1.0))
    sock = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=30)
    started = time.monotonic()
    assert sock.recv(10) == b""
    assert 0.9 <= time.monotonic() - started <= 3
    sock.close()


@pytest.mark.parametrize(
    ("packet", "answer"),
    [
        # MQTT 3.1.1 with an empty client id must ask for a clean session [MQTT-3.1.3-8].
        (Connect(client_id="", clean_start=False, username="x"), b"\x20\x02\x00\x02"),
        # An unknown protocol level gets "unacceptable protocol version".
        (b"\x10\x0c\x00\x04MQTT\x06\x02\x00\x3c\x00\x00", b"\x20\x02\x00\x01"),
    ],
)
def test_connect_refusals_on_the_wire(
    server: ServerThread, packet: Connect | bytes, answer: bytes
) -> None:
    sock = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=10)
    sock.sendall(packet if isinstance(packet, bytes) else encode(packet, MQTT_3_1_1))
    assert sock.recv(10) == answer
    assert sock.recv(10) == b""
    sock.close()


def test_mqtt_3_1_clients_are_served(server: ServerThread) -> None:
    device = server.add_device("v31")
    dev = Device(server.mqtt_port, device.token, protocol=3, client_id="old-client")
    try:
        dev.publish(TELEMETRY, '{"legacy": 1}')
    finally:
        dev.close()
    assert stored(server, device) == {"legacy": 1}
