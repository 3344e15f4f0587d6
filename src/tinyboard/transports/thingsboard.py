"""ThingsBoard's MQTT device topics, routed by exact topic (dict lookups, no filter scans).

Topics that end in a request id (`.../attributes/request/7`) are split once at the last `/`
and the prefix is looked up in a second dict.
"""

from __future__ import annotations

import difflib
from enum import Enum

TELEMETRY = "v1/devices/me/telemetry"
ATTRIBUTES = "v1/devices/me/attributes"
ATTRIBUTES_REQUEST = "v1/devices/me/attributes/request/"
ATTRIBUTES_RESPONSE = "v1/devices/me/attributes/response/"
RPC_REQUEST = "v1/devices/me/rpc/request/"
RPC_RESPONSE = "v1/devices/me/rpc/response/"
PROVISION = "provision"
"""The user name (or client id) that opens a provisioning session instead of a device's."""
PROVISION_REQUEST = "/provision/request"
PROVISION_RESPONSE = "/provision/response"


class Route(Enum):
    TELEMETRY = "telemetry"
    ATTRIBUTES = "attributes"
    ATTRIBUTE_REQUEST = "attribute request"
    RPC_RESPONSE = "rpc response"
    CLIENT_RPC = "client-side rpc"


class Feed(Enum):
    """What a device subscribes to."""

    ATTRIBUTE_UPDATES = "shared attribute updates"
    ATTRIBUTE_RESPONSES = "attribute responses"
    RPC_REQUESTS = "server-side rpc requests"
    RPC_RESPONSES = "client-side rpc responses"
    PROVISION_RESPONSES = "provision responses"


EXACT: dict[str, Route] = {TELEMETRY: Route.TELEMETRY, ATTRIBUTES: Route.ATTRIBUTES}
WITH_ID: dict[str, Route] = {
    ATTRIBUTES_REQUEST: Route.ATTRIBUTE_REQUEST,
    RPC_RESPONSE: Route.RPC_RESPONSE,
    RPC_REQUEST: Route.CLIENT_RPC,
}
SUBSCRIPTIONS: dict[str, Feed] = {
    ATTRIBUTES: Feed.ATTRIBUTE_UPDATES,
    ATTRIBUTES_RESPONSE + "+": Feed.ATTRIBUTE_RESPONSES,
    RPC_REQUEST + "+": Feed.RPC_REQUESTS,
    RPC_RESPONSE + "+": Feed.RPC_RESPONSES,
}
PROVISION_SUBSCRIPTIONS: dict[str, Feed] = {PROVISION_RESPONSE: Feed.PROVISION_RESPONSES}
"""All a provisioning session may subscribe to (it may publish `PROVISION_REQUEST` only)."""


def route(topic: str) -> tuple[Route, int] | None:
    """(what the publish is, request id or 0), or None for a topic ThingsBoard does not have."""
    exact = EXACT.get(topic)
    if exact is not None:
        return exact, 0
    prefix, _, last = topic.rpartition("/")
    with_id = WITH_ID.get(prefix + "/")
    if with_id is None or not last.isdigit() or len(last) > 10:
        return None
    return with_id, int(last)


PUBLISH_TOPICS = (TELEMETRY, ATTRIBUTES, ATTRIBUTES_REQUEST, RPC_RESPONSE, RPC_REQUEST)


def topic_hint(topic: str) -> str:
    """What to tell someone who published to `topic`, which `route` does not know."""
    shown = [t + "{id}" if t.endswith("/") else t for t in PUBLISH_TOPICS]
    close = difflib.get_close_matches(topic, shown, n=1, cutoff=0.8)
    if close:
        return f"did you mean {close[0]}?"
    return "ThingsBoard's device topics are " + ", ".join(shown)
