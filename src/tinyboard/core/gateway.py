"""ThingsBoard's gateway API: what a gateway's messages mean, for the devices behind it.

Strategy: a gateway is a device whose `additionalInfo` says `"gateway": true` (ThingsBoard's
`DataConstants.GATEWAY_PARAMETER`). Its messages name child devices; each child is found by
name, or created on first mention (with the profile named by `type`, as
`DefaultTransportApiService.handle(GetOrCreateDeviceFromGatewayRequestMsg)` does) and
marked with `additionalInfo.lastConnectedGateway`, the gateway's id, as ThingsBoard records
it. A message is parsed and checked whole (with the device API's payload rules, from
core/ingest.py) before any child is created, and how many children one message may create
is bounded (`GatewayLimits`), so a bad or oversized message creates and stores nothing.
The transport (transports/gateway.py) carries children's sessions and the answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from tinyboard.core.devices import check_name
from tinyboard.core.ingest import Stamps, attributes_from_json, parse_json, telemetry_from_json
from tinyboard.core.models import AttributeRow, Device, Reading, Value
from tinyboard.errors import ConflictError, NotFoundError, PayloadError, TinyboardError
from tinyboard.storage.base import Store

GATEWAY = "gateway"
"""The `additionalInfo` flag that makes a device a gateway."""
LAST_CONNECTED_GATEWAY = "lastConnectedGateway"
"""The `additionalInfo` field of a child: the id of the gateway that last named it."""
DEFAULT_MAX_NEW_CHILDREN = 1000
DEFAULT_MAX_CHILDREN = 10_000


class TooManyChildren(TinyboardError):
    """A gateway message would create or connect more children than allowed (MQTT 5:
    PUBACK 0x97 quota exceeded, as ThingsBoard answers its device limit)."""


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    """`max_new`: children one message may create; `max_connected`: children one gateway
    connection may have connected at once (each costs a session)."""

    max_new: int = DEFAULT_MAX_NEW_CHILDREN
    max_connected: int = DEFAULT_MAX_CHILDREN


NO_GATEWAY_LIMITS = GatewayLimits()
"""The defaults (for servers built without settings, e.g. in tests)."""


def is_gateway(device: Device) -> bool:
    """ThingsBoard's check (`MqttTransportHandler.checkGatewaySession`): the flag read with
    Jackson's `asBoolean`, so `true` and `"true"` both count."""
    info = device.additional_info
    flag = info.get(GATEWAY) if isinstance(info, dict) else None
    return flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")


class _Probe:
    """Stamps for checking a payload before its children exist (nothing is kept)."""

    def stamp(self, device: int) -> int:
        return 0

    def saw(self, device: int, ts: int) -> None:
        return None


PROBE = _Probe()


def child_name(raw: object) -> str:
    if not isinstance(raw, str):
        raise PayloadError(f'"device" must be a device name (a string), got {raw!r}')
    try:
        return check_name(raw)
    except TinyboardError as exc:
        raise PayloadError(str(exc)) from None


def _object(payload: bytes, shape: str) -> dict[str, Any]:
    doc = parse_json(payload)
    if not isinstance(doc, dict) or not doc:
        raise PayloadError(f"a gateway message here is {shape}")
    return doc


TELEMETRY_SHAPE = 'a JSON object {"Device A": [{"ts": ms, "values": {...}}], ...}'
ATTRIBUTES_SHAPE = 'a JSON object {"Device A": {"attribute": value}, ...}'


def children_telemetry(payload: bytes) -> tuple[dict[str, Any], int]:
    """`{name: telemetry}` of a `v1/gateway/telemetry` message, every child's telemetry
    checked by the device API's rules (one rule, core/ingest.py), and how many values it
    holds (for the rate limits)."""
    doc = _object(payload, TELEMETRY_SHAPE)
    out = {child_name(name): value for name, value in doc.items()}
    values = sum(len(telemetry_from_json(value, 0, PROBE)) for value in out.values())
    return out, values


def children_attributes(payload: bytes) -> dict[str, dict[str, Value]]:
    """`{name: client attributes}` of a `v1/gateway/attributes` message, checked."""
    doc = _object(payload, ATTRIBUTES_SHAPE)
    return {child_name(name): attributes_from_json(value) for name, value in doc.items()}


def telemetry_rows(
    children: dict[str, Any], devices: dict[str, Device], clocks: Stamps
) -> list[Reading]:
    """The readings of every child, stamped by each child's own server clock."""
    out: list[Reading] = []
    for name, doc in children.items():
        out += telemetry_from_json(doc, devices[name].key, clocks)
    return out


def attribute_rows(
    children: dict[str, dict[str, Value]], devices: dict[str, Device], clocks: Stamps
) -> list[AttributeRow]:
    out: list[AttributeRow] = []
    for name, values in children.items():
        key = devices[name].key
        ts = clocks.stamp(key)
        out += [(key, "CLIENT", k, ts, v) for k, v in values.items()]
    return out


@dataclass(frozen=True, slots=True)
class Connect:
    name: str
    type: str | None


def connect_request(payload: bytes) -> Connect:
    """`{"device": name, "type": profile}`; no `type` (or null): the default profile."""
    doc = _object(payload, 'a JSON object {"device": "Device A", "type": "thermometer"}')
    kind = doc.get("type")
    if kind is not None and not isinstance(kind, str):
        raise PayloadError(f'"type" must be a device profile name (a string), got {kind!r}')
    return Connect(child_name(doc.get("device")), kind.strip() or None if kind else None)


def disconnect_request(payload: bytes) -> str:
    doc = _object(payload, 'a JSON object {"device": "Device A"}')
    return child_name(doc.get("device"))


