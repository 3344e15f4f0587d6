"""One exception root for the MQTT codec; the peer's mistakes and ours are different classes."""

from __future__ import annotations


class MQTTError(Exception):
    """Root of every error the MQTT package raises."""


class ProtocolError(MQTTError):
    """The peer broke the protocol. `reason` is the MQTT 5 reason code to answer with
    (in CONNACK before the session exists, else DISCONNECT); MQTT 3 peers are just dropped."""

    def __init__(self, message: str, reason: int = 0x81) -> None:
        super().__init__(message)
        self.reason = reason


class MalformedPacket(ProtocolError):
    """Bytes that do not decode to a valid packet (reason 0x81)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 0x81)


class PacketTooLarge(ProtocolError):
    """A packet over the negotiated maximum size (reason 0x95)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 0x95)


class UsageError(MQTTError):
    """We misused the API: e.g. sent a packet the current state does not allow."""
