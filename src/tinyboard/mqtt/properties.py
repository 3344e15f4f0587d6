"""MQTT 5 properties (§2.2.2): one immutable value per packet, validated per packet type."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum

from tinyboard.mqtt.errors import ProtocolError


class PropType(IntEnum):
    BYTE = 1
    U16 = 2
    U32 = 3
    VARINT = 4
    UTF8 = 5
    BINARY = 6
    PAIR = 7


# id: (field name, type)
PROPERTY_IDS: dict[int, tuple[str, PropType]] = {
    0x01: ("payload_format_indicator", PropType.BYTE),
    0x02: ("message_expiry_interval", PropType.U32),
    0x03: ("content_type", PropType.UTF8),
    0x08: ("response_topic", PropType.UTF8),
    0x09: ("correlation_data", PropType.BINARY),
    0x0B: ("subscription_identifiers", PropType.VARINT),
    0x11: ("session_expiry_interval", PropType.U32),
    0x12: ("assigned_client_identifier", PropType.UTF8),
    0x13: ("server_keep_alive", PropType.U16),
    0x15: ("authentication_method", PropType.UTF8),
    0x16: ("authentication_data", PropType.BINARY),
    0x17: ("request_problem_information", PropType.BYTE),
    0x18: ("will_delay_interval", PropType.U32),
    0x19: ("request_response_information", PropType.BYTE),
    0x1A: ("response_information", PropType.UTF8),
    0x1C: ("server_reference", PropType.UTF8),
    0x1F: ("reason_string", PropType.UTF8),
    0x21: ("receive_maximum", PropType.U16),
    0x22: ("topic_alias_maximum", PropType.U16),
    0x23: ("topic_alias", PropType.U16),
    0x24: ("maximum_qos", PropType.BYTE),
    0x25: ("retain_available", PropType.BYTE),
    0x26: ("user_properties", PropType.PAIR),
    0x27: ("maximum_packet_size", PropType.U32),
    0x28: ("wildcard_subscription_available", PropType.BYTE),
    0x29: ("subscription_identifier_available", PropType.BYTE),
    0x2A: ("shared_subscription_available", PropType.BYTE),
}
PROPERTY_BY_NAME = {name: (pid, kind) for pid, (name, kind) in PROPERTY_IDS.items()}
REPEATABLE = frozenset({0x26, 0x0B})
"""User properties may repeat anywhere; subscription identifiers in PUBLISH (§3.3.2.3.8)."""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Properties:
    """Every MQTT 5 property; None (or empty) when absent."""

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: tuple[int, ...] = ()
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None

    def present(self) -> list[tuple[int, object]]:
        """(property id, value) of every property set, repeated ones expanded, in id order."""
        out: list[tuple[int, object]] = []
        for pid, (name, _) in PROPERTY_IDS.items():
            value = getattr(self, name)
            if pid in REPEATABLE:
                out.extend((pid, v) for v in value)
            elif value is not None:
                out.append((pid, value))
        return out

    def __repr__(self) -> str:
        fields = ", ".join(f"{PROPERTY_IDS[pid][0]}={value!r}" for pid, value in self.present())
        return f"Properties({fields})"

    def __bool__(self) -> bool:
        return self != NO_PROPERTIES

    def check(self, allowed: frozenset[int], packet: str) -> None:
        """Raise if a property not allowed on this packet type is set (§2.2.2.2)."""
        for pid, _ in self.present():
            if pid not in allowed:
                raise ProtocolError(
                    f"[MQTT-2.2.2-2] property 0x{pid:02X} is not allowed in {packet}", 0x82
                )

    def replace(self, **changes: object) -> Properties:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


NO_PROPERTIES = Properties()


def _ids(*names: str) -> frozenset[int]:
    return frozenset(PROPERTY_BY_NAME[n][0] for n in (*names, "user_properties"))


WILL_PROPS = _ids(
    "payload_format_indicator",
    "message_expiry_interval",
    "content_type",
    "response_topic",
    "correlation_data",
    "will_delay_interval",
)
ALLOWED: dict[str, frozenset[int]] = {
    "CONNECT": _ids(
        "session_expiry_interval",
        "authentication_method",
        "authentication_data",
        "request_problem_information",
        "request_response_information",
        "receive_maximum",
        "topic_alias_maximum",
        "maximum_packet_size",
    ),
    "CONNACK": _ids(
        "session_expiry_interval",
        "assigned_client_identifier",
        "server_keep_alive",
        "authentication_method",
        "authentication_data",
        "response_information",
        "server_reference",
        "reason_string",
        "receive_maximum",
        "topic_alias_maximum",
        "maximum_qos",
        "retain_available",
        "maximum_packet_size",
        "wildcard_subscription_available",
        "subscription_identifier_available",
        "shared_subscription_available",
    ),
    "PUBLISH": _ids(
        "payload_format_indicator",
        "message_expiry_interval",
        "content_type",
        "response_topic",
        "correlation_data",
        "subscription_identifiers",
        "topic_alias",
    ),
    "PUBACK": _ids("reason_string"),
    "PUBREC": _ids("reason_string"),
    "PUBREL": _ids("reason_string"),
    "PUBCOMP": _ids("reason_string"),
    "SUBSCRIBE": _ids("subscription_identifiers"),
    "SUBACK": _ids("reason_string"),
    "UNSUBSCRIBE": _ids(),
    "UNSUBACK": _ids("reason_string"),
    "DISCONNECT": _ids("session_expiry_interval", "server_reference", "reason_string"),
    "AUTH": _ids("authentication_method", "authentication_data", "reason_string"),
    "WILL": WILL_PROPS,
}
