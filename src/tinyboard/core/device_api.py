"""ThingsBoard's device API, written once for every transport that carries it.

Strategy: a transport frames and routes. It finds the device (by its token), tells which
request a message is (an MQTT topic, an HTTP path) and hands over the payload bytes; then it
carries the answer back (a PUBACK and a publish, an HTTP status and body). Everything in
between lives here, the same for MQTT and HTTP (and later CoAP): how a payload is parsed and
stamped, what it counts against the device's rate limits, which attributes a request reads,
what a client-side RPC answers, what a server-side RPC request looks like and what a
device's reply to one is. Nothing here does I/O of its own; what needs the store awaits
the core services.

A payload the device got wrong raises `PayloadError` (MQTT: PUBACK 0x99 or the session
ends; HTTP: 400); a device over its rate limit gets `OverLimit` (MQTT: the session ends;
HTTP: 429).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tinyboard.core.attributes import AttributeService, Keys
from tinyboard.core.clock import DeviceClocks
from tinyboard.core.ingest import parse_attributes, parse_json, telemetry_from_json
from tinyboard.core.limits import DeviceLimits, OverLimit
from tinyboard.core.models import AttributeRow, Device, Reading, Value
from tinyboard.core.ota_download import OtaDownloads
from tinyboard.core.rpc import RpcService
from tinyboard.errors import PayloadError

SESSION_LIMITS = "getSessionLimits"
"""The client-side RPC method ThingsBoard's transport answers itself."""
CLIENT_RPC_SHAPE = 'a client-side RPC is {"method": "...", "params": {...}}'
ATTRIBUTE_REQUEST_SHAPE = 'an attribute request is a JSON object like {"sharedKeys": "a,b"}'


@dataclass(frozen=True, slots=True)
class AttributeRequest:
    """Which client and shared attributes a device asks for; None: every key of that scope.

    As ThingsBoard (`DeviceActorMessageProcessor.getAttributesKvEntries`): naming no key of
    either scope asks for all of both; naming keys of one scope only reads that scope.
    """

    client: Keys
    shared: Keys

    @classmethod
    def of(cls, client_keys: object, shared_keys: object) -> AttributeRequest:
        """From `clientKeys` / `sharedKeys` as sent: comma-separated text (or a list of
        keys), None when not sent."""
        if client_keys is None and shared_keys is None:
            return cls(None, None)
        return cls(_keys(client_keys), _keys(shared_keys))

    @classmethod
    def from_json(cls, payload: bytes) -> AttributeRequest:
        """From a JSON body `{"clientKeys": "a,b", "sharedKeys": "c"}` (MQTT's)."""
        doc = parse_json(payload)
        if not isinstance(doc, dict):
            raise PayloadError(ATTRIBUTE_REQUEST_SHAPE)
        return cls.of(doc.get("clientKeys"), doc.get("sharedKeys"))


def _keys(raw: object) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [k.strip() for k in raw.split(",") if k.strip()]
    if isinstance(raw, list) and all(isinstance(k, str) for k in raw):
        return raw
    raise PayloadError("clientKeys and sharedKeys are comma-separated strings")


def rpc_request(request_id: int, method: str, params: Any, *, with_id: bool) -> dict[str, Any]:
    """A server-side RPC request as the device receives it (ThingsBoard's
    `JsonConverter.toJson(ToDeviceRpcRequestMsg, includeRequestId)`): MQTT carries the id
    in the topic, HTTP in the body."""
    if with_id:
        return {"id": request_id, "method": method, "params": params}
    return {"method": method, "params": params}


class DeviceApi:
    """What each device request means and answers; the transports call it with bytes."""

    def __init__(
        self,
        *,
        clocks: DeviceClocks,
        limits: DeviceLimits,
        attributes: AttributeService,
        rpc: RpcService,
        downloads: OtaDownloads | None = None,
    ) -> None:
        self.clocks = clocks
        self.limits = limits
        self._attributes = attributes
        self._rpc = rpc
        self.downloads = downloads
        """OTA package downloads (core/ota_download.py); None: a server without a store."""

    def over_limit(self) -> OverLimit:
        """The refusal of a message over the device's rate limits, saying which they are."""
        limits = self.limits.describe()
        return OverLimit(f"this device is over its rate limit ({limits}); send it again later")

    def telemetry(
        self, device: Device, payload: bytes, allow: Callable[[int], bool]
    ) -> list[Reading]:
        """The readings of a telemetry message in any of ThingsBoard's shapes, stamped by the
        device's server clock where they carry no `ts`. `allow(values)` counts the message
        against the device's telemetry limits (False: refused)."""
        readings = telemetry_from_json(parse_json(payload), device.key, self.clocks)
        if not allow(len(readings)):
            raise self.over_limit()
        return readings

    def client_attributes(self, device: Device, payload: bytes) -> list[AttributeRow]:
        """The rows of a client-attributes message (a flat JSON object), one stamp for all."""
        values = parse_attributes(payload)
        ts = self.clocks.stamp(device.key)
        return [(device.key, "CLIENT", key, ts, value) for key, value in values.items()]

    async def attributes(
        self, device: Device, request: AttributeRequest
    ) -> dict[str, dict[str, Value]]:
        """The answer to an attribute request: `{"client": {...}, "shared": {...}}`, empty
        sections left out (ThingsBoard's `JsonConverter.toJson(GetAttributeResponseMsg)`)."""
        return await self._attributes.read_for_device(device, request.client, request.shared)

    def client_rpc(self, payload: bytes) -> dict[str, Any]:
        """The answer to a device-initiated RPC `{"method": ..., "params": ...}`. tinyboard
        has no rule engine to hand other methods to, so only ThingsBoard's built-in
        `getSessionLimits` (MqttTransportHandler.onGetSessionLimitsRpc) is served, over every
        transport, with the limits that are enforced; other methods get `{"error": ...}`."""
        doc = parse_json(payload)
        method = doc.get("method") if isinstance(doc, dict) else None
        if not isinstance(method, str):
            raise PayloadError(CLIENT_RPC_SHAPE)
        if method == SESSION_LIMITS:
            return self.limits.session_limits()
        return {"error": f"unsupported method {method!r}: tinyboard serves {SESSION_LIMITS}"}

    def rpc_reply(self, device: Device, request_id: int, payload: bytes) -> None:
        """A device's reply to server-side RPC `request_id`, taken as it came: ThingsBoard
        forwards the payload as text on both transports (JsonMqttAdaptor.
        processToDeviceRpcResponseMsg, DeviceApiController.replyToCommand), and what it
        means to the caller is decided there (`RpcService.call`). A late or unknown reply
        is dropped."""
        self._rpc.resolve(device.id, request_id, payload)
