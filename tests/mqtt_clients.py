"""paho-mqtt clients for the tests: connect, wait, collect what arrives."""

from __future__ import annotations

import queue
import socket
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tinyboard.mqtt.codec import encode, split_frame
from tinyboard.mqtt.packets import Connect

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
VERSIONS = [V311, V5]


class Device:
    """A paho client running its network loop in a thread; events land in queues."""

    def __init__(
        self,
        port: int,
        token: str | None,
        *,
        protocol: int = V311,
        client_id: str = "",
        keepalive: int = 60,
        wait: bool = True,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol
        )
        if token is not None:
            self.client.username_pw_set(token)
        self.connected: queue.Queue[ReasonCode] = queue.Queue()
        self.disconnected: queue.Queue[ReasonCode] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.connack_properties: list[Properties | None] = []
        self.client.on_connect = lambda c, u, f, rc, p: (
            self.connack_properties.append(p),
            self.connected.put(rc),
        )
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnected.put(rc)
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(list(rcs))
        self._lock = threading.Lock()
        self.client.connect("127.0.0.1", port, keepalive=keepalive)
        self.client.loop_start()
        if wait:
            self.connack = self.connected.get(timeout=10)

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, **kw: Any) -> Any:
        info = self.client.publish(topic, payload, qos=qos, **kw)
        if qos:
            info.wait_for_publish(10)
        return info

    def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        self.client.subscribe(topic, qos=qos)
        return self.subacks.get(timeout=10)

    def next_message(self, timeout: float = 10) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def v5_properties(**values: Any) -> Properties:
    props = Properties(mqtt.PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    return props


def raw_connect(port: int, packet: Connect, version: int) -> socket.socket:
    """A socket after a successful CONNECT/CONNACK exchange (the whole CONNACK read), for
    tests that then send hand-made bytes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(encode(packet, version))
    data = b""
    while (found := split_frame(data, 1 << 16)) is None or len(data) < found[1]:
        data += sock.recv(1)
    assert data[0] == 0x20 and data[found[0] + 1] == 0  # CONNACK, success
    return sock
