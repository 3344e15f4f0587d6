"""A sans-IO MQTT connection: bytes in, packets out; packets in, bytes out.

Three verbs, as h11: `receive_data(bytes)` (b"" for end of stream), `next_event()` (a packet,
`NEED_DATA` or `CLOSED`), `send(packet) -> bytes`. The state table is in `state.py`.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from tinyboard.mqtt.codec import decode, encode, split_frame
from tinyboard.mqtt.errors import MalformedPacket, ProtocolError, UsageError
from tinyboard.mqtt.packets import (
    MQTT_3_1_1,
    MQTT_5,
    ConnAck,
    Connect,
    Packet,
    PacketType,
    Publish,
)
from tinyboard.mqtt.state import MOVES_FROM, RECEIVE, SEND, Role, State, after_connack

DEFAULT_MAX_PACKET: Final = 65536


class Sentinel(Enum):
    NEED_DATA = "NEED_DATA"
    CLOSED = "CLOSED"


NEED_DATA: Final = Sentinel.NEED_DATA
"""More bytes are needed before the next packet."""
CLOSED: Final = Sentinel.CLOSED
"""The peer ended the stream cleanly between packets."""


class Connection:
    """One side of an MQTT connection. The server learns the version from CONNECT."""

    def __init__(
        self,
        role: Role,
        *,
        max_packet_size: int = DEFAULT_MAX_PACKET,
        version: int | None = None,
    ) -> None:
        self.role = role
        self.state = State.AWAIT_CONNECT
        self._may_receive: frozenset[PacketType] = frozenset()
        self._may_send: frozenset[PacketType] = frozenset()
        self._moves: dict[PacketType, State] = {}
        self._enter(State.AWAIT_CONNECT)
        self.version = version or MQTT_3_1_1
        self.max_packet_size = max_packet_size
        """Largest packet we accept (announced to v5 clients in CONNACK)."""
        self.peer_max_packet_size: int | None = None
        """Largest packet the peer accepts (v5 CONNECT/CONNACK property)."""
        self._buf = bytearray()
        self._pos = 0
        self._eof = False

    # -- receiving -----------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next_event(self) -> Packet | Sentinel:
        """The next complete packet, NEED_DATA, or CLOSED; raises `ProtocolError`."""
        buf = self._buf
        pos = self._pos
        try:
            found = split_frame(buf, self.max_packet_size, pos)
        except ProtocolError:
            self._enter(State.CLOSED)
            raise
        if found is None or pos + found[1] > len(buf):
            del buf[:pos]
            self._pos = 0
            if self._eof:
                self._enter(State.CLOSED)
                if buf:
                    raise MalformedPacket("the connection ended in the middle of a packet")
                return CLOSED
            return NEED_DATA
        header_len, total = found
        frame = bytes(buf[pos : pos + total])
        self._pos = pos + total
        try:
            packet = decode(frame, header_len, self.version)
            self._received(packet)
        except ProtocolError:
            self._enter(State.CLOSED)
            raise
        return packet

    def _enter(self, state: State) -> None:
        """Change state; what may be sent and received next is looked up once, here."""
        self.state = state
        self._may_receive = RECEIVE.get((self.role, state), frozenset())
        self._may_send = SEND.get((self.role, state), frozenset())
        self._moves = MOVES_FROM[state]

    def _received(self, packet: Packet) -> None:
        if packet.type not in self._may_receive:
            if isinstance(packet, Connect):
                raise ProtocolError("[MQTT-3.1.0-2] a second CONNECT is a protocol error", 0x82)
            raise ProtocolError(
                f"[MQTT-3.1.0-1] {packet.type.name} is not allowed in state {self.state.name}",
                0x82,
            )
        if isinstance(packet, Connect):
            self.version = packet.protocol_level
            self.peer_max_packet_size = packet.properties.maximum_packet_size
        elif isinstance(packet, ConnAck):
            self.peer_max_packet_size = packet.properties.maximum_packet_size
        elif isinstance(packet, Publish) and self.role is Role.SERVER:
            self._check_client_publish(packet)
        self._move(packet)

    def _check_client_publish(self, packet: Publish) -> None:
        if packet.properties.subscription_identifiers:
            raise ProtocolError("[MQTT-3.3.4-6] a client must not send subscription ids", 0x82)
        if packet.properties.topic_alias is not None:
            raise ProtocolError("topic aliases are not supported (maximum 0)", 0x94)
        if not packet.topic:
            raise ProtocolError("[MQTT-4.7.3-1] a topic name must not be empty", 0x82)

    # -- sending -------------------------------------------------------------------------
    def send(self, packet: Packet) -> bytes:
        """Bytes for `packet`; raises `UsageError` if the state does not allow it or the
        peer's maximum packet size would be exceeded (the caller drops such a message)."""
        if packet.type not in self._may_send:
            raise UsageError(f"cannot send {packet.type.name} in state {self.state.name}")
        if isinstance(packet, Connect):
            self.version = packet.protocol_level
        data = encode(packet, self.version)
        if self.peer_max_packet_size is not None and len(data) > self.peer_max_packet_size:
            raise UsageError(
                f"{packet.type.name} of {len(data)} bytes is over the peer's limit of "
                f"{self.peer_max_packet_size}"
            )
        self._move(packet)
        return data

    def ack(self, packet_id: int) -> bytes:
        """A success PUBACK: the hot path's shortcut for `send(PubAck(packet_id=...))`."""
        if PacketType.PUBACK not in self._may_send:
            raise UsageError(f"cannot send PUBACK in state {self.state.name}")
        return b"\x40\x02" + packet_id.to_bytes(2, "big")

    def _move(self, packet: Packet) -> None:
        if isinstance(packet, ConnAck):
            self._enter(after_connack(packet.reason))
        elif (target := self._moves.get(packet.type)) is not None:
            self._enter(target)

    @property
    def is_v5(self) -> bool:
        return self.version == MQTT_5
