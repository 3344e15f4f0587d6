"""MQTT 3.1.1 and 5.0 packets as immutable values, validated on construction.

The codec builds them from bytes and turns them back into bytes; the messages of the
validation errors carry the spec's rule ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from tinyboard.mqtt.errors import ProtocolError
from tinyboard.mqtt.properties import NO_PROPERTIES, Properties


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


MQTT_3_1 = 3
MQTT_3_1_1 = 4
MQTT_5 = 5
VERSIONS = (MQTT_3_1, MQTT_3_1_1, MQTT_5)
PROTOCOL_NAMES = {MQTT_3_1: "MQIsdp", MQTT_3_1_1: "MQTT", MQTT_5: "MQTT"}


def check_packet_id(packet_id: int) -> None:
    if not 0 < packet_id <= 0xFFFF:
        raise ProtocolError(f"[MQTT-2.2.1-3] packet identifier must be 1..65535, got {packet_id}")


def check_qos(qos: int) -> None:
    if qos not in (0, 1, 2):
        raise ProtocolError(f"[MQTT-3.3.1-4] QoS must be 0, 1 or 2, got {qos}")


def check_topic_name(topic: str) -> None:
    if "+" in topic or "#" in topic:
        raise ProtocolError(f"[MQTT-3.3.2-2] topic name {topic!r} must not contain wildcards")


def check_topic_filter(topic_filter: str) -> None:
    if not topic_filter:
        raise ProtocolError("[MQTT-4.7.3-1] a topic filter must be at least one character")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ProtocolError(f"[MQTT-4.7.1-1] '#' must be the last level in {topic_filter!r}")
        if "+" in level and level != "+":
            raise ProtocolError(f"[MQTT-4.7.1-2] '+' must fill a whole level in {topic_filter!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Will:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        check_qos(self.qos)
        check_topic_name(self.topic)


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect:
    type = PacketType.CONNECT
    protocol_level: int = MQTT_3_1_1
    client_id: str = ""
    clean_start: bool = True
    keep_alive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        if self.protocol_level not in VERSIONS:
            raise ProtocolError(
                f"[MQTT-3.1.2-2] unsupported protocol level {self.protocol_level}", 0x84
            )
        if not 0 <= self.keep_alive <= 0xFFFF:
            raise ProtocolError("keep alive must be 0..65535 seconds")
        if self.protocol_level < MQTT_5 and self.password is not None and self.username is None:
            raise ProtocolError("[MQTT-3.1.2-22] a password needs a user name in MQTT 3")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnAck:
    type = PacketType.CONNACK
    session_present: bool = False
    reason: int = 0
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        if self.session_present and self.reason:
            raise ProtocolError("[MQTT-3.2.2-4] session present must be 0 when refusing")


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    type = PacketType.PUBLISH
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        check_qos(self.qos)
        check_topic_name(self.topic)
        if self.qos == 0:
            if self.dup:
                raise ProtocolError("[MQTT-3.3.1-2] DUP must be 0 for QoS 0 messages")
            if self.packet_id is not None:
                raise ProtocolError("[MQTT-2.2.1-2] a QoS 0 PUBLISH has no packet identifier")
        else:
            if self.packet_id is None:
                raise ProtocolError("[MQTT-2.2.1-3] a QoS 1/2 PUBLISH needs a packet identifier")
            check_packet_id(self.packet_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ack:
    packet_id: int
    reason: int = 0
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        check_packet_id(self.packet_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class PubAck(_Ack):
    type = PacketType.PUBACK


@dataclass(frozen=True, slots=True, kw_only=True)
class PubRec(_Ack):
    type = PacketType.PUBREC


@dataclass(frozen=True, slots=True, kw_only=True)
class PubRel(_Ack):
    type = PacketType.PUBREL


@dataclass(frozen=True, slots=True, kw_only=True)
class PubComp(_Ack):
    type = PacketType.PUBCOMP


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0

    def __post_init__(self) -> None:
        check_topic_filter(self.topic_filter)
        check_qos(self.qos)
        if self.retain_handling not in (0, 1, 2):
            raise ProtocolError("[MQTT-3.8.3-5] retain handling must be 0, 1 or 2")


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe:
    type = PacketType.SUBSCRIBE
    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        check_packet_id(self.packet_id)
        if not self.subscriptions:
            raise ProtocolError("[MQTT-3.8.3-3] SUBSCRIBE needs at least one topic filter")


@dataclass(frozen=True, slots=True, kw_only=True)
class SubAck:
    type = PacketType.SUBACK
    packet_id: int
    reasons: tuple[int, ...]
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        check_packet_id(self.packet_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe:
    type = PacketType.UNSUBSCRIBE
    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        check_packet_id(self.packet_id)
        if not self.topic_filters:
            raise ProtocolError("[MQTT-3.10.3-2] UNSUBSCRIBE needs at least one topic filter")
        for topic_filter in self.topic_filters:
            check_topic_filter(topic_filter)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsubAck:
    type = PacketType.UNSUBACK
    packet_id: int
    reasons: tuple[int, ...] = ()
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        check_packet_id(self.packet_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class PingReq:
    type = PacketType.PINGREQ


@dataclass(frozen=True, slots=True, kw_only=True)
class PingResp:
    type = PacketType.PINGRESP


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnect:
    type = PacketType.DISCONNECT
    reason: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True, kw_only=True)
class Auth:
    type = PacketType.AUTH
    reason: int = 0
    properties: Properties = NO_PROPERTIES


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | Auth
)
