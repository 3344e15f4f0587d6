"""ThingsBoard's MQTT device topics, routed by exact topic (dict lookups, no filter scans).

Topics that end in a request id (`.../attributes/request/7`) are split once at the last `/`
and the prefix is looked up in a second dict.
"""

from __future__ import annotations

import difflib
from enum import Enum
from typing import Literal

OtaType = Literal["FIRMWARE", "SOFTWARE"]
"""core.models.OtaType, spelt here too: this table imports nothing of tinyboard."""

TELEMETRY = "v1/devices/me/telemetry"
ATTRIBUTES = "v1/devices/me/attributes"
ATTRIBUTES_REQUEST = "v1/devices/me/attributes/request/"
ATTRIBUTES_RESPONSE = "v1/devices/me/attributes/response/"
RPC_REQUEST = "v1/devices/me/rpc/request/"
RPC_RESPONSE = "v1/devices/me/rpc/response/"
FW_REQUEST = "v2/fw/request/"
SW_REQUEST = "v2/sw/request/"
FW_RESPONSE = "v2/fw/response/"
SW_RESPONSE = "v2/sw/response/"
FW_ERROR = "v2/fw/error"
SW_ERROR = "v2/sw/error"
"""OTA chunk topics: `v2/fw/request/{id}/chunk/{n}` → `v2/fw/response/{id}/chunk/{n}`;
ThingsBoard publishes every download error (software's too) on `v2/fw/error`."""
OTA_REQUESTS: dict[str, OtaType] = {FW_REQUEST: "FIRMWARE", SW_REQUEST: "SOFTWARE"}
OTA_RESPONSES: dict[OtaType, str] = {"FIRMWARE": FW_RESPONSE, "SOFTWARE": SW_RESPONSE}

GATEWAY_PREFIX = "v1/gateway/"
"""ThingsBoard's gateway API (`MqttTopics.BASE_GATEWAY_API_TOPIC`): transports/gateway.py."""
GATEWAY_CONNECT = "v1/gateway/connect"
GATEWAY_DISCONNECT = "v1/gateway/disconnect"
GATEWAY_TELEMETRY = "v1/gateway/telemetry"
GATEWAY_ATTRIBUTES = "v1/gateway/attributes"
GATEWAY_ATTRIBUTES_REQUEST = "v1/gateway/attributes/request"
GATEWAY_ATTRIBUTES_RESPONSE = "v1/gateway/attributes/response"
GATEWAY_RPC = "v1/gateway/rpc"
GATEWAY_CLAIM = "v1/gateway/claim"
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
    FW_CHUNKS = "firmware chunks"
    SW_CHUNKS = "software chunks"
    OTA_ERRORS = "firmware and software download errors"
    GATEWAY_ATTRIBUTES = "children's shared attribute updates"
    GATEWAY_ATTRIBUTE_RESPONSES = "children's attribute responses"
    GATEWAY_RPC = "children's server-side rpc requests"
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
    FW_RESPONSE + "+/chunk/+": Feed.FW_CHUNKS,
    SW_RESPONSE + "+/chunk/+": Feed.SW_CHUNKS,
    FW_ERROR: Feed.OTA_ERRORS,
    SW_ERROR: Feed.OTA_ERRORS,
    GATEWAY_ATTRIBUTES: Feed.GATEWAY_ATTRIBUTES,
    GATEWAY_ATTRIBUTES_RESPONSE: Feed.GATEWAY_ATTRIBUTE_RESPONSES,
    GATEWAY_RPC: Feed.GATEWAY_RPC,
}
CHUNK_FEEDS: dict[OtaType, Feed] = {"FIRMWARE": Feed.FW_CHUNKS, "SOFTWARE": Feed.SW_CHUNKS}
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


def ota_route(topic: str) -> tuple[OtaType, int, int] | None:
    """(package type, request id, chunk index) of `v2/fw|sw/request/{id}/chunk/{n}`, both
    numbers (ThingsBoard's `\\d+`); None for any other topic."""
    head, _, rest = topic.partition("/request/")
    type = OTA_REQUESTS.get(head + "/request/")
    request_id, chunk_word, chunk = rest.split("/", 2) if rest.count("/") == 2 else ("", "", "")
    if type is None or chunk_word != "chunk" or not _number(request_id) or not _number(chunk):
        return None
    return type, int(request_id), int(chunk)


def _number(text: str) -> bool:
    return text.isdigit() and text.isascii() and len(text) <= 10


def ota_hint(topic: str) -> str | None:
    """What to tell a device whose topic starts like an OTA request but is not one."""
    if not topic.startswith(tuple(OTA_REQUESTS)):
        return None
    return "an OTA chunk request is v2/fw/request/{id}/chunk/{n} with numbers (v2/sw/... too)"


PUBLISH_TOPICS = (TELEMETRY, ATTRIBUTES, ATTRIBUTES_REQUEST, RPC_RESPONSE, RPC_REQUEST)


def topic_hint(topic: str) -> str:
    """What to tell someone who published to `topic`, which `route` does not know."""
    shown = [t + "{id}" if t.endswith("/") else t for t in PUBLISH_TOPICS]
    close = difflib.get_close_matches(topic, shown, n=1, cutoff=0.8)
    if close:
        return f"did you mean {close[0]}?"
    return "ThingsBoard's device topics are " + ", ".join(shown)
