"""How a simulated board talks to the server: the line protocol, MQTT or HTTP, exactly as the
firmware does (and as it would to ThingsBoard, for MQTT and HTTP).

A link sends a batch of readings and returns once the server acknowledged it (the echo,
the PUBACK, the HTTP 200); any failure raises `LinkError`, and the board keeps the batch to
send again after it reconnects. Every reading carries the time it was measured, as
ThingsBoard JSON (`{"ts": ..., "values": {...}}`, a list for a batch) on all three
protocols: a board that mixed readings stamped by the server with its own (a backlog) could
give two readings the same timestamp, and one would overwrite the other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import orjson

from tinyboard.mqtt.codec import decode, encode, split_frame
from tinyboard.mqtt.errors import ProtocolError
from tinyboard.mqtt.packets import (
    MQTT_3_1_1,
    ConnAck,
    Connect,
    Disconnect,
    PingReq,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
)
from tinyboard.transports.thingsboard import (
    ATTRIBUTES,
    ATTRIBUTES_REQUEST,
    ATTRIBUTES_RESPONSE,
    RPC_REQUEST,
    RPC_RESPONSE,
    TELEMETRY,
)

Reading = tuple[int, dict[str, float]]
"""(ts in Unix ms, values)."""

TIMEOUT = 10.0
SHARED_KEYS = "interval,led"
"""The shared attributes a board follows (`Board.on_attributes`)."""


class LinkError(Exception):
    """The server is unreachable, refused us, or did not acknowledge in time."""


class Commands(Protocol):
    """What the board does when the server pushes something (MQTT only)."""

    def on_attributes(self, values: dict[str, Any]) -> None: ...

    def on_rpc(self, method: str, params: Any) -> Any: ...


class Link(Protocol):
    async def connect(self) -> None: ...

    async def send(self, readings: Sequence[Reading]) -> None: ...

    async def close(self) -> None: ...


def payload(readings: Sequence[Reading]) -> bytes:
    """ThingsBoard telemetry JSON with each reading's own timestamp."""
    if len(readings) == 1:
        ts, values = readings[0]
        return orjson.dumps({"ts": ts, "values": values})
    return orjson.dumps([{"ts": ts, "values": values} for ts, values in readings])


