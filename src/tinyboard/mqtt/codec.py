"""Bytes ⇄ packets for MQTT 3.1, 3.1.1 and 5.0. No I/O: whole frames in, whole frames out.

Strategy: `split_frame` finds one complete frame in a buffer (or says it needs more data)
and enforces the size limit before the body arrives; `decode` turns one frame body into a
packet; `encode` writes a packet into one bytearray. Every malformed input raises
`MalformedPacket` (a `ProtocolError`), never anything else — the fuzz tests hold us to it.
PUBLISH, the hot path, is decoded inline without the generic reader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from tinyboard.mqtt.errors import MalformedPacket, PacketTooLarge, ProtocolError
from tinyboard.mqtt.packets import (
    MQTT_3_1,
    MQTT_5,
    PROTOCOL_NAMES,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketType,
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
from tinyboard.mqtt.properties import (
    ALLOWED,
    NO_PROPERTIES,
    PROPERTY_IDS,
    REPEATABLE,
    Properties,
    PropType,
)

MAX_REMAINING_LENGTH: Final = 268_435_455
"""The largest value a four-byte variable byte integer holds (§1.5.5)."""

BOOLEAN_PROPERTIES = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
NONZERO_PROPERTIES = frozenset({0x21, 0x23, 0x27, 0x0B})

_utf8_error = "[MQTT-1.5.4-1] a string is not valid UTF-8"


# -- framing ---------------------------------------------------------------------------


def split_frame(buf: bytes | bytearray, max_size: int, start: int = 0) -> tuple[int, int] | None:
    """(header length, total frame length) of the frame at `buf[start:]`, or None if the
    header is incomplete. Raises `PacketTooLarge` as soon as the header announces more than
    `max_size` bytes, so a peer cannot make us buffer an oversized packet.
    """
    n = len(buf) - start
    if n < 2:
        return None
    value = 0
    shift = 0
    pos = 1
    while True:
        if pos >= n:
            return None
        byte = buf[start + pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            break
        shift += 7
        if pos == 5:
            raise MalformedPacket("[MQTT-1.5.5-1] remaining length is longer than 4 bytes")
    total = pos + value
    if total > max_size:
        raise PacketTooLarge(f"packet of {total} bytes is over the {max_size}-byte limit")
    return pos, total


def encode_varint(value: int) -> bytes:
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# -- decoding --------------------------------------------------------------------------


class Reader:
    """Bounds-checked reads from one frame body."""

    __slots__ = ("buf", "end", "pos")

    def __init__(
        self, buf: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None
    ) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        pos = self.pos
        if n > self.end - pos:
            raise MalformedPacket("packet ends in the middle of a field")
        self.pos = pos + n
        return bytes(self.buf[pos : pos + n])

    def u8(self) -> int:
        if self.pos >= self.end:
            raise MalformedPacket("packet ends in the middle of a field")
        value = self.buf[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def varint(self) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise MalformedPacket("[MQTT-1.5.5-1] variable byte integer is longer than 4 bytes")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def utf8(self) -> str:
        return decode_utf8(self.binary())

    def rest(self) -> bytes:
        data = bytes(self.buf[self.pos : self.end])
        self.pos = self.end
        return data

    def done(self, packet: str) -> None:
        if self.pos != self.end:
            raise MalformedPacket(f"{packet} has {self.end - self.pos} unexpected trailing bytes")

    def properties(self, packet: str) -> Properties:
        length = self.varint()
        if length == 0:
            return NO_PROPERTIES
        if length > self.end - self.pos:
            raise MalformedPacket(f"{packet} property length runs past the packet")
        inner = Reader(self.buf, self.pos, self.pos + length)
        self.pos += length
        return inner.property_values(packet)

    def property_values(self, packet: str) -> Properties:
        allowed = ALLOWED[packet]
        values: dict[str, object] = {}
        repeated: dict[str, list[object]] = {}
        while self.pos < self.end:
            pid = self.varint()
            spec = PROPERTY_IDS.get(pid)
            if spec is None:
                raise MalformedPacket(f"unknown property id 0x{pid:02X} in {packet}")
            if pid not in allowed:
                raise ProtocolError(f"property 0x{pid:02X} is not allowed in {packet}", 0x82)
            name, kind = spec
            value = self._property(kind)
            _check_property_value(pid, value)
            if pid in REPEATABLE:
                repeated.setdefault(name, []).append(value)
            elif name in values:
                raise ProtocolError(f"property 0x{pid:02X} appears twice in {packet}", 0x82)
            else:
                values[name] = value
        for name, items in repeated.items():
            values[name] = tuple(items)
        return Properties(**values)  # type: ignore[arg-type]

    def _property(self, kind: PropType) -> object:
        if kind is PropType.PAIR:
            return (self.utf8(), self.utf8())
        return _READ[kind](self)


_READ: dict[PropType, Callable[[Reader], object]] = {
    PropType.BYTE: Reader.u8,
    PropType.U16: Reader.u16,
    PropType.U32: Reader.u32,
    PropType.VARINT: Reader.varint,
    PropType.UTF8: Reader.utf8,
    PropType.BINARY: Reader.binary,
}


def _check_property_value(pid: int, value: object) -> None:
    if pid in BOOLEAN_PROPERTIES and value not in (0, 1):
        raise ProtocolError(f"property 0x{pid:02X} must be 0 or 1, got {value}", 0x82)
    if pid in NONZERO_PROPERTIES and value == 0:
        raise ProtocolError(f"property 0x{pid:02X} must not be 0", 0x82)


def decode_utf8(raw: bytes) -> str:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise MalformedPacket(_utf8_error) from None
    if "\x00" in text:
        raise MalformedPacket("[MQTT-1.5.4-2] a string contains U+0000")
    return text


def decode(frame: bytes | bytearray | memoryview, header_len: int, version: int) -> Packet:
    """Decode one complete frame (as located by `split_frame`) for a protocol version."""
    first = frame[0]
    kind = first >> 4
    flags = first & 0x0F
    if kind == PacketType.PUBLISH:
        return _decode_publish(frame, header_len, flags, version)
    decoder = _DECODERS.get(kind)
    if decoder is None or (kind == PacketType.AUTH and version != MQTT_5):
        raise MalformedPacket(f"[MQTT-2.1.3-1] reserved packet type {kind}")
    expected = 0x02 if kind in _FLAGGED else 0
    if flags != expected:
        raise MalformedPacket(f"[MQTT-2.1.3-1] invalid flags 0x{flags:X} for packet type {kind}")
    return decoder(Reader(frame, header_len), version)


def _decode_publish(
    frame: bytes | bytearray | memoryview, pos: int, flags: int, version: int
) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("[MQTT-3.3.1-4] QoS 3 is not allowed")
    end = len(frame)
    if end - pos < 2:
        raise MalformedPacket("PUBLISH ends in the middle of the topic")
    length = (frame[pos] << 8) | frame[pos + 1]
    pos += 2
    if end - pos < length:
        raise MalformedPacket("PUBLISH ends in the middle of the topic")
    topic = decode_utf8(bytes(frame[pos : pos + length]))
    pos += length
    packet_id = None
    if qos:
        if end - pos < 2:
            raise MalformedPacket("PUBLISH ends in the middle of the packet identifier")
        packet_id = (frame[pos] << 8) | frame[pos + 1]
        pos += 2
    properties = NO_PROPERTIES
    if version == MQTT_5:
        reader = Reader(frame, pos)
        properties = reader.properties("PUBLISH")
        pos = reader.pos
    try:
        return Publish(
            topic=topic,
            payload=bytes(frame[pos:]),
            qos=qos,
            retain=bool(flags & 0x01),
            dup=bool(flags & 0x08),
            packet_id=packet_id,
            properties=properties,
        )
    except ProtocolError as exc:
        raise MalformedPacket(str(exc)) from None


def _decode_connect(r: Reader, _: int) -> Connect:
    name = r.utf8()
    level = r.u8()
    if PROTOCOL_NAMES.get(level) != name:
        raise ProtocolError(f"[MQTT-3.1.2-1] unsupported protocol {name!r} level {level}", 0x84)
    flags = r.u8()
    if flags & 0x01:
        raise MalformedPacket("[MQTT-3.1.2-3] the reserved CONNECT flag must be 0")
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 0x03
    will_retain = bool(flags & 0x20)
    if not will_flag and (will_qos or will_retain):
        raise MalformedPacket("[MQTT-3.1.2-11] will QoS and retain must be 0 without a will")
    if will_qos == 3:
        raise MalformedPacket("[MQTT-3.1.2-12] will QoS must not be 3")
    keep_alive = r.u16()
    properties = r.properties("CONNECT") if level == MQTT_5 else NO_PROPERTIES
    client_id = r.utf8()
    will = None
    if will_flag:
        will_props = r.properties("WILL") if level == MQTT_5 else NO_PROPERTIES
        will_topic = r.utf8()
        will_payload = r.binary()
        try:
            will = Will(
                topic=will_topic,
                payload=will_payload,
                qos=will_qos,
                retain=will_retain,
                properties=will_props,
            )
        except ProtocolError as exc:
            raise MalformedPacket(str(exc)) from None
    username = r.utf8() if flags & 0x80 else None
    password = r.binary() if flags & 0x40 else None
    r.done("CONNECT")
    return Connect(
        protocol_level=level,
        client_id=client_id,
        clean_start=bool(flags & 0x02),
        keep_alive=keep_alive,
        username=username,
        password=password,
        will=will,
        properties=properties,
    )


def _decode_connack(r: Reader, version: int) -> ConnAck:
    ack_flags = r.u8()
    if ack_flags & 0xFE:
        raise MalformedPacket("[MQTT-3.2.2-1] reserved CONNACK flags must be 0")
    reason = r.u8()
    properties = r.properties("CONNACK") if version == MQTT_5 else NO_PROPERTIES
    r.done("CONNACK")
    return ConnAck(session_present=bool(ack_flags), reason=reason, properties=properties)


def _ack_decoder(
    cls: type[PubAck | PubRec | PubRel | PubComp], name: str
) -> Callable[[Reader, int], Packet]:
    def decode_ack(r: Reader, version: int) -> Packet:
        packet_id = r.u16()
        reason = 0
        properties = NO_PROPERTIES
        if version == MQTT_5 and r.remaining():
            reason = r.u8()
            if r.remaining():
                properties = r.properties(name)
        r.done(name)
        return cls(packet_id=_packet_id(packet_id), reason=reason, properties=properties)

    return decode_ack


def _packet_id(packet_id: int) -> int:
    if packet_id == 0:
        raise MalformedPacket("[MQTT-2.2.1-3] packet identifier 0 is not allowed")
    return packet_id


def _decode_subscribe(r: Reader, version: int) -> Subscribe:
    packet_id = _packet_id(r.u16())
    properties = r.properties("SUBSCRIBE") if version == MQTT_5 else NO_PROPERTIES
    if len(properties.subscription_identifiers) > 1:
        raise ProtocolError("SUBSCRIBE may carry one subscription identifier", 0x82)
    reserved = 0xC0 if version == MQTT_5 else 0xFC
    subscriptions = []
    while r.remaining():
        topic_filter = r.utf8()
        options = r.u8()
        if options & reserved:
            raise MalformedPacket("[MQTT-3.8.3-4] reserved subscription option bits must be 0")
        try:
            subscriptions.append(
                Subscription(
                    topic_filter=topic_filter,
                    qos=options & 0x03,
                    no_local=bool(options & 0x04),
                    retain_as_published=bool(options & 0x08),
                    retain_handling=(options >> 4) & 0x03,
                )
            )
        except ProtocolError as exc:
            raise MalformedPacket(str(exc)) from None
    if not subscriptions:
        raise ProtocolError("[MQTT-3.8.3-3] SUBSCRIBE needs at least one topic filter")
    return Subscribe(packet_id=packet_id, subscriptions=tuple(subscriptions), properties=properties)


def _decode_suback(r: Reader, version: int) -> SubAck:
    packet_id = _packet_id(r.u16())
    properties = r.properties("SUBACK") if version == MQTT_5 else NO_PROPERTIES
    return SubAck(packet_id=packet_id, reasons=tuple(r.rest()), properties=properties)


def _decode_unsubscribe(r: Reader, version: int) -> Unsubscribe:
    packet_id = _packet_id(r.u16())
    properties = r.properties("UNSUBSCRIBE") if version == MQTT_5 else NO_PROPERTIES
    filters = []
    while r.remaining():
        filters.append(r.utf8())
    if not filters:
        raise ProtocolError("[MQTT-3.10.3-2] UNSUBSCRIBE needs at least one topic filter")
    if any(not f for f in filters):
        raise MalformedPacket("[MQTT-4.7.3-1] a topic filter must be at least one character")
    return Unsubscribe(packet_id=packet_id, topic_filters=tuple(filters), properties=properties)


def _decode_unsuback(r: Reader, version: int) -> UnsubAck:
    packet_id = _packet_id(r.u16())
    if version != MQTT_5:
        r.done("UNSUBACK")
        return UnsubAck(packet_id=packet_id)
    properties = r.properties("UNSUBACK")
    return UnsubAck(packet_id=packet_id, reasons=tuple(r.rest()), properties=properties)


def _decode_empty(cls: type[PingReq | PingResp], name: str) -> Callable[[Reader, int], Packet]:
    def decode_empty(r: Reader, _: int) -> Packet:
        r.done(name)
        return cls()

    return decode_empty


def _decode_disconnect(r: Reader, version: int) -> Disconnect:
    if version != MQTT_5:
        r.done("DISCONNECT")
        return Disconnect()
    reason = r.u8() if r.remaining() else 0
    properties = r.properties("DISCONNECT") if r.remaining() else NO_PROPERTIES
    r.done("DISCONNECT")
    return Disconnect(reason=reason, properties=properties)


def _decode_auth(r: Reader, _: int) -> Auth:
    reason = r.u8() if r.remaining() else 0
    properties = r.properties("AUTH") if r.remaining() else NO_PROPERTIES
    r.done("AUTH")
    return Auth(reason=reason, properties=properties)


_FLAGGED = frozenset({PacketType.PUBREL, PacketType.SUBSCRIBE, PacketType.UNSUBSCRIBE})
_DECODERS: dict[int, Callable[[Reader, int], Packet]] = {
    PacketType.CONNECT: _decode_connect,
    PacketType.CONNACK: _decode_connack,
    PacketType.PUBACK: _ack_decoder(PubAck, "PUBACK"),
    PacketType.PUBREC: _ack_decoder(PubRec, "PUBREC"),
    PacketType.PUBREL: _ack_decoder(PubRel, "PUBREL"),
    PacketType.PUBCOMP: _ack_decoder(PubComp, "PUBCOMP"),
    PacketType.SUBSCRIBE: _decode_subscribe,
    PacketType.SUBACK: _decode_suback,
    PacketType.UNSUBSCRIBE: _decode_unsubscribe,
    PacketType.UNSUBACK: _decode_unsuback,
    PacketType.PINGREQ: _decode_empty(PingReq, "PINGREQ"),
    PacketType.PINGRESP: _decode_empty(PingResp, "PINGRESP"),
    PacketType.DISCONNECT: _decode_disconnect,
    PacketType.AUTH: _decode_auth,
}


# -- encoding --------------------------------------------------------------------------


class Writer:
    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out = bytearray()

    def u8(self, value: int) -> None:
        self.out.append(value)

    def u16(self, value: int) -> None:
        self.out += value.to_bytes(2, "big")

    def u32(self, value: int) -> None:
        self.out += value.to_bytes(4, "big")

    def varint(self, value: int) -> None:
        self.out += encode_varint(value)

    def binary(self, data: bytes) -> None:
        if len(data) > 0xFFFF:
            raise ValueError("a string or binary field holds at most 65535 bytes")
        self.u16(len(data))
        self.out += data

    def utf8(self, text: str) -> None:
        self.binary(text.encode())

    def properties(self, props: Properties) -> None:
        if props is NO_PROPERTIES:
            self.out.append(0)
            return
        inner = Writer()
        for pid, value in props.present():
            inner.out.append(pid)
            inner._property(PROPERTY_IDS[pid][1], value)
        self.varint(len(inner.out))
        self.out += inner.out

    def _property(self, kind: PropType, value: Any) -> None:
        if kind is PropType.PAIR:
            self.utf8(value[0])
            self.utf8(value[1])
        else:
            _WRITE[kind](self, value)


_WRITE: dict[PropType, Callable[[Writer, Any], None]] = {
    PropType.BYTE: Writer.u8,
    PropType.U16: Writer.u16,
    PropType.U32: Writer.u32,
    PropType.VARINT: Writer.varint,
    PropType.UTF8: Writer.utf8,
    PropType.BINARY: Writer.binary,
}


def frame(first_byte: int, body: bytes | bytearray) -> bytes:
    return bytes([first_byte]) + encode_varint(len(body)) + body


def encode(packet: Packet, version: int) -> bytes:
    """The bytes of one packet for a protocol version."""
    if isinstance(packet, Publish):
        return encode_publish(packet, version)
    w = Writer()
    flags = _ENCODERS[type(packet)](packet, w, version)
    return frame((packet.type << 4) | flags, w.out)


def encode_publish(p: Publish, version: int) -> bytes:
    topic = p.topic.encode()
    body = bytearray(len(topic).to_bytes(2, "big"))
    body += topic
    if p.qos:
        assert p.packet_id is not None
        body += p.packet_id.to_bytes(2, "big")
    if version == MQTT_5:
        w = Writer()
        w.properties(p.properties)
        body += w.out
    body += p.payload
    flags = (p.dup << 3) | (p.qos << 1) | p.retain
    return frame(0x30 | flags, body)


def _encode_connect(p: Connect, w: Writer, _: int) -> int:
    version = p.protocol_level
    w.utf8(PROTOCOL_NAMES[version])
    w.u8(version)
    flags = (p.clean_start << 1) | ((p.username is not None) << 7) | ((p.password is not None) << 6)
    if p.will:
        flags |= 0x04 | (p.will.qos << 3) | (p.will.retain << 5)
    w.u8(flags)
    w.u16(p.keep_alive)
    if version == MQTT_5:
        w.properties(p.properties)
    w.utf8(p.client_id)
    if p.will:
        if version == MQTT_5:
            w.properties(p.will.properties)
        w.utf8(p.will.topic)
        w.binary(p.will.payload)
    if p.username is not None:
        w.utf8(p.username)
    if p.password is not None:
        w.binary(p.password)
    return 0


def _encode_connack(p: ConnAck, w: Writer, version: int) -> int:
    w.u8(int(p.session_present))
    w.u8(p.reason)
    if version == MQTT_5:
        w.properties(p.properties)
    return 0


def _encode_ack(p: PubAck | PubRec | PubRel | PubComp, w: Writer, version: int) -> int:
    w.u16(p.packet_id)
    if version == MQTT_5 and (p.reason or p.properties):
        w.u8(p.reason)
        if p.properties:
            w.properties(p.properties)
    return 0x02 if isinstance(p, PubRel) else 0


def _encode_subscribe(p: Subscribe, w: Writer, version: int) -> int:
    w.u16(p.packet_id)
    if version == MQTT_5:
        w.properties(p.properties)
    for s in p.subscriptions:
        w.utf8(s.topic_filter)
        options = s.qos
        if version == MQTT_5:
            options |= (s.no_local << 2) | (s.retain_as_published << 3) | (s.retain_handling << 4)
        w.u8(options)
    return 0x02


def _encode_suback(p: SubAck, w: Writer, version: int) -> int:
    w.u16(p.packet_id)
    if version == MQTT_5:
        w.properties(p.properties)
    w.out += bytes(p.reasons)
    return 0


def _encode_unsubscribe(p: Unsubscribe, w: Writer, version: int) -> int:
    w.u16(p.packet_id)
    if version == MQTT_5:
        w.properties(p.properties)
    for topic_filter in p.topic_filters:
        w.utf8(topic_filter)
    return 0x02


def _encode_unsuback(p: UnsubAck, w: Writer, version: int) -> int:
    w.u16(p.packet_id)
    if version == MQTT_5:
        w.properties(p.properties)
        w.out += bytes(p.reasons)
    return 0


def _encode_empty(_: PingReq | PingResp, __: Writer, ___: int) -> int:
    return 0


def _encode_disconnect(p: Disconnect | Auth, w: Writer, version: int) -> int:
    if version == MQTT_5 and (p.reason or p.properties or isinstance(p, Auth)):
        w.u8(p.reason)
        if p.properties:
            w.properties(p.properties)
    return 0


_ENCODERS: dict[type, Callable[[Packet, Writer, int], int]] = {
    Connect: _encode_connect,  # type: ignore[dict-item]
    ConnAck: _encode_connack,  # type: ignore[dict-item]
    PubAck: _encode_ack,  # type: ignore[dict-item]
    PubRec: _encode_ack,  # type: ignore[dict-item]
    PubRel: _encode_ack,  # type: ignore[dict-item]
    PubComp: _encode_ack,  # type: ignore[dict-item]
    Subscribe: _encode_subscribe,  # type: ignore[dict-item]
    SubAck: _encode_suback,  # type: ignore[dict-item]
    Unsubscribe: _encode_unsubscribe,  # type: ignore[dict-item]
    UnsubAck: _encode_unsuback,  # type: ignore[dict-item]
    PingReq: _encode_empty,  # type: ignore[dict-item]
    PingResp: _encode_empty,  # type: ignore[dict-item]
    Disconnect: _encode_disconnect,  # type: ignore[dict-item]
    Auth: _encode_disconnect,  # type: ignore[dict-item]
}

__all__ = ["MQTT_3_1", "decode", "encode", "split_frame"]