@dataclass(frozen=True, slots=True)
class AttributeQuery:
    """ThingsBoard's gateway attribute request: one scope, `key` or `keys`."""

    id: int
    name: str
    client: bool
    keys: list[str]


ATTRIBUTE_QUERY_SHAPE = (
    'a JSON object {"id": 1, "device": "Device A", "client": false, "keys": ["k"]} (or "key": "k")'
)


def attribute_query(payload: bytes) -> AttributeQuery:
    doc = _object(payload, ATTRIBUTE_QUERY_SHAPE)
    request_id, client = doc.get("id"), doc.get("client")
    if isinstance(request_id, bool) or not isinstance(request_id, int):
        raise PayloadError(f'"id" must be an integer; {ATTRIBUTE_QUERY_SHAPE}')
    if not isinstance(client, bool):
        raise PayloadError(f'"client" must be true or false; {ATTRIBUTE_QUERY_SHAPE}')
    keys = [doc["key"]] if "key" in doc else doc.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise PayloadError(f'"keys" must be a list of keys; {ATTRIBUTE_QUERY_SHAPE}')
    return AttributeQuery(request_id, child_name(doc.get("device")), client, keys)


def attribute_answer(query: AttributeQuery, values: dict[str, dict[str, Value]]) -> dict[str, Any]:
    """ThingsBoard's `JsonConverter.getJsonObjectForGateway(name, GetAttributeResponseMsg)`:
    one value found is `value`, several are `values`, none leaves both out."""
    found = values.get("client" if query.client else "shared", {})
    answer: dict[str, Any] = {"id": query.id, "device": query.name}
    if len(found) == 1:
        answer["value"] = next(iter(found.values()))
    elif found:
        answer["values"] = found
    return answer


@dataclass(frozen=True, slots=True)
class RpcReply:
    name: str
    id: int
    data: bytes
    """The reply as the device API takes it: the JSON text of `data`."""


RPC_REPLY_SHAPE = 'a JSON object {"device": "Device A", "id": 1, "data": {...}}'


def rpc_reply(payload: bytes) -> RpcReply:
    doc = _object(payload, RPC_REPLY_SHAPE)
    request_id = doc.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int) or "data" not in doc:
        raise PayloadError(f"a gateway's RPC reply is {RPC_REPLY_SHAPE}")
    return RpcReply(child_name(doc.get("device")), request_id, orjson.dumps(doc["data"]))


def claim_request(payload: bytes) -> list[str]:
    """The children a `v1/gateway/claim` message names (`{name: {"secretKey", ...}}`)."""
    doc = _object(payload, 'a JSON object {"Device A": {"secretKey": "...", "durationMs": 1}}')
    for value in doc.values():
        if not isinstance(value, dict):
            raise PayloadError("each device's claim is a JSON object")
    return [child_name(name) for name in doc]


def rpc_push(name: str, request_id: int, method: str, params: Any) -> dict[str, Any]:
    """A server-side RPC for a child, as its gateway gets it (`JsonConverter.toGatewayJson`)."""
    return {"device": name, "data": {"id": request_id, "method": method, "params": params}}


def attributes_push(name: str, values: dict[str, Value]) -> dict[str, Any]:
    """A shared-attribute update of a child (`getJsonObjectForGateway(name, update)`)."""
    return {"device": name, "data": values}


async def children(
    store: Store,
    gateway: Device,
    wanted: dict[str, str | None],
    limits: GatewayLimits,
) -> dict[str, Device]:
    """The devices named `wanted` (name → profile for a new one), created if missing and
    marked with the gateway's id. Every name is looked up before any device is created, so
    more than `limits.max_new` new ones fail whole (`TooManyChildren`), creating none."""
    if gateway.name in wanted:
        raise PayloadError(
            f"a gateway cannot send as one of its own devices ({gateway.name!r}); "
            "use the v1/devices/me/* topics for the gateway itself"
        )
    found: dict[str, Device] = {}
    for name in wanted:
        device = await _by_name(store, name)
        if device is not None:
            found[name] = device
    missing = [name for name in wanted if name not in found]
    if len(missing) > limits.max_new:
        raise TooManyChildren(
            f"this message names {len(missing)} new devices; a gateway may create at most "
            f"{limits.max_new} in one message (--gateway-max-new-children): send them in "
            "smaller messages"
        )
    for name in missing:
        found[name] = await _create(store, gateway, name, wanted[name])
    for name, device in found.items():
        found[name] = await _mark(store, gateway, device)
    return found


async def _by_name(store: Store, name: str) -> Device | None:
    try:
        device = await store.get_device(name)
    except NotFoundError:
        return None
    return device if device.name == name else None  # `get_device` also matches ids


async def _create(store: Store, gateway: Device, name: str, type: str | None) -> Device:
    info = {LAST_CONNECTED_GATEWAY: gateway.id}
    try:
        return await store.create_device(name, type=type, additional_info=info)
    except ConflictError:  # another connection created it meanwhile
        device = await _by_name(store, name)
        if device is None:
            raise
        return device


async def _mark(store: Store, gateway: Device, device: Device) -> Device:
    """Record `lastConnectedGateway` on a device that had another (or none)."""
    info = dict(device.additional_info or {})
    if info.get(LAST_CONNECTED_GATEWAY) == gateway.id:
        return device
    info[LAST_CONNECTED_GATEWAY] = gateway.id
    return await store.update_device(
        device.id,
        name=device.name,
        label=device.label,
        profile_id=device.profile_id,
        additional_info=info,
        firmware_id=device.firmware_id,
        software_id=device.software_id,
    )


def unknown(names: Iterable[str], known: dict[str, Any]) -> list[str]:
    return [name for name in names if name not in known]