class LineLink:
    """The line protocol: `TOKEN <token>` once, then readings as JSON lines; the echo (the
    line in CAPITALS) is the acknowledgement."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            raise LinkError(f"cannot reach {self.host}:{self.port}: {exc}") from exc
        reply = await self._ask(f"TOKEN {self.token}")
        if not reply.startswith("OK "):
            await self.close()
            raise LinkError(f"the server refused the token: {reply}")

    async def send(self, readings: Sequence[Reading]) -> None:
        line = payload(readings).decode()
        reply = await self._ask(line)
        if reply != line.upper():  # an ERROR, or a NOT STORED mark: only the echo is the ack
            raise LinkError(f"not stored: {reply}")

    async def _ask(self, line: str) -> str:
        if self._reader is None or self._writer is None:
            raise LinkError("not connected")
        try:
            self._writer.write(line.encode() + b"\n")
            raw = await asyncio.wait_for(self._reader.readline(), TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise LinkError(f"connection lost: {exc}") from exc
        if not raw:
            raise LinkError("the server closed the connection")
        return raw.decode(errors="replace").rstrip("\r\n")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None


class MqttProtocol(asyncio.Protocol):
    """MQTT 3.1.1 on tinyboard's own sans-IO codec: CONNECT with the token as user name,
    QoS 1 PUBLISH acknowledged by PUBACK, shared attributes and RPC requests pushed to us."""

    def __init__(self, commands: Commands | None) -> None:
        self.commands = commands
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiting: dict[int, asyncio.Future[None]] = {}
        self.connack: asyncio.Future[ConnAck] = asyncio.get_running_loop().create_future()
        self.suback: asyncio.Future[SubAck] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def write(self, packet: Any) -> None:
        if self.transport is None or self.transport.is_closing():
            raise LinkError("not connected")
        self.transport.write(encode(packet, MQTT_3_1_1))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            while found := split_frame(self.buf, 1 << 20):
                header, total = found
                if len(self.buf) < total:
                    return
                packet = decode(bytes(self.buf[:total]), header, MQTT_3_1_1)
                del self.buf[:total]
                self.handle(packet)
        except ProtocolError as exc:
            self.fail(LinkError(f"bad packet from the server: {exc}"))

    def handle(self, packet: Any) -> None:
        if isinstance(packet, PubAck):
            done = self.waiting.pop(packet.packet_id, None)
            if done is not None and not done.done():
                done.set_result(None)
        elif isinstance(packet, ConnAck) and not self.connack.done():
            self.connack.set_result(packet)
        elif isinstance(packet, SubAck) and not self.suback.done():
            self.suback.set_result(packet)
        elif isinstance(packet, Publish):
            self.pushed(packet)

    def pushed(self, packet: Publish) -> None:
        if packet.qos:
            self.write(PubAck(packet_id=packet.packet_id or 0))
        if self.commands is None:
            return
        try:
            body = orjson.loads(packet.payload)
        except orjson.JSONDecodeError:
            return
        if packet.topic == ATTRIBUTES and isinstance(body, dict):
            self.commands.on_attributes(body)
        elif packet.topic.startswith(ATTRIBUTES_RESPONSE) and isinstance(body, dict):
            shared = body.get("shared")
            if isinstance(shared, dict):
                self.commands.on_attributes(shared)
        elif packet.topic.startswith(RPC_REQUEST) and isinstance(body, dict):
            answer = self.commands.on_rpc(str(body.get("method", "")), body.get("params"))
            request_id = packet.topic[len(RPC_REQUEST) :]
            reply = Publish(topic=RPC_RESPONSE + request_id, payload=orjson.dumps(answer))
            self.write(reply)

    def fail(self, exc: Exception) -> None:
        futures: list[asyncio.Future[Any]] = [self.connack, self.suback, *self.waiting.values()]
        for future in futures:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: nobody may be waiting for this one
        self.waiting.clear()
        if not self.lost.done():
            self.lost.set_result(None)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(LinkError(f"connection lost: {exc or 'closed by the server'}"))


class MqttLink:
    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        client_id: str,
        commands: Commands | None = None,
        keep_alive: int = 60,
    ) -> None:
        self.host, self.port, self.token, self.client_id = host, port, token, client_id
        self.commands = commands
        self.keep_alive = keep_alive
        self._mqtt: MqttProtocol | None = None
        self._ids = 0
        self._pinger: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, mqtt = await asyncio.wait_for(
                loop.create_connection(lambda: MqttProtocol(self.commands), self.host, self.port),
                TIMEOUT,
            )
            self._mqtt = mqtt
            mqtt.write(
                Connect(client_id=self.client_id, username=self.token, keep_alive=self.keep_alive)
            )
            connack = await asyncio.wait_for(mqtt.connack, TIMEOUT)
            if connack.reason != 0:
                raise LinkError(f"CONNACK refused (code {connack.reason}): check the token")
            if self.commands is not None:
                topics = (ATTRIBUTES, ATTRIBUTES_RESPONSE + "+", RPC_REQUEST + "+")
                subscriptions = tuple(Subscription(topic_filter=t, qos=1) for t in topics)
                mqtt.write(Subscribe(packet_id=self._next_id(), subscriptions=subscriptions))
                await asyncio.wait_for(mqtt.suback, TIMEOUT)
                # what was set while the board was away applies now, as ThingsBoard's
                # examples do on connect: ask for the shared attributes it follows
                wanted = orjson.dumps({"sharedKeys": SHARED_KEYS})
                mqtt.write(Publish(topic=ATTRIBUTES_REQUEST + "1", payload=wanted))
        except (OSError, TimeoutError) as exc:
            await self.close()
            raise LinkError(f"cannot reach {self.host}:{self.port}: {exc}") from exc
        except LinkError:
            await self.close()
            raise
        self._pinger = loop.create_task(self._ping())

    async def _ping(self) -> None:
        while self._mqtt is not None and not self._mqtt.lost.done():
            await asyncio.sleep(self.keep_alive / 2)
            with contextlib.suppress(LinkError):
                self._mqtt.write(PingReq())

    def _next_id(self) -> int:
        self._ids = self._ids % 65535 + 1
        return self._ids

    async def send(self, readings: Sequence[Reading]) -> None:
        mqtt = self._mqtt
        if mqtt is None:
            raise LinkError("not connected")
        packet_id = self._next_id()
        loop = asyncio.get_running_loop()
        acked = loop.create_future()
        mqtt.waiting[packet_id] = acked
        body = payload(readings)
        mqtt.write(Publish(topic=TELEMETRY, payload=body, qos=1, packet_id=packet_id))
        # one timer instead of wait_for: this runs for every reading
        timer = loop.call_later(TIMEOUT, _expire, acked, "no PUBACK in time")
        try:
            await acked
        finally:
            timer.cancel()
            mqtt.waiting.pop(packet_id, None)

    async def close(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None
        if self._mqtt is not None and self._mqtt.transport is not None:
            with contextlib.suppress(LinkError):
                self._mqtt.write(Disconnect())
            self._mqtt.transport.close()
        self._mqtt = None


def _expire(future: asyncio.Future[None], why: str) -> None:
    if not future.done():
        future.set_exception(LinkError(why))


class HttpLink:
    """ThingsBoard's device HTTP API: POST /api/v1/{token}/telemetry, 200 = stored."""

    def __init__(self, host: str, port: int, token: str, client: httpx.AsyncClient) -> None:
        self.url = f"http://{host}:{port}/api/v1/{quote(token, safe='')}/telemetry"
        self.client = client

    async def connect(self) -> None:
        return None

    async def send(self, readings: Sequence[Reading]) -> None:
        try:
            response = await self.client.post(
                self.url,
                content=payload(readings),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise LinkError(f"HTTP: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise LinkError(f"HTTP {response.status_code}: {response.text[:200]}")

    async def close(self) -> None:
        return None


LinkFactory = Callable[[], Link]
