"""Client and server connections paired through a fake link (h11's ConnectionPair)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyboard.mqtt.codec import encode
from tinyboard.mqtt.connection import CLOSED, NEED_DATA, Connection
from tinyboard.mqtt.errors import MalformedPacket, PacketTooLarge, ProtocolError, UsageError
from tinyboard.mqtt.packets import (
    MQTT_3_1_1,
    MQTT_5,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PubAck,
    Publish,
    Subscribe,
    Subscription,
)
from tinyboard.mqtt.properties import Properties
from tinyboard.mqtt.state import Role, State


class Pair:
    def __init__(self, version: int = MQTT_3_1_1, max_packet_size: int = 65536) -> None:
        self.client = Connection(Role.CLIENT)
        self.server = Connection(Role.SERVER, max_packet_size=max_packet_size)
        self.version = version

    def to_server(self, packet: Packet) -> list[Packet]:
        self.server.receive_data(self.client.send(packet))
        return drain(self.server)

    def to_client(self, packet: Packet) -> list[Packet]:
        self.client.receive_data(self.server.send(packet))
        return drain(self.client)

    def connect(self, **connack: object) -> None:
        [got] = self.to_server(Connect(protocol_level=self.version, client_id="c", username="t"))
        assert isinstance(got, Connect) and self.server.state is State.CONNECTING
        [ack] = self.to_client(ConnAck(**connack))  # type: ignore[arg-type]
        assert isinstance(ack, ConnAck)


def drain(conn: Connection) -> list[Packet]:
    out = []
    while (event := conn.next_event()) is not NEED_DATA:
        assert event is not CLOSED
        out.append(event)  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_a_session(version: int) -> None:
    pair = Pair(version)
    pair.connect()
    assert pair.server.state is State.CONNECTED and pair.client.state is State.CONNECTED
    assert pair.server.version == version
    sub = Subscribe(packet_id=1, subscriptions=(Subscription(topic_filter="a/+", qos=1),))
    assert pair.to_server(sub) == [sub]
    publish = Publish(topic="a/b", payload=b"1", qos=1, packet_id=2)
    assert pair.to_server(publish) == [publish]
    assert pair.to_client(PubAck(packet_id=2)) == [PubAck(packet_id=2)]
    assert pair.to_server(Disconnect()) == [Disconnect()]
    assert pair.server.state is State.CLOSED


def test_refused_connack_closes() -> None:
    pair = Pair()
    pair.connect(reason=5)
    assert pair.server.state is State.CLOSED and pair.client.state is State.CLOSED
    with pytest.raises(UsageError):
        pair.server.send(PubAck(packet_id=1))


def test_byte_by_byte_gives_the_same_packets() -> None:
    pair = Pair(MQTT_5)
    pair.connect()
    packets = [Publish(topic=f"t/{i}", payload=b"x" * i, qos=1, packet_id=i + 1) for i in range(20)]
    data = b"".join(encode(p, MQTT_5) for p in packets)
    got: list[Packet] = []
    for i in range(len(data)):
        pair.server.receive_data(data[i : i + 1])
        got += drain(pair.server)
    assert got == packets
    assert pair.server.buffered == 0


def test_many_packets_in_one_read() -> None:
    pair = Pair()
    pair.connect()
    data = b"".join(encode(PingReq(), MQTT_3_1_1) for _ in range(1000))
    pair.server.receive_data(data)
    assert drain(pair.server) == [PingReq()] * 1000


def test_anything_before_connect_is_a_protocol_error() -> None:
    server = Connection(Role.SERVER)
    server.receive_data(encode(Publish(topic="a"), MQTT_3_1_1))
    with pytest.raises(ProtocolError, match=r"MQTT-3\.1\.0-1"):
        server.next_event()
    assert server.state is State.CLOSED


def test_second_connect_is_a_protocol_error() -> None:
    pair = Pair()
    pair.connect()
    pair.server.receive_data(encode(Connect(client_id="again"), MQTT_3_1_1))
    with pytest.raises(ProtocolError, match=r"MQTT-3\.1\.0-2"):
        pair.server.next_event()


def test_server_cannot_send_before_connect_or_twice_connack() -> None:
    server = Connection(Role.SERVER)
    with pytest.raises(UsageError):
        server.send(ConnAck())
    pair = Pair()
    pair.connect()
    with pytest.raises(UsageError):
        pair.server.send(ConnAck())


def test_clean_eof_and_eof_mid_packet() -> None:
    pair = Pair()
    pair.connect()
    pair.server.receive_data(b"")
    assert pair.server.next_event() is CLOSED
    other = Pair()
    other.connect()
    other.server.receive_data(encode(Publish(topic="abc", payload=b"xyz"), MQTT_3_1_1)[:-1])
    assert other.server.next_event() is NEED_DATA
    other.server.receive_data(b"")
    with pytest.raises(MalformedPacket, match="middle of a packet"):
        other.server.next_event()


def test_oversized_packet_is_refused_before_it_is_buffered() -> None:
    pair = Pair(MQTT_5, max_packet_size=1000)
    pair.connect()
    big = encode(Publish(topic="a", payload=b"x" * 5000), MQTT_5)
    pair.server.receive_data(big[:10])
    with pytest.raises(PacketTooLarge):
        pair.server.next_event()


def test_client_publish_rules_on_the_server() -> None:
    for props, reason in (
        (Properties(subscription_identifiers=(3,)), 0x82),
        (Properties(topic_alias=1), 0x94),
    ):
        pair = Pair(MQTT_5)
        pair.connect()
        pair.server.receive_data(encode(Publish(topic="a", properties=props), MQTT_5))
        with pytest.raises(ProtocolError) as info:
            pair.server.next_event()
        assert info.value.reason == reason


def test_peer_packet_size_limit_is_respected_when_sending() -> None:
    pair = Pair(MQTT_5)
    pair.to_server(
        Connect(
            protocol_level=MQTT_5,
            client_id="c",
            properties=Properties(maximum_packet_size=64),
        )
    )
    pair.server.send(ConnAck())
    assert pair.server.peer_max_packet_size == 64
    pair.server.send(Publish(topic="a", payload=b"x" * 50))
    with pytest.raises(UsageError, match="over the peer's limit"):
        pair.server.send(Publish(topic="a", payload=b"x" * 100))


@given(st.binary(max_size=400), st.sampled_from([MQTT_3_1_1, MQTT_5]), st.booleans())
def test_fuzz_connection_only_raises_protocol_errors(
    data: bytes, version: int, connected: bool
) -> None:
    pair = Pair(version)
    if connected:
        pair.connect()
    pair.server.receive_data(data)
    try:
        while pair.server.next_event() not in (NEED_DATA, CLOSED):
            pass
    except ProtocolError:
        assert pair.server.state is State.CLOSED


def test_ack_shortcut_matches_the_encoder_and_respects_state() -> None:
    server = Connection(Role.SERVER)
    with pytest.raises(UsageError):
        server.ack(1)
    pair = Pair()
    pair.connect()
    for packet_id in (1, 258, 65535):
        assert pair.server.ack(packet_id) == encode(PubAck(packet_id=packet_id), MQTT_3_1_1)
