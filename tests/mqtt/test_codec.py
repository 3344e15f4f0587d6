"""The MQTT codec on bytes: round trips, known encodings, spec edge cases, limits, fuzz."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyboard.mqtt.codec import (
    MAX_REMAINING_LENGTH,
    Reader,
    decode,
    encode,
    encode_varint,
    split_frame,
)
from tinyboard.mqtt.errors import MalformedPacket, PacketTooLarge, ProtocolError
from tinyboard.mqtt.packets import (
    MQTT_3_1,
    MQTT_3_1_1,
    MQTT_5,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from tinyboard.mqtt.properties import Properties

V5_PROPS = Properties(reason_string="why", user_properties=(("k", "v"), ("k", "w")))


def roundtrip(packet: Packet, version: int) -> Packet:
    data = encode(packet, version)
    found = split_frame(data, 1 << 28)
    assert found is not None and found[1] == len(data)
    return decode(data, found[0], version)


def samples(version: int) -> list[Packet]:
    v5 = version == MQTT_5
    props = V5_PROPS if v5 else Properties()
    packets: list[Packet] = [
        Connect(protocol_level=version, client_id="dev-1", username="token", keep_alive=30),
        Connect(
            protocol_level=version,
            client_id="",
            clean_start=False,
            username="u",
            password=b"\x00\xffpw",
            will=Will(
                topic="last/will",
                payload=b"bye",
                qos=1,
                retain=True,
                properties=Properties(will_delay_interval=5) if v5 else Properties(),
            ),
            properties=Properties(session_expiry_interval=60, maximum_packet_size=1024)
            if v5
            else Properties(),
        ),
        ConnAck(session_present=True),
        ConnAck(reason=0x86 if v5 else 5, properties=props),
        Publish(topic="v1/devices/me/telemetry", payload=b'{"t":1}'),
        Publish(
            topic="a/b",
            payload=bytes(range(256)),
            qos=1,
            retain=True,
            dup=True,
            packet_id=65535,
            properties=Properties(content_type="application/json", message_expiry_interval=9)
            if v5
            else Properties(),
        ),
        Publish(topic="q2", qos=2, packet_id=1),
        PubAck(packet_id=1),
        PubRec(packet_id=2),
        PubRel(packet_id=3),
        PubComp(packet_id=4),
        Subscribe(
            packet_id=5,
            subscriptions=(
                Subscription(topic_filter="v1/devices/me/rpc/request/+", qos=1),
                Subscription(topic_filter="#", qos=2),
            ),
        ),
        SubAck(packet_id=5, reasons=(1, 0x80)),
        Unsubscribe(packet_id=6, topic_filters=("a/+", "b/#")),
        UnsubAck(packet_id=6, reasons=(0, 0x11) if v5 else ()),
        PingReq(),
        PingResp(),
        Disconnect(),
    ]
    if v5:
        packets += [
            PubAck(packet_id=7, reason=0x99),
            PubAck(packet_id=8, reason=0x10, properties=V5_PROPS),
            Disconnect(reason=0x8E, properties=V5_PROPS),
            Auth(reason=0x18, properties=Properties(authentication_method="SCRAM")),
            Subscribe(
                packet_id=9,
                subscriptions=(
                    Subscription(
                        topic_filter="x",
                        qos=1,
                        no_local=True,
                        retain_as_published=True,
                        retain_handling=2,
                    ),
                ),
                properties=Properties(subscription_identifiers=(268_435_455,)),
            ),
        ]
    return packets


@pytest.mark.parametrize("version", [MQTT_3_1, MQTT_3_1_1, MQTT_5])
def test_every_packet_round_trips(version: int) -> None:
    for packet in samples(version):
        assert roundtrip(packet, version) == packet, packet


@pytest.mark.parametrize(
    ("packet", "version", "data"),
    [
        (PingReq(), MQTT_3_1_1, b"\xc0\x00"),
        (PingResp(), MQTT_5, b"\xd0\x00"),
        (Disconnect(), MQTT_5, b"\xe0\x00"),
        (PubAck(packet_id=7), MQTT_3_1_1, b"\x40\x02\x00\x07"),
        (PubAck(packet_id=7), MQTT_5, b"\x40\x02\x00\x07"),
        (PubAck(packet_id=7, reason=0x99), MQTT_5, b"\x40\x03\x00\x07\x99"),
        (PubRel(packet_id=1), MQTT_3_1_1, b"\x62\x02\x00\x01"),
        (ConnAck(reason=5), MQTT_3_1_1, b"\x20\x02\x00\x05"),
        (ConnAck(reason=0x86), MQTT_5, b"\x20\x03\x00\x86\x00"),
        (SubAck(packet_id=1, reasons=(1, 0x80)), MQTT_3_1_1, b"\x90\x04\x00\x01\x01\x80"),
        (Publish(topic="a", payload=b"x"), MQTT_3_1_1, b"\x30\x04\x00\x01ax"),
        (
            Publish(topic="a", payload=b"x", qos=1, packet_id=2),
            MQTT_5,
            b"\x32\x07\x00\x01a\x00\x02\x00x",
        ),
        (
            Connect(protocol_level=MQTT_3_1_1, client_id="c", username="tok", keep_alive=60),
            MQTT_3_1_1,
            b"\x10\x12\x00\x04MQTT\x04\x82\x00\x3c\x00\x01c\x00\x03tok",
        ),
    ],
)
def test_known_encodings(packet: Packet, version: int, data: bytes) -> None:
    assert encode(packet, version) == data
    assert decode(data, 2, version) == packet


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (MAX_REMAINING_LENGTH, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_boundaries(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert split_frame(b"\x30" + encoded, 1 << 29) == (1 + len(encoded), 1 + len(encoded) + value)
    assert Reader(encoded).varint() == value


def test_remaining_length_over_four_bytes_is_malformed() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode_varint(MAX_REMAINING_LENGTH + 1)
    with pytest.raises(MalformedPacket, match=r"MQTT-1\.5\.5-1"):
        split_frame(b"\x30\xff\xff\xff\xff\x01", 1 << 30)


def test_incomplete_headers_need_data() -> None:
    assert split_frame(b"", 100) is None
    assert split_frame(b"\x30", 100) is None
    assert split_frame(b"\x30\x80", 100) is None
    assert split_frame(b"\x30\x05abc", 100) == (2, 7)  # header known, body not yet complete


@pytest.mark.parametrize("size", [99, 100])
def test_packets_up_to_the_limit_are_accepted(size: int) -> None:
    payload = b"p" * (size - 2 - 3)  # fixed header (2) + topic length and "a" (3)
    data = encode(Publish(topic="a", payload=payload), MQTT_3_1_1)
    assert len(data) == size
    assert split_frame(data, 100) == (2, size)


def test_a_packet_one_byte_over_the_limit_is_refused_from_its_header() -> None:
    data = encode(Publish(topic="a", payload=b"p" * 96), MQTT_3_1_1)
    assert len(data) == 101
    with pytest.raises(PacketTooLarge) as info:
        split_frame(data[:2], 100)  # refused before the body arrives
    assert info.value.reason == 0x95


@pytest.mark.parametrize(
    ("data", "version", "rule"),
    [
        (b"\x30\x03\x00\x01\xff", MQTT_3_1_1, r"MQTT-1\.5\.4-1"),  # invalid UTF-8 topic
        (b"\x30\x03\x00\x01\x00", MQTT_3_1_1, r"MQTT-1\.5\.4-2"),  # U+0000 in topic
        (b"\x30\x05\x00\x03\xed\xa0\x80", MQTT_3_1_1, r"MQTT-1\.5\.4-1"),  # UTF-16 surrogate
        (b"\x36\x05\x00\x01a\x00\x01", MQTT_3_1_1, r"MQTT-3\.3\.1-4"),  # QoS 3
        (b"\x32\x05\x00\x01a\x00\x00", MQTT_3_1_1, r"MQTT-2\.2\.1-3"),  # packet id 0
        (b"\x38\x03\x00\x01a", MQTT_3_1_1, r"MQTT-3\.3\.1-2"),  # DUP on QoS 0
        (b"\x30\x03\x00\x01+", MQTT_3_1_1, r"MQTT-3\.3\.2-2"),  # wildcard in topic name
        (b"\x40\x02\x00\x00", MQTT_3_1_1, r"MQTT-2\.2\.1-3"),  # PUBACK packet id 0
        (b"\xc1\x00", MQTT_3_1_1, r"MQTT-2\.1\.3-1"),  # PINGREQ with reserved flag set
        (b"\x80\x06\x00\x01\x00\x01a\x01", MQTT_3_1_1, r"MQTT-2\.1\.3-1"),  # SUBSCRIBE flags 0
        (b"\x60\x02\x00\x01", MQTT_3_1_1, r"MQTT-2\.1\.3-1"),  # PUBREL flags 0
        (b"\x00\x00", MQTT_3_1_1, r"MQTT-2\.1\.3-1"),  # reserved type 0
        (b"\xf0\x00", MQTT_3_1_1, r"MQTT-2\.1\.3-1"),  # AUTH is reserved before MQTT 5
        (b"\xc0\x01\x00", MQTT_3_1_1, "trailing"),  # PINGREQ with a body
        (b"\x82\x06\x00\x01\x00\x01a\x04", MQTT_3_1_1, r"MQTT-3\.8\.3-4"),  # reserved bits
        (b"\x82\x06\x00\x01\x00\x01a\x03", MQTT_3_1_1, r"MQTT-3\.3\.1-4"),  # subscribe QoS 3
        (b"\x82\x07\x00\x01\x00\x02a#\x01", MQTT_3_1_1, r"MQTT-4\.7\.1-1"),  # bad wildcard
        (b"\x82\x03\x00\x01\x00", MQTT_5, "SUBSCRIBE needs"),  # no topic filters
        (b"\x10\x0c\x00\x04MQTT\x04\x03\x00\x3c\x00\x00", MQTT_3_1_1, r"MQTT-3\.1\.2-3"),
        (b"\x10\x0c\x00\x04MQTT\x04\x08\x00\x3c\x00\x00", MQTT_3_1_1, r"MQTT-3\.1\.2-11"),
        (b"\x10\x0c\x00\x04MQTT\x09\x02\x00\x3c\x00\x00", MQTT_3_1_1, r"MQTT-3\.1\.2-1"),
        (b"\x10\x0c\x00\x04MQTX\x04\x02\x00\x3c\x00\x00", MQTT_3_1_1, r"MQTT-3\.1\.2-1"),
        (b"\x10\x0e\x00\x04MQTT\x04\x42\x00\x3c\x00\x00\x00\x00", MQTT_3_1_1, r"MQTT-3\.1\.2-22"),
        (b"\x30\x06\x00\x01a\x02\x05\x00", MQTT_5, "unknown property"),
        (b"\x30\x06\x00\x01a\x02\x11\x00", MQTT_5, "not allowed in PUBLISH"),
        (b"\x30\x07\x00\x01a\x04\x01\x01\x01\x01", MQTT_5, "appears twice"),
        (b"\x30\x06\x00\x01a\x02\x01\x05", MQTT_5, "must be 0 or 1"),
        (b"\x30\x04\x00\x01a\x05", MQTT_5, "property length"),
    ],
)
def test_spec_violations_raise_protocol_errors(data: bytes, version: int, rule: str) -> None:
    with pytest.raises(ProtocolError, match=rule):
        decode(data, 2, version)


def test_unsupported_version_gets_reason_0x84() -> None:
    with pytest.raises(ProtocolError) as info:
        decode(b"\x10\x0c\x00\x04MQTT\x06\x02\x00\x3c\x00\x00", 2, MQTT_3_1_1)
    assert info.value.reason == 0x84


def test_zero_length_client_id_decodes() -> None:
    packet = decode(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00", 2, MQTT_3_1_1)
    assert isinstance(packet, Connect) and packet.client_id == ""


def test_invalid_utf8_in_connect_username_is_malformed() -> None:
    data = encode(Connect(client_id="c", username="tok"), MQTT_3_1_1)[:-1] + b"\xff"
    with pytest.raises(MalformedPacket, match=r"MQTT-1\.5\.4-1"):
        decode(data, 2, MQTT_3_1_1)


topics = st.text(
    alphabet=st.characters(exclude_characters="\x00+#", exclude_categories=("Cs",)),
    min_size=1,
    max_size=30,
)
utf8 = st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",)))
props = st.builds(
    Properties,
    payload_format_indicator=st.none() | st.sampled_from([0, 1]),
    message_expiry_interval=st.none() | st.integers(0, 2**32 - 1),
    content_type=st.none() | utf8,
    response_topic=st.none() | topics,
    correlation_data=st.none() | st.binary(max_size=20),
    user_properties=st.lists(st.tuples(utf8, utf8), max_size=3).map(tuple),
)


@given(
    topic=topics,
    payload=st.binary(max_size=300),
    qos=st.sampled_from([0, 1, 2]),
    retain=st.booleans(),
    packet_id=st.integers(1, 65535),
    properties=props,
    version=st.sampled_from([MQTT_3_1_1, MQTT_5]),
)
def test_publish_round_trips(
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    packet_id: int,
    properties: Properties,
    version: int,
) -> None:
    packet = Publish(
        topic=topic,
        payload=payload,
        qos=qos,
        retain=retain,
        packet_id=packet_id if qos else None,
        properties=properties if version == MQTT_5 else Properties(),
    )
    assert roundtrip(packet, version) == packet


@given(st.binary(max_size=300), st.sampled_from([MQTT_3_1, MQTT_3_1_1, MQTT_5]))
def test_fuzz_frames_decode_or_raise_protocol_error(data: bytes, version: int) -> None:
    try:
        found = split_frame(data, 1 << 20)
        if found is not None and found[1] <= len(data):
            decode(data[: found[1]], found[0], version)
    except ProtocolError:
        pass


@given(st.integers(0, 15), st.binary(max_size=200), st.sampled_from([MQTT_3_1_1, MQTT_5]))
def test_fuzz_bodies_decode_or_raise_protocol_error(kind: int, body: bytes, version: int) -> None:
    data = bytes([kind << 4 | (2 if kind in (6, 8, 10) else 0)]) + encode_varint(len(body)) + body
    with contextlib.suppress(ProtocolError):
        decode(data, len(data) - len(body), version)
