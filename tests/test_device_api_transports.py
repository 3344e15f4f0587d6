"""One ThingsBoard device API over every transport (core/device_api.py): the same request,
sent by paho-mqtt and by httpx to a real server, is answered the same way. Each test fails
when a rule is written again, differently, in one transport's shell."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, Protocol

import httpx
import orjson
import pytest

from tests.helpers import ServerThread
from tests.mqtt_clients import V5
from tests.mqtt_clients import Device as MqttClient
from tests.web_helpers import api
from tinyboard.core.device_api import CLIENT_RPC_SHAPE
from tinyboard.core.models import Device
from tinyboard.transports import thingsboard as tb

Answer = tuple[int, Any]
"""What the REST caller of a two-way RPC got: (status, JSON body or None when empty)."""


class DeviceSide(Protocol):
    """A device speaking one transport, as a board (or ThingsBoard's SDK) would."""

    def send(self, topic: str, payload: bytes) -> bool:
        """Publish telemetry or attributes; True when accepted (PUBACK 0 / HTTP 200)."""

    def client_rpc(self, payload: bytes) -> Any:
        """A client-side RPC: its answer, or "refused"."""

    def attributes(self, params: dict[str, str]) -> Any:
        """An attribute request with `clientKeys` / `sharedKeys` as given."""

    def answer_next_rpc(self, reply: bytes) -> None:
        """Be ready for one server-side RPC and answer it with `reply` as it is."""

    def close(self) -> None: ...


class MqttSide:
    """MQTT 5 at QoS 1: a refused payload gets PUBACK 0x99 and the session goes on."""

    def __init__(self, server: ServerThread, device: Device) -> None:
        self.client = MqttClient(server.mqtt_port, device.token, protocol=V5)
        self.acks: dict[int, int] = {}
        """PUBACK reason codes by message id."""
        self.client.client.on_publish = lambda c, u, mid, rc, p: self.acks.update({mid: rc.value})
        self.ids = itertools.count(1)
        self.reply: bytes | None = None
        self.client.client.on_message = self._on_message
        for topic in (tb.RPC_RESPONSE + "+", tb.ATTRIBUTES_RESPONSE + "+", tb.RPC_REQUEST + "+"):
            assert self.client.subscribe(topic) == [1]

    def _on_message(self, client: Any, _: Any, msg: Any) -> None:
        if msg.topic.startswith(tb.RPC_REQUEST) and self.reply is not None:
            request_id = msg.topic.rsplit("/", 1)[1]
            client.publish(tb.RPC_RESPONSE + request_id, self.reply, qos=1)
            return
        self.client.messages.put(msg)

    def send(self, topic: str, payload: bytes) -> bool:
        mid = self.client.publish(topic, payload).mid
        deadline = time.monotonic() + 10
        while mid not in self.acks:
            assert time.monotonic() < deadline, "no PUBACK"
            time.sleep(0.01)
        return self.acks.pop(mid) == 0

    def _ask(self, prefix: str, payload: bytes) -> Any:
        request_id = next(self.ids)
        if not self.send(prefix + str(request_id), payload):
            return "refused"
        msg = self.client.next_message()
        assert msg.topic.endswith(f"/response/{request_id}")
        return orjson.loads(msg.payload)

    def client_rpc(self, payload: bytes) -> Any:
        return self._ask(tb.RPC_REQUEST, payload)

    def attributes(self, params: dict[str, str]) -> Any:
        return self._ask(tb.ATTRIBUTES_REQUEST, orjson.dumps(params))

    def answer_next_rpc(self, reply: bytes) -> None:
        self.reply = reply

    def close(self) -> None:
        self.client.close()


class HttpSide:
    """ThingsBoard's device HTTP API; a server-side RPC is taken by a long poll."""

    def __init__(self, server: ServerThread, device: Device) -> None:
        self.server, self.device = server, device
        self.base = f"{server.base_url}/api/v1/{device.token}"
        self.reply_status: Future[int] = Future()

    def send(self, topic: str, payload: bytes) -> bool:
        path = {tb.TELEMETRY: "telemetry", tb.ATTRIBUTES: "attributes"}[topic]
        status = httpx.post(f"{self.base}/{path}", content=payload).status_code
        assert status in (200, 400)
        return status == 200

    def client_rpc(self, payload: bytes) -> Any:
        response = httpx.post(f"{self.base}/rpc", content=payload)
        if response.status_code == 400:
            return "refused"
        assert response.status_code == 200
        return response.json()

    def attributes(self, params: dict[str, str]) -> Any:
        return httpx.get(f"{self.base}/attributes", params=params).json()

    def answer_next_rpc(self, reply: bytes) -> None:
        def poll_and_answer() -> None:
            request = httpx.get(f"{self.base}/rpc", params={"timeout": 10_000}).json()
            answered = httpx.post(f"{self.base}/rpc/{request['id']}", content=reply)
            self.reply_status.set_result(answered.status_code)

        threading.Thread(target=poll_and_answer).start()
        hub = self.server.server.hub
        deadline = time.monotonic() + 10
        while not self.server.on_loop(lambda: hub.is_connected(self.device.id)):
            assert time.monotonic() < deadline, "the poll never reached the server"
            time.sleep(0.01)

    def close(self) -> None:
        pass


SIDES = {"mqtt": MqttSide, "http": HttpSide}


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    running = ServerThread(tmp_path_factory.mktemp("device-api") / "data").start()
    try:
        yield running
    finally:
        running.stop()


def on_every_transport(server: ServerThread, name: str) -> Iterator[tuple[str, Device, DeviceSide]]:
    """(transport, a fresh device, connected over it), for each transport in turn."""
    for transport, side in SIDES.items():
        device = server.add_device(f"{name}-{transport}")
        connected = side(server, device)
        try:
            yield transport, device, connected
        finally:
            connected.close()


CLIENT_RPCS = [
    b'{"method": "getSessionLimits", "params": {}}',
    b'{"method": "getSessionLimits"}',
    b'{"method": "reboot", "params": {"now": true}}',
    b'{"params": {}}',
    b'{"method": 7}',
    b"[1, 2]",
    b"{nope",
]


def test_client_side_rpc_is_answered_alike(shared_server: ServerThread) -> None:
    answers = {
        transport: [side.client_rpc(payload) for payload in CLIENT_RPCS]
        for transport, _, side in on_every_transport(shared_server, "crpc")
    }
    assert answers["mqtt"] == answers["http"]
    limits, limits_too, unknown, *refused = answers["http"]
    assert limits == limits_too == shared_server.server.limits.session_limits()
    assert limits["maxPayloadSize"] == 65536
    assert unknown == {"error": "unsupported method 'reboot': tinyboard serves getSessionLimits"}
    assert refused == ["refused"] * 4
    device = shared_server.add_device("crpc-shape")
    shape = httpx.post(f"{shared_server.base_url}/api/v1/{device.token}/rpc", json={})
    assert (shape.status_code, shape.json()["message"]) == (400, CLIENT_RPC_SHAPE)


REPLIES = [
    (b'{"temperature": 22.5}', (200, {"temperature": 22.5})),
    (b"42", (200, 42)),
    (b'"on"', (200, "on")),
    (b"null", (200, None)),
    (b"", (200, None)),  # ThingsBoard: 200 without a body
    (b"plain text", (406, None)),  # ThingsBoard: 406 NOT_ACCEPTABLE
]


@pytest.mark.parametrize(("reply", "expected"), REPLIES, ids=[r for r, _ in REPLIES])
def test_a_server_side_rpc_reply_means_the_same_over_either_transport(
    shared_server: ServerThread, reply: bytes, expected: Answer
) -> None:
    """ThingsBoard takes the reply as text on both transports and decides in
    AbstractRpcController.reply what the caller gets."""
    answers: dict[str, Answer] = {}
    with api(shared_server) as rest:
        for transport, device, side in on_every_transport(shared_server, f"reply-{reply!r}"):
            side.answer_next_rpc(reply)
            response = rest.post(f"/api/rpc/twoway/{device.id}", json={"method": "read"})
            if isinstance(side, HttpSide):
                assert side.reply_status.result(10) == 200  # any body is taken, as ThingsBoard
            body = response.json() if response.content else None
            if response.status_code == 406:
                assert "which is not JSON" in body["message"]
                body = None
            answers[transport] = (response.status_code, body)
    assert answers["mqtt"] == answers["http"] == expected


ATTRIBUTE_REQUESTS = [
    {"clientKeys": "fw", "sharedKeys": "mode"},
    {"clientKeys": "fw,missing"},
    {"sharedKeys": "interval, mode"},
    {},
]


def test_attribute_requests_are_answered_alike(shared_server: ServerThread) -> None:
    answers = {}
    for transport, device, side in on_every_transport(shared_server, "areq"):
        shared = {"interval": 30, "mode": "eco"}
        shared_server.call(shared_server.server.attributes.update_shared(device, shared))
        assert side.send(tb.ATTRIBUTES, b'{"fw": "1.0", "battery": 97}')
        answers[transport] = [side.attributes(params) for params in ATTRIBUTE_REQUESTS]
    assert answers["mqtt"] == answers["http"]
    assert answers["http"] == [
        {"client": {"fw": "1.0"}, "shared": {"mode": "eco"}},
        {"client": {"fw": "1.0"}},
        {"shared": {"interval": 30, "mode": "eco"}},
        {"client": {"fw": "1.0", "battery": 97}, "shared": {"interval": 30, "mode": "eco"}},
    ]


PAYLOADS = [
    (tb.TELEMETRY, b'{"t": 1}'),
    (tb.TELEMETRY, b'[{"t": 1}, {"ts": 1700000000000, "values": {"u": 2}}]'),
    (tb.TELEMETRY, b'{"t": null}'),
    (tb.TELEMETRY, b'{"ts": "yesterday", "values": {"t": 1}}'),
    (tb.TELEMETRY, b'{"a\\u0000b": 1}'),
    (tb.TELEMETRY, b"[1, 2]"),
    (tb.TELEMETRY, b"{nope"),
    (tb.ATTRIBUTES, b'{"fw": "1.0"}'),
    (tb.ATTRIBUTES, b"[1, 2]"),
    (tb.ATTRIBUTES, b'{"fw": null}'),
]


def test_payloads_are_accepted_and_refused_alike(shared_server: ServerThread) -> None:
    verdicts = {
        transport: [side.send(topic, payload) for topic, payload in PAYLOADS]
        for transport, _, side in on_every_transport(shared_server, "payloads")
    }
    assert verdicts["mqtt"] == verdicts["http"]
    assert verdicts["http"] == [True, True, False, False, False, False, False, True, False, False]


def test_a_deleted_device_leaves_no_server_clock_behind(server: ServerThread) -> None:
    """Whichever transport stamped its readings, connected (MQTT) or not (HTTP)."""
    clocks = server.server.clocks
    with api(server) as rest:
        for _, device, side in on_every_transport(server, "deleted"):
            assert server.on_loop(lambda: len(clocks)) == 0
            assert side.send(tb.TELEMETRY, b'{"t": 1}')  # stamped by the server
            assert server.on_loop(lambda: len(clocks)) == 1
            assert rest.delete(f"/api/device/{device.id}").status_code == 200
            assert server.on_loop(lambda: len(clocks)) == 0
