"""The sessions of the devices behind a gateway, carried by the gateway's MQTT connection.

Strategy: each connected child is a `Child`, registered where a directly connected device
is: in the session hub (so shared-attribute pushes and server-side RPC find it, and go out
on the gateway's `v1/gateway/attributes` / `v1/gateway/rpc`) and in the client registry
(so the REST API's `active`, the dashboard's presence and `/api/clients` see it online,
with transport `gateway`). A child connects when the gateway says `v1/gateway/connect` or
first names it in any message, as ThingsBoard's `AbstractGatewaySessionHandler` does, and
disconnects on `v1/gateway/disconnect`, when the gateway's connection ends, or when the
device is deleted.

`GatewaySession.receive` answers a message at once (`Work`) when every child it names is
connected, else with a coroutine that finds or creates the children first; the MQTT shell
holds the connection meanwhile, so messages keep their order and one message's readings
stay one pipeline job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from tinyboard.core import gateway as gw
from tinyboard.core.device_api import AttributeRequest, DeviceApi
from tinyboard.core.limits import Quota
from tinyboard.core.models import AttributeRow, Device, Reading, Value
from tinyboard.core.sessions import SessionHub
from tinyboard.registry import Client, Registry
from tinyboard.storage.base import Store
from tinyboard.transports import thingsboard as tb

log = logging.getLogger(__name__)

TRANSPORT = "gateway"
"""The transport the registry shows for a child's session."""


class GatewayLink(Protocol):
    """What a gateway session needs from the gateway's connection."""

    def publish(self, topic: str, document: Any, *, qos: int) -> asyncio.Future[None]: ...

    def subscribed(self, feed: tb.Feed) -> int | None:
        """The QoS granted for `feed`, None when not subscribed."""


@dataclass(slots=True)
class Work:
    """What one gateway message gives the pipeline, and the answer to publish (QoS 0)."""

    readings: list[Reading] = field(default_factory=list)
    attributes: list[AttributeRow] = field(default_factory=list)
    answer: tuple[str, Any] | None = None


Pending = Coroutine[Any, Any, Work]
Build = Callable[[dict[str, Device]], Work]


class Child:
    """One child device's session (core.sessions.DeviceSession, registry.Connection)."""

    def __init__(self, session: GatewaySession, device: Device) -> None:
        self.session = session
        self.device = device
        self.client: Client | None = None

    @property
    def wants_attributes(self) -> bool:
        return self.session.link.subscribed(tb.Feed.GATEWAY_ATTRIBUTES) is not None

    @property
    def wants_rpc(self) -> bool:
        return self.session.link.subscribed(tb.Feed.GATEWAY_RPC) is not None

    def push_attributes(self, values: dict[str, Value]) -> asyncio.Future[None]:
        qos = self.session.link.subscribed(tb.Feed.GATEWAY_ATTRIBUTES) or 0
        document = gw.attributes_push(self.device.name, values)
        return self.session.link.publish(tb.GATEWAY_ATTRIBUTES, document, qos=qos)

    def push_rpc(self, request_id: int, method: str, params: Any) -> asyncio.Future[None]:
        qos = self.session.link.subscribed(tb.Feed.GATEWAY_RPC) or 0
        document = gw.rpc_push(self.device.name, request_id, method, params)
        return self.session.link.publish(tb.GATEWAY_RPC, document, qos=qos)

    def close(self) -> None:
        """The device was deleted: its session ends, the gateway's goes on."""
        self.session.disconnect(self.device.name)

    def abort(self) -> None:
        self.close()


