"""Everything that affects the connection state machine lives here (h11's rule).

A table per role: which packet types may be sent and received in each state, and which
packets move the state on. Anything not in the table is illegal: received, it is the
peer's protocol error; sent, it is our usage error.
"""

from __future__ import annotations

from enum import Enum, auto

from tinyboard.mqtt.packets import PacketType as T


class State(Enum):
    AWAIT_CONNECT = auto()
    """Nothing exchanged yet."""
    CONNECTING = auto()
    """CONNECT sent (client) or received (server); CONNACK pending."""
    CONNECTED = auto()
    CLOSED = auto()


class Role(Enum):
    SERVER = auto()
    CLIENT = auto()


_CLIENT_TO_SERVER = frozenset(
    {T.PUBLISH, T.PUBACK, T.PUBREC, T.PUBREL, T.PUBCOMP, T.SUBSCRIBE, T.UNSUBSCRIBE,
     T.PINGREQ, T.DISCONNECT, T.AUTH}
)  # fmt: skip
_SERVER_TO_CLIENT = frozenset(
    {T.PUBLISH, T.PUBACK, T.PUBREC, T.PUBREL, T.PUBCOMP, T.SUBACK, T.UNSUBACK,
     T.PINGRESP, T.DISCONNECT, T.AUTH}
)  # fmt: skip

# (role, state) -> packet types that role may receive / send.
RECEIVE: dict[tuple[Role, State], frozenset[T]] = {
    (Role.SERVER, State.AWAIT_CONNECT): frozenset({T.CONNECT}),
    (Role.SERVER, State.CONNECTING): frozenset(),
    (Role.SERVER, State.CONNECTED): _CLIENT_TO_SERVER,
    (Role.CLIENT, State.CONNECTING): frozenset({T.CONNACK, T.DISCONNECT}),
    (Role.CLIENT, State.CONNECTED): _SERVER_TO_CLIENT,
}
SEND: dict[tuple[Role, State], frozenset[T]] = {
    (Role.SERVER, State.CONNECTING): frozenset({T.CONNACK}),
    (Role.SERVER, State.CONNECTED): _SERVER_TO_CLIENT,
    (Role.CLIENT, State.AWAIT_CONNECT): frozenset({T.CONNECT}),
    (Role.CLIENT, State.CONNECTED): _CLIENT_TO_SERVER,
}

# Packet types that change the state, whichever side sends them. CONNACK's outcome depends
# on its reason code: success connects, anything else closes.
MOVES: dict[tuple[State, T], State] = {
    (State.AWAIT_CONNECT, T.CONNECT): State.CONNECTING,
    (State.CONNECTING, T.DISCONNECT): State.CLOSED,
    (State.CONNECTED, T.DISCONNECT): State.CLOSED,
}


MOVES_FROM: dict[State, dict[T, State]] = {
    state: {kind: target for (source, kind), target in MOVES.items() if source is state}
    for state in State
}
"""MOVES by current state, so a packet's move is one dict lookup keyed by its (int) type."""


def after_connack(reason: int) -> State:
    return State.CONNECTED if reason == 0 else State.CLOSED
