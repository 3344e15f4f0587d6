"""The MQTT transport: ThingsBoard's device API over MQTT 3.1, 3.1.1 and 5.

Strategy: one `MQTTProtocol` per connection feeds the sans-IO `mqtt.Connection` and handles
every packet of a network read in order, without a task per packet. The readings of all
PUBLISHes in one read become one pipeline job, and their PUBACKs one slot of the outbox that
becomes writable after the commit, so each read costs one job and one write. Keep-alive is
one periodic sweep over all connections (mosquitto's keepalive.c), not a timer each.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import orjson

from tinyboard.core.device_api import AttributeRequest, DeviceApi, rpc_request
from tinyboard.core.directory import DeviceDirectory
from tinyboard.core.gateway import (
    NO_GATEWAY_LIMITS,
    GatewayLimits,
    TooManyChildren,
    is_gateway,
)
from tinyboard.core.limits import NO_QUOTA, OverLimit
from tinyboard.core.models import AttributeRow, Device, OtaType, Reading, Value
from tinyboard.core.ota_download import DownloadRefused, DownloadSession, parse_size
from tinyboard.core.pipeline import Pipeline
from tinyboard.core.provisioning import Provisioning
from tinyboard.core.sessions import SessionHub
from tinyboard.errors import (
    DataValidationError,
    PayloadError,
    StorageError,
    StoreFullError,
    TinyboardError,
)
from tinyboard.mqtt.codec import encode
from tinyboard.mqtt.connection import CLOSED, NEED_DATA, Connection
from tinyboard.mqtt.errors import ProtocolError, UsageError
from tinyboard.mqtt.packets import (
    MQTT_5,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)
from tinyboard.mqtt.properties import NO_PROPERTIES, Properties
from tinyboard.mqtt.reasons import SUBACK_FAILURE, ConnectReturn, Reason
from tinyboard.mqtt.state import Role, State
from tinyboard.registry import Registry
from tinyboard.transports import thingsboard as tb
from tinyboard.transports.base import StreamProtocol, TransportServer
from tinyboard.transports.gateway import GatewaySession, Pending, Work
from tinyboard.transports.outbox import Slot

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
"""Seconds a new connection has to send CONNECT (counted from the TCP connection, not reset
by each byte: one byte every 2 s must not hold a connection for ever)."""
MAX_PENDING_READS = 8
"""Attribute requests of one connection answered at once; more wait, unread, in the socket."""
MAX_WAITING_REPLIES = 1 << 20
"""Bytes of replies queued behind uncommitted readings before the connection stops reading."""
DISK_FULL = "the server's disk is full; send the messages again later"
PROVISION_TIMEOUT = 60.0
"""Seconds a provisioning session lasts from its CONNECT (ThingsBoard closes one 60 s after
its answer; counting from CONNECT, one that never asks cannot linger either)."""
TOKEN_HELP = "the user name must be a device's access token: `tinyboard device token NAME`"


class MQTTServer(TransportServer):
    """Shared state of all MQTT connections; call it to make a protocol per connection."""

    name = "mqtt"

    def __init__(
        self,
        *,
        directory: DeviceDirectory,
        pipeline: Pipeline,
        registry: Registry,
        hub: SessionHub,
        api: DeviceApi,
        provisioning: Provisioning | None = None,
        max_packet_size: int = 65536,
        packet_timeout: float = 60.0,
        gateway_limits: GatewayLimits = NO_GATEWAY_LIMITS,
    ) -> None:
        super().__init__(registry)
        self.directory = directory
        self.pipeline = pipeline
        self.hub = hub
        self.api = api
        """What each ThingsBoard request means and answers: this shell only frames it."""
        self.max_packet_size = max_packet_size
        self.clocks = api.clocks
        self.limits = api.limits
        self.packet_timeout = packet_timeout
        self.sessions: dict[tuple[int, str], MQTTProtocol] = {}
        """Live sessions by (device, client id): a client id is taken over only within the
        same device (ThingsBoard keys sessions by device), never across devices."""
        self.connect_timeout = CONNECT_TIMEOUT
        self.gateway_limits = gateway_limits
        self.provisioning = provisioning
        """Answers `/provision/request` (core/provisioning.py); None: no provisioning."""
        self.provision_timeout = PROVISION_TIMEOUT

    def gateway_session(self, device: Device, link: MQTTProtocol, peer: str) -> GatewaySession:
        """The children's sessions of a gateway device's connection (transports/gateway.py)."""
        return GatewaySession(
            device,
            link,
            peer=peer,
            store=self.directory.store,
            registry=self.registry,
            hub=self.hub,
            api=self.api,
            limits=self.gateway_limits,
        )

    def __call__(self) -> MQTTProtocol:
        return MQTTProtocol(self)


class MQTTProtocol(StreamProtocol):
    def __init__(self, server: MQTTServer) -> None:
        super().__init__(server)
        self._server = server
        self._conn = Connection(Role.SERVER, max_packet_size=server.max_packet_size)
        self.device: Device | None = None
        self._client_id = ""
        self._loop = asyncio.get_running_loop()
        self._born = self._last_seen = self._loop.time()
        self._deadline = 0.0
        """Keep-alive × 1.5 once CONNECT arrived (0: none); before that, CONNECT_TIMEOUT
        counts from `_born`."""
        self._partial_since = 0.0
        """When the unfinished packet in the codec's buffer began arriving; 0: none."""
        self._feeds: dict[tb.Feed, int] = {}
        self._holds: set[str] = set()
        """Why buffered packets wait unhandled ("connect", "clock", "reads", "replies")."""
        self._pending_reads = 0
        self._quota = NO_QUOTA
        """What the device may send in the read being handled (core/limits.py)."""
        self._connacked = False
        self._provision_until = 0.0
        """A provisioning session (no device) ends at this loop time; 0: not one."""
        self._told_topic = False
        """An unknown publish topic was logged (once per connection)."""
        self._qos2: set[int] = set()
        self._inflight: dict[int, asyncio.Future[None]] = {}
        self._next_id = 0
        self._downloads: DownloadSession | None = None
        """OTA chunk requests' ids (core/ota_download.py), made at the first one."""
        # What one read produced: replies and the job for the pipeline.
        self._acks: list[bytes] = []
        self._readings: list[Reading] = []
        self._attributes: list[AttributeRow] = []
        self._gateway: GatewaySession | None = None
        """Set when the device is a gateway (`additionalInfo.gateway`)."""

    # -- asyncio callbacks ---------------------------------------------------------------
    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        server = self._server
        if self._gateway is not None:
            self._gateway.close()
        if self.device is not None:
            server.hub.remove(self.device, self)
            session = (self.device.key, self._client_id)
            if server.sessions.get(session) is self:
                del server.sessions[session]
        for waiter in self._inflight.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("the device disconnected"))
        self._inflight.clear()

    def data_received(self, data: bytes) -> None:
        assert self._client is not None
        self._client.bytes_in += len(data)
        self._last_seen = self._loop.time()
        if self._done:
            return
        self._conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        self._conn.receive_data(b"")
        self._process()
        return True

    # -- packet handling -----------------------------------------------------------------
    def _process(self) -> None:
        """Handle every complete packet buffered, then hand the read's job to the pipeline."""
        conn = self._conn
        client = self._client
        assert client is not None
        handled = False
        server = self._server
        server.clocks.tick()
        room = 0  # stamps this read may still take before the clock is looked at again
        device = self.device
        if device is not None:
            self._quota = server.limits.quota(device.key, self._last_seen)
        try:
            while not (self._holds or self._done):
                if self.device is not None:
                    if room <= 0:
                        if self._clock_ahead(self.device):
                            break
                        room = server.clocks.room(self.device.key)
                    room -= 1  # any packet may take a stamp: count every one
                event = conn.next_event()
                if event is NEED_DATA:
                    self._track_partial(handled)
                    break
                if event is CLOSED:
                    self._finish()
                    break
                handled = True
                client.messages_in += 1
                _HANDLERS[event.type](self, event)
        except ProtocolError as exc:
            self._refuse(exc)
        finally:
            if device is not None:
                self._quota.spend()
                self._quota = NO_QUOTA
            self._submit()

    def _track_partial(self, handled: bool) -> None:
        """Start the unfinished-packet deadline when a new partial packet is buffered."""
        if not self._conn.buffered:
            self._partial_since = 0.0
        elif handled or not self._partial_since:
            self._partial_since = self._last_seen

    def _clock_ahead(self, device: Device) -> bool:
        """Hold the connection while the device's server clock is at its lead bound."""
        wait_ms = self._server.clocks.wait_ms(device.key)
        if wait_ms:
            self._hold("clock")
            self._loop.call_later(wait_ms / 1000, self._release, "clock")
        return bool(wait_ms)

    def _hold(self, reason: str) -> None:
        """Stop handling buffered packets and stop reading until `_release(reason)`."""
        self._holds.add(reason)
        self.pause(reason)

    def _release(self, reason: str) -> None:
        if reason not in self._holds:
            return
        self._holds.discard(reason)
        self.resume(reason)
        if not (self._holds or self._done):
            self._process()

    def _submit(self) -> None:
        acks, readings, attributes = self._acks, self._readings, self._attributes
        if not (acks or readings or attributes):
            return
        self._acks, self._readings, self._attributes = [], [], []
        slot = Slot(b"".join(acks), not (readings or attributes), len(acks))
        if acks:
            self._out.put(slot)
        if readings or attributes:
            pipeline = self._server.pipeline
            if not pipeline.submit(readings, partial(self._committed, slot), attributes):
                self.pause("pipeline")
                pipeline.when_space(partial(self.resume, "pipeline"))

    def _committed(self, slot: Slot, error: BaseException | None) -> None:
        if error is None:
            if slot.data:
                self._out.ready(slot)
            return
        # Unacknowledged: the device sends these again after it reconnects.
        if not isinstance(error, StoreFullError):
            log.error("MQTT client %s: readings not stored: %s", self._peer, error)
        elif self._conn.is_v5:  # (a full disk is logged by the pipeline, not per client)
            self._disk_full(slot)
            return
        self.abort()

    def _disk_full(self, slot: Slot) -> None:
        """MQTT 5: DISCONNECT 0x97 saying why, after the replies already committed, and
        never the PUBACKs of this slot (the pipeline has logged the cause)."""
        queued = bool(slot.data)  # `_submit` queues a slot only when it holds replies
        slot.data, slot.count = b"", 0
        if not self._done:
            reason = Properties(reason_string=DISK_FULL)
            final = encode(Disconnect(reason=Reason.QUOTA_EXCEEDED, properties=reason), MQTT_5)
            self._close_after_replies(final)
        if queued:
            self._out.ready(slot)
        if self._out.queued <= MAX_WAITING_REPLIES // 2:
            self._release("replies")

    def _on_connect(self, packet: Connect) -> None:
        self._deadline = packet.keep_alive * 1.5
        client_id = packet.client_id
        if not client_id:
            if not packet.clean_start and packet.protocol_level != MQTT_5:
                self._connack(ConnectReturn.IDENTIFIER_REJECTED)  # [MQTT-3.1.3-8]
                return
            client_id = "tinyboard-" + secrets.token_hex(8)
        self._client_id = client_id
        if tb.PROVISION in (packet.username, packet.client_id) and self._server.provisioning:
            self._provision_session()
            return
        if not packet.username:
            log.info("MQTT client %s: no user name; refused (%s)", self._peer, TOKEN_HELP)
            self._connack(ConnectReturn.BAD_USERNAME_OR_PASSWORD, Reason.BAD_USERNAME_OR_PASSWORD)
            return
        self._hold("connect")
        self._server.spawn(self._authenticate(packet.username, assigned=not packet.client_id))

    async def _authenticate(self, token: str, *, assigned: bool) -> None:
        try:
            device = await self._server.directory.by_token(token)
        except StorageError as exc:
            log.error("token lookup failed: %s", exc)
            self._connack(ConnectReturn.SERVER_UNAVAILABLE, Reason.SERVER_UNAVAILABLE)
            return
        if self._done:
            return
        if device is None:
            log.info("MQTT client %s: unknown token; refused (%s)", self._peer, TOKEN_HELP)
            self._connack(ConnectReturn.NOT_AUTHORIZED, Reason.BAD_USERNAME_OR_PASSWORD)
            return
        server = self._server
        session = (device.key, self._client_id)
        previous = server.sessions.get(session)
        if previous is not None and previous is not self:
            previous.take_over()
        server.sessions[session] = self
        self.device = device
        assert self._client is not None
        self._client.device = device
        server.hub.add(device, self)
        if is_gateway(device):
            self._gateway = server.gateway_session(device, self, self._peer)
        props = NO_PROPERTIES
        if self._conn.is_v5:
            props = Properties(
                maximum_qos=1,
                maximum_packet_size=server.max_packet_size,
                shared_subscription_available=0,
                subscription_identifier_available=0,
                assigned_client_identifier=self._client_id if assigned else None,
            )
        self._send(ConnAck(properties=props))
        self._connacked = True
        self._release("connect")

    def _provision_session(self) -> None:
        """ThingsBoard's provision-only session: accepted without a token; it may only
        publish `/provision/request` and subscribe `/provision/response`."""
        self._provision_until = self._loop.time() + self._server.provision_timeout
        props = NO_PROPERTIES
        if self._conn.is_v5:
            props = Properties(maximum_qos=1, maximum_packet_size=self._server.max_packet_size)
        self._send(ConnAck(properties=props))
        self._connacked = True

    def _provision_publish(self, packet: Publish) -> None:
        if packet.qos == 2 and self._conn.is_v5:
            raise ProtocolError("QoS 2 is not supported (CONNACK said maximum QoS 1)", 0x9B)
        if packet.topic != tb.PROVISION_REQUEST:
            why = f"a provisioning session may only publish {tb.PROVISION_REQUEST}"
            log.info("MQTT client %s: publish to %r refused: %s", self._peer, packet.topic, why)
            self._ack(packet, Reason.TOPIC_NAME_INVALID)
            final = b""
            if self._conn.is_v5:
                props = Properties(reason_string=why)
                disconnect = Disconnect(reason=Reason.TOPIC_NAME_INVALID, properties=props)
                final = encode(disconnect, MQTT_5)
            self._close_after_replies(final)
            return
        self._hold("provision")  # one request at a time, answered in order
        self._server.spawn(self._provision(packet))

    async def _provision(self, packet: Publish) -> None:
        provisioning = self._server.provisioning
        assert provisioning is not None
        address = self._peer.rpartition(":")[0] or self._peer
        try:
            answer = await provisioning.provision(packet.payload, address)
        except PayloadError as exc:
            self._payload_refused(packet, str(exc))
        else:
            if not self._done:
                self._ack(packet)
                self._submit()
                self._answer(tb.PROVISION_RESPONSE, answer.as_json())
        finally:
            self._submit()
            self._release("provision")

    def _connack(self, v3: int, v5: int | None = None) -> None:
        """Refuse the connection: CONNACK with the version's code, then close."""
        reason = v5 if self._conn.is_v5 and v5 is not None else v3
        self._send(ConnAck(reason=reason))
        self._close_after_replies()

    def _on_publish(self, packet: Publish) -> None:
        if self._provision_until:
            self._provision_publish(packet)
            return
        device = self.device
        assert device is not None
        if packet.qos == 2:
            if self._conn.is_v5:
                raise ProtocolError("QoS 2 is not supported (CONNACK said maximum QoS 1)", 0x9B)
            if packet.packet_id in self._qos2:  # a resent QoS 2 message: already stored
                self._acks.append(self._conn.send(PubRec(packet_id=packet.packet_id)))
                return
        if packet.topic.startswith(tb.GATEWAY_PREFIX):
            self._gateway_publish(packet)
            return
        target = tb.route(packet.topic)
        if target is None:
            if not self._ota_request(device, packet):
                self._unknown_topic(packet)
            return
        kind, request_id = target
        try:
            if not self._quota.message():
                raise self._server.api.over_limit()
            _ROUTES[kind](self, device, packet.payload, request_id)
        except PayloadError as exc:
            self._payload_refused(packet, str(exc))
            return
        except OverLimit as exc:
            self._rate_limited(exc)
            return
        self._ack(packet)

    def _rate_limited(self, why: OverLimit) -> None:
        """ThingsBoard's answer to a device over its rate limit: no PUBACK, and the session
        ends (MQTT 5: DISCONNECT 0x83 saying why first); the device resends after
        reconnecting."""
        log.info("MQTT client %s: %s; closing", self._peer, why)
        final = b""
        if self._conn.is_v5:
            props = Properties(reason_string=str(why))
            disconnect = Disconnect(reason=Reason.IMPLEMENTATION_SPECIFIC_ERROR, properties=props)
            final = encode(disconnect, MQTT_5)
        self._close_after_replies(final)

    def _ack(self, packet: Publish, reason: int = Reason.SUCCESS) -> None:
        """PUBACK (QoS 1) or PUBREC (QoS 2) with `reason` (MQTT 5 only: MQTT 3 has none)."""
        packet_id = cast(int, packet.packet_id)
        if packet.qos == 1 and not reason:
            self._acks.append(self._conn.ack(packet_id))  # the hot path
        elif packet.qos == 1:
            self._acks.append(self._conn.send(PubAck(packet_id=packet_id, reason=reason)))
        elif packet.qos == 2:
            self._qos2.add(packet_id)
            self._acks.append(self._conn.send(PubRec(packet_id=packet_id, reason=reason)))

    def _unknown_topic(self, packet: Publish) -> None:
        """ThingsBoard (MqttTransportHandler.processDevicePublish, last branch): a topic it
        does not have is acknowledged, with 0x90 topic name invalid on MQTT 5 and a plain
        PUBACK on MQTT 3; nothing is stored and the session goes on."""
        if not self._told_topic:  # once per connection: a board may send it every second
            self._told_topic = True
            hint = tb.ota_hint(packet.topic) or tb.topic_hint(packet.topic)
            log.info(
                "MQTT client %s: nothing stored from topic %r: %s", self._peer, packet.topic, hint
            )
        self._ack(packet, Reason.TOPIC_NAME_INVALID)

    def _payload_refused(self, packet: Publish, why: str) -> None:
        """ThingsBoard's answer to a payload it cannot read (MqttTransportHandler.
        sendResponseForAdaptorErrorOrCloseContext): an MQTT 5 QoS 1 message gets PUBACK 0x99
        and the session goes on; any other has no ack to carry the reason, so the session
        ends (MQTT 5: DISCONNECT 0x99 saying why). Nothing of the message is stored."""
        log.info("MQTT client %s: payload on %r refused: %s", self._peer, packet.topic, why)
        if self._conn.is_v5 and packet.qos:
            self._ack(packet, Reason.PAYLOAD_FORMAT_INVALID)
            return
        final = b""
        if self._conn.is_v5:
            props = Properties(reason_string=f"payload on {packet.topic} refused: {why}"[:500])
            disconnect = Disconnect(reason=Reason.PAYLOAD_FORMAT_INVALID, properties=props)
            final = encode(disconnect, MQTT_5)
        self._close_after_replies(final)

    # -- ThingsBoard routes: framing only, the meaning is core/device_api.py's -----------
    def _telemetry(self, device: Device, payload: bytes, _: int) -> None:
        self._readings += self._server.api.telemetry(device, payload, self._quota.telemetry_message)

    def _client_attributes(self, device: Device, payload: bytes, _: int) -> None:
        self._attributes += self._server.api.client_attributes(device, payload)

    def _attribute_request(self, device: Device, payload: bytes, request_id: int) -> None:
        request = AttributeRequest.from_json(payload)
        self._pending_reads += 1
        if self._pending_reads >= MAX_PENDING_READS:
            self._hold("reads")
        self._server.spawn(self._answer_attributes(device, request_id, request))

    async def _answer_attributes(
        self, device: Device, request_id: int, request: AttributeRequest
    ) -> None:
        try:
            values = await self._server.api.attributes(device, request)
        except StorageError as exc:
            log.error("MQTT client %s: attribute request failed: %s", self._peer, exc)
        else:
            self._answer(tb.ATTRIBUTES_RESPONSE + str(request_id), values)
        finally:
            self._pending_reads -= 1
            self._release("reads")

    def _answer(self, topic: str, document: Any) -> None:
        """A QoS 0 reply; replies piling up behind unacknowledged readings stop reading."""
        if self._done:
            return  # the device is gone: nobody to answer
        self.publish(topic, document, qos=0).add_done_callback(_outcome_seen)
        if self._out.queued > MAX_WAITING_REPLIES:
            self._hold("replies")

    def _rpc_response(self, device: Device, payload: bytes, request_id: int) -> None:
        self._server.api.rpc_reply(device, request_id, payload)

    def _client_rpc(self, _: Device, payload: bytes, request_id: int) -> None:
        self._answer(tb.RPC_RESPONSE + str(request_id), self._server.api.client_rpc(payload))

    def _ota_request(self, device: Device, packet: Publish) -> bool:
        """`v2/fw/request/{id}/chunk/{n}` (or `v2/sw/...`), False for another topic. As
        ThingsBoard: PUBACK, then the chunk on `v2/fw/response/{id}/chunk/{n}`; a refusal
        gets no PUBACK, its status on `v2/fw/error`, and the session ends. One chunk is
        read at a time: the connection's next packets wait in the socket meanwhile."""
        route = tb.ota_route(packet.topic)
        downloads = self._server.api.downloads
        if route is None or downloads is None:
            return False
        if not self._quota.message():
            self._rate_limited(self._server.api.over_limit())
            return True
        try:
            size = parse_size(packet.payload)
        except PayloadError as exc:
            self._payload_refused(packet, str(exc))
            return True
        if self._downloads is None:
            self._downloads = DownloadSession(downloads)
        self._hold("chunk")
        self._server.spawn(self._send_chunk(device, packet, route, size))
        return True

    async def _send_chunk(
        self, device: Device, packet: Publish, route: tuple[OtaType, int, int], size: int | None
    ) -> None:
        type, request_id, index = route
        assert self._downloads is not None
        try:
            data = await self._downloads.answer(device, type, request_id, index, size)
        except (DownloadRefused, StorageError) as exc:
            status = exc.status if isinstance(exc, DownloadRefused) else "FAILURE"
            log.info("MQTT client %s: %s download refused: %s", self._peer, type.lower(), exc)
            self.publish_bytes(tb.FW_ERROR, status.encode(), qos=1).add_done_callback(_outcome_seen)
            self._close_after_replies()
        else:
            if not self._done:
                self._ack(packet)
                self._submit()
                topic = f"{tb.OTA_RESPONSES[type]}{request_id}/chunk/{index}"
                qos = self._feeds.get(tb.CHUNK_FEEDS[type], 1)
                self.publish_bytes(topic, data, qos=qos).add_done_callback(_outcome_seen)
        finally:
            self._release("chunk")

    # -- ThingsBoard's gateway API: the meaning is transports/gateway.py's --------------
    def _gateway_publish(self, packet: Publish) -> None:
        gateway = self._gateway
        if gateway is None:
            self._not_a_gateway(packet)
            return
        try:
            if not self._quota.message():
                raise self._server.api.over_limit()
            work = gateway.receive(packet.topic, packet.payload, self._quota)
        except PayloadError as exc:
            self._payload_refused(packet, str(exc))
            return
        except OverLimit as exc:
            self._rate_limited(exc)
            return
        if work is None:
            self._unknown_topic(packet)
        elif isinstance(work, Work):
            self._gateway_done(packet, work)
        else:  # children to find or create first: later packets wait, in order
            self._hold("gateway")
            self._server.spawn(self._gateway_later(packet, work))

    def _not_a_gateway(self, packet: Publish) -> None:
        """ThingsBoard (MqttTransportHandler.processPublish): a device that is not a
        gateway gets nothing for a gateway topic, not even a PUBACK; the session goes on."""
        if not self._told_topic:
            self._told_topic = True
            log.info(
                "MQTT client %s: %r ignored: device %r is not a gateway (set its "
                "additionalInfo.gateway to true, or `tinyboard device add --gateway`)",
                self._peer,
                packet.topic,
                self.device.name if self.device else "",
            )

    def _gateway_done(self, packet: Publish, work: Work) -> None:
        self._readings += work.readings
        self._attributes += work.attributes
        self._ack(packet)
        if work.answer is not None:
            self._answer(*work.answer)

    async def _gateway_later(self, packet: Publish, pending: Pending) -> None:
        try:
            work = await pending
        except TinyboardError as exc:
            if not self._done:
                self._gateway_refused(packet, exc)
        except Exception:  # a bug: this connection ends, nobody else is affected
            log.exception("MQTT client %s: gateway message failed", self._peer)
            self._close_after_replies()
        else:
            if not self._done:
                self._gateway_done(packet, work)
        finally:
            self._submit()
            self._release("gateway")

    def _gateway_refused(self, packet: Publish, why: TinyboardError) -> None:
        """Too many children: 0x97; the store failing: the session ends unacknowledged;
        anything else (a payload, a profile name the store refuses) is a bad payload."""
        if isinstance(why, TooManyChildren):
            self._too_many_children(packet, why)
        elif isinstance(why, StorageError) and not isinstance(why, DataValidationError):
            log.error("MQTT client %s: gateway message not handled: %s", self._peer, why)
            self._close_after_replies()
        else:
            self._payload_refused(packet, str(why))

    def _too_many_children(self, packet: Publish, why: TooManyChildren) -> None:
        """ThingsBoard's answer when it may not create a gateway's device: MQTT 5 PUBACK
        0x97 quota exceeded (with the reason), the session goes on. MQTT 3 has no reason
        codes, and a plain PUBACK would tell the gateway its data was stored: the session
        ends instead (ThingsBoard sends the PUBACK). Nothing of the message is stored."""
        log.info("MQTT client %s: gateway message refused: %s", self._peer, why)
        if self._conn.is_v5 and packet.qos:
            props = Properties(reason_string=str(why)[:500])
            packet_id = cast(int, packet.packet_id)
            ack = PubAck(packet_id=packet_id, reason=Reason.QUOTA_EXCEEDED, properties=props)
            self._acks.append(self._conn.send(ack))
            return
        final = b""
        if self._conn.is_v5:
            props = Properties(reason_string=str(why)[:500])
            final = encode(Disconnect(reason=Reason.QUOTA_EXCEEDED, properties=props), MQTT_5)
        self._close_after_replies(final)

    def subscribed(self, feed: tb.Feed) -> int | None:
        """The QoS this connection was granted for `feed`; None: not subscribed."""
        return self._feeds.get(feed)

    # -- other packets -------------------------------------------------------------------
    def _on_puback(self, packet: PubAck) -> None:
        waiter = self._inflight.pop(packet.packet_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_pubrel(self, packet: PubRel) -> None:
        self._qos2.discard(packet.packet_id)
        self._acks.append(self._conn.send(PubComp(packet_id=packet.packet_id)))

    def _on_subscribe(self, packet: Subscribe) -> None:
        reasons = []
        table = tb.PROVISION_SUBSCRIPTIONS if self._provision_until else tb.SUBSCRIPTIONS
        for sub in packet.subscriptions:
            feed = table.get(sub.topic_filter)
            if feed is None:
                reasons.append(SUBACK_FAILURE)
            else:
                self._feeds[feed] = qos = min(sub.qos, 1)
                reasons.append(qos)
        self._acks.append(
            self._conn.send(SubAck(packet_id=packet.packet_id, reasons=tuple(reasons)))
        )

    def _on_unsubscribe(self, packet: Unsubscribe) -> None:
        reasons = []
        table = tb.PROVISION_SUBSCRIPTIONS if self._provision_until else tb.SUBSCRIPTIONS
        for topic_filter in packet.topic_filters:
            feed = table.get(topic_filter)
            existed = feed is not None and self._feeds.pop(feed, None) is not None
            reasons.append(Reason.SUCCESS if existed else Reason.NO_SUBSCRIPTION_EXISTED)
        unsuback = UnsubAck(
            packet_id=packet.packet_id, reasons=tuple(reasons) if self._conn.is_v5 else ()
        )
        self._acks.append(self._conn.send(unsuback))

    def _on_pingreq(self, _: Packet) -> None:
        self._acks.append(self._conn.send(PingResp()))

    def _on_disconnect(self, _: Packet) -> None:
        self._finish()

    def _on_ignored(self, _: Packet) -> None:
        """PUBREC/PUBCOMP: we never send QoS 2, so there is nothing to continue."""

    def _on_auth(self, _: Packet) -> None:
        raise ProtocolError("enhanced authentication is not supported", 0x8C)

    # -- device session (core.sessions.DeviceSession) ------------------------------------
    @property
    def wants_attributes(self) -> bool:
        return tb.Feed.ATTRIBUTE_UPDATES in self._feeds

    @property
    def wants_rpc(self) -> bool:
        return tb.Feed.RPC_REQUESTS in self._feeds

    def push_attributes(self, values: dict[str, Value]) -> asyncio.Future[None]:
        qos = self._feeds.get(tb.Feed.ATTRIBUTE_UPDATES, 0)
        return self.publish(tb.ATTRIBUTES, values, qos=qos)

    def push_rpc(self, request_id: int, method: str, params: Any) -> asyncio.Future[None]:
        qos = self._feeds.get(tb.Feed.RPC_REQUESTS, 0)
        request = rpc_request(request_id, method, params, with_id=False)  # the id: in the topic
        return self.publish(tb.RPC_REQUEST + str(request_id), request, qos=qos)

    def publish(self, topic: str, document: Any, *, qos: int) -> asyncio.Future[None]:
        """Send JSON to the device; the future completes when it has it (PUBACK for QoS 1)."""
        return self.publish_bytes(topic, orjson.dumps(document), qos=qos)

    def publish_bytes(self, topic: str, payload: bytes, *, qos: int) -> asyncio.Future[None]:
        """Send `payload` as it is (an OTA chunk, an error text); as `publish`."""
        delivered: asyncio.Future[None] = self._loop.create_future()
        if self._done or self._conn.state is not State.CONNECTED:
            delivered.set_exception(ConnectionError("the device is not connected"))
            return delivered
        packet_id = self._new_packet_id() if qos else None
        packet = Publish(topic=topic, payload=payload, qos=qos, packet_id=packet_id)
        try:
            self._out.put(Slot(self._conn.send(packet), True))
        except UsageError as exc:
            delivered.set_exception(TinyboardError(str(exc)))
            return delivered
        if packet_id is None:
            delivered.set_result(None)
        else:
            self._inflight[packet_id] = delivered
        return delivered

    def _new_packet_id(self) -> int:
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._inflight:
                return self._next_id
        raise TinyboardError("the device has 65535 unacknowledged messages")

    # -- writing and closing -------------------------------------------------------------
    def _send(self, packet: Packet) -> None:
        self._out.put(Slot(self._conn.send(packet), True))

    def _close_after_replies(self, final: bytes = b"") -> None:
        """Stop reading; close once every reply queued before now has been written (the
        replies of this read's earlier packets included)."""
        self._submit()
        self._done = True
        self._out.put(Slot(final, True, 0, close_after=True))

    def _finish(self) -> None:
        """The client said DISCONNECT or closed its side: flush replies, then close."""
        self._close_after_replies()

    def _refuse(self, exc: ProtocolError) -> None:
        """Answer a protocol violation as MQTT 5 asks (CONNACK or DISCONNECT with a reason);
        MQTT 3 clients are just disconnected."""
        log.info("MQTT client %s broke the protocol: %s", self._peer, exc)
        final = b""
        if self._conn.is_v5 or exc.reason == Reason.UNSUPPORTED_PROTOCOL_VERSION:
            if self._connacked:
                final = encode(Disconnect(reason=exc.reason), MQTT_5)
            elif self._conn.is_v5:
                final = encode(ConnAck(reason=exc.reason), MQTT_5)
            else:
                final = encode(ConnAck(reason=ConnectReturn.UNACCEPTABLE_PROTOCOL_VERSION), 4)
        self._close_after_replies(final)

    def take_over(self) -> None:
        """Another connection with our client id arrived: it wins [MQTT-3.1.4-3]."""
        final = (
            encode(Disconnect(reason=Reason.SESSION_TAKEN_OVER), MQTT_5)
            if self._conn.is_v5
            else b""
        )
        if self.device is not None:
            self._server.hub.remove(self.device, self)
        self._close_after_replies(final)

    def check_alive(self, now: float) -> None:
        """Close a connection that missed a deadline: CONNECT within `connect_timeout` of
        connecting, a packet within 1.5× keep-alive, and a started packet finished within
        `packet_timeout` (even with keep-alive 0). Held connections wait on us, not the
        client, and are left alone."""
        if self._done or (self._pauses and self._connacked):
            return
        server = self._server
        if not self._connacked:
            if now - self._born <= server.connect_timeout:
                return
            why = f"no CONNECT within {server.connect_timeout:g} s"
        elif self._provision_until and now > self._provision_until:
            why = f"a provisioning session lasts {server.provision_timeout:g} s"
        elif self._partial_since and now - self._partial_since > server.packet_timeout:
            why = f"a packet stayed unfinished for {server.packet_timeout:g} s"
        elif self._deadline and now - self._last_seen > self._deadline:
            why = "keep-alive expired"
        else:
            return
        log.info("MQTT client %s: %s; closing", self._peer, why)
        final = b""
        if self._conn.is_v5 and self._connacked:
            final = encode(Disconnect(reason=Reason.KEEP_ALIVE_TIMEOUT), MQTT_5)
        self._close_after_replies(final)


def _outcome_seen(delivered: asyncio.Future[None]) -> None:
    """A reply nobody waits for: look at its outcome so asyncio does not log it as lost."""
    if not delivered.cancelled():
        delivered.exception()


_HANDLERS: dict[PacketType, Callable[[MQTTProtocol, Any], None]] = {
    PacketType.CONNECT: MQTTProtocol._on_connect,
    PacketType.PUBLISH: MQTTProtocol._on_publish,
    PacketType.PUBACK: MQTTProtocol._on_puback,
    PacketType.PUBREC: MQTTProtocol._on_ignored,
    PacketType.PUBREL: MQTTProtocol._on_pubrel,
    PacketType.PUBCOMP: MQTTProtocol._on_ignored,
    PacketType.SUBSCRIBE: MQTTProtocol._on_subscribe,
    PacketType.UNSUBSCRIBE: MQTTProtocol._on_unsubscribe,
    PacketType.PINGREQ: MQTTProtocol._on_pingreq,
    PacketType.DISCONNECT: MQTTProtocol._on_disconnect,
    PacketType.AUTH: MQTTProtocol._on_auth,
}
_ROUTES: dict[tb.Route, Callable[[MQTTProtocol, Device, bytes, int], None]] = {
    tb.Route.TELEMETRY: MQTTProtocol._telemetry,
    tb.Route.ATTRIBUTES: MQTTProtocol._client_attributes,
    tb.Route.ATTRIBUTE_REQUEST: MQTTProtocol._attribute_request,
    tb.Route.RPC_RESPONSE: MQTTProtocol._rpc_response,
    tb.Route.CLIENT_RPC: MQTTProtocol._client_rpc,
}