class GatewaySession:
    """The children of one gateway connection, and what each gateway message means."""

    def __init__(
        self,
        gateway: Device,
        link: GatewayLink,
        *,
        peer: str,
        store: Store,
        registry: Registry,
        hub: SessionHub,
        api: DeviceApi,
        limits: gw.GatewayLimits,
    ) -> None:
        self.gateway = gateway
        self.link = link
        self.peer = peer
        self.store = store
        self.registry = registry
        self.hub = hub
        self.api = api
        self.limits = limits
        self.children: dict[str, Child] = {}
        self.closed = False
        self._routes: dict[str, Callable[[bytes, Quota], Work | Pending]] = {
            tb.GATEWAY_TELEMETRY: self._telemetry,
            tb.GATEWAY_ATTRIBUTES: self._attributes,
            tb.GATEWAY_CONNECT: self._connect,
            tb.GATEWAY_DISCONNECT: self._disconnect,
            tb.GATEWAY_ATTRIBUTES_REQUEST: self._attribute_request,
            tb.GATEWAY_RPC: self._rpc_reply,
            tb.GATEWAY_CLAIM: self._claim,
        }

    def receive(self, topic: str, payload: bytes, quota: Quota) -> Work | Pending | None:
        """The meaning of a message on a `v1/gateway/...` topic; None for a topic
        ThingsBoard does not have. Raises `PayloadError`, `OverLimit`."""
        route = self._routes.get(topic)
        return None if route is None else route(payload, quota)

    # -- the routes ----------------------------------------------------------------------
    def _telemetry(self, payload: bytes, quota: Quota) -> Work | Pending:
        docs, values = gw.children_telemetry(payload)
        if not quota.telemetry_message(values):
            raise self.api.over_limit()
        clocks = self.api.clocks
        return self._with(
            dict.fromkeys(docs), lambda found: Work(gw.telemetry_rows(docs, found, clocks))
        )

    def _attributes(self, payload: bytes, _: Quota) -> Work | Pending:
        docs = gw.children_attributes(payload)
        clocks = self.api.clocks
        return self._with(
            dict.fromkeys(docs), lambda found: Work([], gw.attribute_rows(docs, found, clocks))
        )

    def _connect(self, payload: bytes, _: Quota) -> Work | Pending:
        request = gw.connect_request(payload)
        return self._with({request.name: request.type}, lambda _: Work())

    def _disconnect(self, payload: bytes, _: Quota) -> Work:
        self.disconnect(gw.disconnect_request(payload))
        return Work()

    def _attribute_request(self, payload: bytes, _: Quota) -> Pending:
        query = gw.attribute_query(payload)
        return self._answer_attributes(query)

    async def _answer_attributes(self, query: gw.AttributeQuery) -> Work:
        found = await self._resolve({query.name: None})
        keys = query.keys or None
        request = AttributeRequest(keys if query.client else [], [] if query.client else keys)
        values = await self.api.attributes(found[query.name], request)
        return Work(answer=(tb.GATEWAY_ATTRIBUTES_RESPONSE, gw.attribute_answer(query, values)))

    def _rpc_reply(self, payload: bytes, _: Quota) -> Work | Pending:
        reply = gw.rpc_reply(payload)

        def deliver(found: dict[str, Device]) -> Work:
            self.api.rpc_reply(found[reply.name], reply.id, reply.data)
            return Work()

        return self._with({reply.name: None}, deliver)

    def _claim(self, payload: bytes, _: Quota) -> Work:
        """tinyboard has no customers to claim a device yet: the claim is checked and
        acknowledged, and nothing is recorded, as ThingsBoard answers a claim it does not
        allow (`ClaimDevicesServiceImpl.registerClaimingInfo` refuses quietly)."""
        gw.claim_request(payload)
        return Work()

    # -- children ------------------------------------------------------------------------
    def _with(self, wanted: dict[str, str | None], build: Build) -> Work | Pending:
        """`build` with the children named, at once when all are connected."""
        if all(name in self.children for name in wanted):
            return build({name: self.children[name].device for name in wanted})
        return self._later(wanted, build)

    async def _later(self, wanted: dict[str, str | None], build: Build) -> Work:
        return build(await self._resolve(wanted))

    async def _resolve(self, wanted: dict[str, str | None]) -> dict[str, Device]:
        """The children named, connected: found or created (`core.gateway.children`)."""
        missing = {name: kind for name, kind in wanted.items() if name not in self.children}
        if len(self.children) + len(missing) > self.limits.max_connected:
            raise gw.TooManyChildren(
                f"this gateway has {len(self.children)} devices connected and names "
                f"{len(missing)} more; one gateway may have at most {self.limits.max_connected}"
                " (--gateway-max-children): disconnect some first (v1/gateway/disconnect)"
            )
        found = {name: self.children[name].device for name in wanted if name in self.children}
        if missing:
            created = await gw.children(self.store, self.gateway, missing, self.limits)
            for device in created.values():
                self._attach(device)
            found.update(created)
        return found

    def _attach(self, device: Device) -> None:
        if self.closed or device.name in self.children:
            return
        child = Child(self, device)
        child.client = client = self.registry.add(TRANSPORT, self.peer, child)
        client.device = device
        self.hub.add(device, child)
        self.children[device.name] = child

    def disconnect(self, name: str) -> None:
        child = self.children.pop(name, None)
        if child is None:
            return
        self.hub.remove(child.device, child)
        if child.client is not None:
            self.registry.remove(child.client)

    def close(self) -> None:
        """The gateway's connection ended: every child goes offline with it."""
        self.closed = True
        for name in list(self.children):
            self.disconnect(name)
