"""ThingsBoard's gateway MQTT API against tinyboard, driven by ThingsBoard's own
`TBGatewayMqttClient` (tb-mqtt-client, MQTT 5) and, for what the SDK cannot send, by paho."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from tb_device_mqtt import TBPublishInfo
from tb_gateway_mqtt import TBGatewayMqttClient

from tests.helpers import ServerThread, running, tinyboard
from tests.mqtt_clients import V5, V311, Device
from tests.web_helpers import api
from tinyboard.core.models import Device as DeviceRecord
from tinyboard.dashboard.presence import presence_of
from tinyboard.transports.thingsboard import Feed


def wait_for(condition: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def latest(server: ServerThread, device: DeviceRecord) -> dict[str, Any]:
    values = server.call(server.server.store.latest(device.key))
    return {k: v for k, (_, v) in values.items()}


def find(rest: httpx.Client, name: str) -> dict[str, Any] | None:
    answer = rest.get("/api/tenant/devices", params={"deviceName": name})
    return answer.json() if answer.status_code == 200 else None


def child(server: ServerThread, name: str) -> DeviceRecord:
    return server.call(server.server.store.get_device(name))


def active(rest: httpx.Client, device_id: str) -> bool:
    info: dict[str, Any] = rest.get(f"/api/device/info/{device_id}").json()
    return bool(info["active"])


def device_count(server: ServerThread) -> int:
    return server.call(server.server.store.count_devices())


@pytest.fixture
def gateway_device(server: ServerThread) -> DeviceRecord:
    return server.add_device("gateway-1", additional_info={"gateway": True})


@pytest.fixture
def rest(server: ServerThread) -> Iterator[httpx.Client]:
    with api(server) as client:
        yield client


@pytest.fixture
def sdk(server: ServerThread, gateway_device: DeviceRecord) -> Iterator[TBGatewayMqttClient]:
    client = TBGatewayMqttClient("127.0.0.1", port=server.mqtt_port, username=gateway_device.token)
    client.connect()
    wait_for(client.is_connected)
    # the SDK subscribes to the gateway topics right after CONNACK: wait for their SUBACKs
    wait_for(lambda: server.on_loop(lambda: _subscribed(server, gateway_device)))
    try:
        yield client
    finally:
        client.stop()
        client.disconnect()
        client._client._reset_sockets()  # the SDK never closes paho's wake-up socket pair


FEEDS = (Feed.GATEWAY_ATTRIBUTES, Feed.GATEWAY_ATTRIBUTE_RESPONSES, Feed.GATEWAY_RPC)


def _subscribed(server: ServerThread, gateway: DeviceRecord) -> bool:
    sessions = server.server.hub.for_device(gateway.id)
    return bool(sessions) and all(sessions[0].subscribed(f) is not None for f in FEEDS)  # type: ignore[attr-defined]


def test_a_child_is_created_listed_and_stores_its_readings(
    server: ServerThread, gateway_device: DeviceRecord, sdk: TBGatewayMqttClient, rest: httpx.Client
) -> None:
    assert sdk.gw_connect_device("Child A", "thermometer").get() == TBPublishInfo.TB_ERR_SUCCESS
    listed = find(rest, "Child A")
    assert listed is not None
    assert listed["type"] == "thermometer"
    assert listed["additionalInfo"]["lastConnectedGateway"] == gateway_device.id
    assert active(rest, listed["id"]["id"])
    result = sdk.gw_send_telemetry("Child A", {"ts": 1_700_000_000_000, "values": {"t": 21.5}})
    assert result.get() == TBPublishInfo.TB_ERR_SUCCESS
    assert sdk.gw_send_telemetry("Child A", {"humidity": 40}).get() == TBPublishInfo.TB_ERR_SUCCESS
    assert sdk.gw_send_attributes("Child A", {"model": "th-1"}).get() == (
        TBPublishInfo.TB_ERR_SUCCESS
    )
    device = child(server, "Child A")
    assert latest(server, device) == {"t": 21.5, "humidity": 40}
    attributes = server.call(server.server.store.attributes(device.key, "CLIENT"))
    assert attributes["model"][1] == "th-1"
    assert latest(server, gateway_device) == {}  # the readings are the child's, not the gateway's
    profiles = [
        p["name"] for p in rest.get("/api/deviceProfiles?pageSize=100&page=0").json()["data"]
    ]
    assert "thermometer" in profiles

    shown = server.on_loop(lambda: presence_of(server.server.registry, device, None))
    assert shown.online and shown.transport == "gateway"  # the dashboard's presence

    assert sdk.gw_disconnect_device("Child A").get() == TBPublishInfo.TB_ERR_SUCCESS
    wait_for(lambda: not active(rest, device.id))
    shown = server.on_loop(lambda: presence_of(server.server.registry, device, None))
    assert shown.transport == "gateway" and shown.last_seen_ms is not None


def test_telemetry_names_a_new_child_and_connects_it(
    server: ServerThread, sdk: TBGatewayMqttClient, rest: httpx.Client
) -> None:
    """As ThingsBoard: a child first named in telemetry is created (default profile) and
    connected; the gateway's connection ending takes it offline."""
    assert sdk.gw_send_telemetry("Child B", {"v": 1}).get() == TBPublishInfo.TB_ERR_SUCCESS
    device = child(server, "Child B")
    assert device.type == "default"
    assert latest(server, device) == {"v": 1}
    assert active(rest, device.id)
    sdk.disconnect()
    wait_for(lambda: not active(rest, device.id))


def test_shared_attributes_and_requests_reach_the_gateway(
    server: ServerThread, sdk: TBGatewayMqttClient, rest: httpx.Client
) -> None:
    sdk.gw_connect_device("Child C").get()
    device = child(server, "Child C")
    updates: queue.Queue[Any] = queue.Queue()
    sdk.gw_subscribe_to_attribute("Child C", "interval", updates.put)
    saved = rest.post(
        f"/api/plugins/telemetry/DEVICE/{device.id}/attributes/SHARED_SCOPE",
        json={"interval": 30},
    )
    assert saved.status_code == 200
    assert updates.get(timeout=10) == {"device": "Child C", "data": {"interval": 30}}

    answers: queue.Queue[Any] = queue.Queue()
    sdk.gw_request_shared_attributes("Child C", ["interval"], lambda c, e: answers.put(c))
    answer = answers.get(timeout=10)
    assert answer["device"] == "Child C" and answer["value"] == 30
    server.call(server.server.attributes.update_shared(device, {"led": True}))
    sdk.gw_request_shared_attributes("Child C", ["interval", "led"], lambda c, e: answers.put(c))
    assert answers.get(timeout=10)["values"] == {"interval": 30, "led": True}
    sdk.gw_send_attributes("Child C", {"fw": "1.0"}).get()
    sdk.gw_request_client_attributes("Child C", ["fw"], lambda c, e: answers.put(c))
    assert answers.get(timeout=10)["value"] == "1.0"


def test_server_side_rpc_to_a_child_is_answered_by_the_gateway(
    server: ServerThread, sdk: TBGatewayMqttClient, rest: httpx.Client
) -> None:
    sdk.gw_connect_device("Child D").get()
    device = child(server, "Child D")
    seen: list[dict[str, Any]] = []

    def handler(client: TBGatewayMqttClient, content: dict[str, Any]) -> None:
        seen.append(content)
        data = content["data"]
        client.gw_send_rpc_reply(content["device"], data["id"], {"pin": data["params"]["pin"]})

    sdk.gw_set_server_side_rpc_request_handler(handler)
    reply = rest.post(
        f"/api/rpc/twoway/{device.id}", json={"method": "toggle_gpio", "params": {"pin": 4}}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"pin": 4}
    assert seen[0]["device"] == "Child D"
    assert seen[0]["data"]["method"] == "toggle_gpio"


# -- what the SDK cannot send: paho --------------------------------------------------------


def test_one_message_for_a_thousand_children_is_one_job(
    server: ServerThread, gateway_device: DeviceRecord
) -> None:
    names = [f"sensor-{i:04}" for i in range(1000)]
    payload = orjson.dumps({name: [{"ts": 1_700_000_000_000, "values": {"t": i}}]
                            for i, name in enumerate(names)})  # fmt: skip
    dev = Device(server.mqtt_port, gateway_device.token, protocol=V5)
    acks: list[int] = []
    dev.client.on_publish = lambda c, u, mid, rc, p: acks.append(rc.value)
    jobs = server.on_loop(lambda: server.server.pipeline.stats.jobs)
    try:
        dev.publish("v1/gateway/telemetry", payload)
        wait_for(lambda: acks, timeout=60)
    finally:
        dev.close()
    assert acks == [0]
    assert server.on_loop(lambda: server.server.pipeline.stats.jobs) == jobs + 1
    assert latest(server, child(server, "sensor-0999")) == {"t": 999}
    assert device_count(server) == 1001


@pytest.mark.parametrize("protocol", [V311, V5])
def test_more_new_children_than_allowed_is_refused_whole(tmp_path: Any, protocol: int) -> None:
    with running(tmp_path / "data", gateway_max_new_children=5) as server:
        gateway = server.add_device("gw", additional_info={"gateway": True})
        other = server.add_device("plain")
        payload = orjson.dumps({f"c{i}": [{"v": i}] for i in range(6)})
        dev = Device(server.mqtt_port, gateway.token, protocol=protocol)
        board = Device(server.mqtt_port, other.token, protocol=protocol)
        acks: list[int] = []
        dev.client.on_publish = lambda c, u, mid, rc, p: acks.append(rc.value)
        try:
            dev.client.publish("v1/gateway/telemetry", payload, qos=1)
            board.publish("v1/devices/me/telemetry", '{"ok": 1}')
            if protocol == V5:
                wait_for(lambda: acks)
                assert acks == [0x97]
                dev.publish("v1/gateway/telemetry", orjson.dumps({"c0": [{"v": 0}]}))
                wait_for(lambda: len(acks) == 2)
                assert acks[1] == 0
            else:  # no reason codes: the session ends unacknowledged
                dev.disconnected.get(timeout=10)
                assert acks == []
        finally:
            dev.close()
            board.close()
        assert latest(server, other) == {"ok": 1}
        expected = 3 if protocol == V5 else 2  # gw, plain (and c0 on MQTT 5)
        assert device_count(server) == expected


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("v1/gateway/telemetry", b"{not json"),
        ("v1/gateway/telemetry", b'{"A": 5}'),
        ("v1/gateway/telemetry", b'{"A": [{"k": null}]}'),
        ("v1/gateway/telemetry", b'{"A": [{"k": 1}], "": [{"k": 2}]}'),
        ("v1/gateway/telemetry", b"[]"),
        ("v1/gateway/attributes", b'{"A": [1]}'),
        ("v1/gateway/connect", b'{"device": 7}'),
        ("v1/gateway/connect", b'{"name": "A"}'),
        ("v1/gateway/attributes/request", b'{"id": 1, "device": "A", "client": "yes"}'),
        ("v1/gateway/rpc", b'{"device": "A", "data": {}}'),
        ("v1/gateway/connect", b'{"device": "gateway-1"}'),
    ],
)
def test_malformed_gateway_payloads_get_0x99_and_store_nothing(
    server: ServerThread, gateway_device: DeviceRecord, topic: str, payload: bytes
) -> None:
    dev = Device(server.mqtt_port, gateway_device.token, protocol=V5)
    acks: list[int] = []
    dev.client.on_publish = lambda c, u, mid, rc, p: acks.append(rc.value)
    try:
        dev.publish(topic, payload)
        dev.publish("v1/gateway/telemetry", b'{"fine": [{"v": 1}]}')
        wait_for(lambda: len(acks) == 2)
    finally:
        dev.close()
    assert acks == [0x99, 0]
    assert device_count(server) == 2  # the gateway and "fine"


def test_unknown_gateway_topic_gets_0x90(
    server: ServerThread, gateway_device: DeviceRecord
) -> None:
    dev = Device(server.mqtt_port, gateway_device.token, protocol=V5)
    acks: list[int] = []
    dev.client.on_publish = lambda c, u, mid, rc, p: acks.append(rc.value)
    try:
        dev.publish("v1/gateway/telemetry/extra", b'{"A": [{"v": 1}]}')
        wait_for(lambda: acks)
    finally:
        dev.close()
    assert acks == [0x90]
    assert device_count(server) == 1


def test_a_device_that_is_not_a_gateway_gets_nothing_on_gateway_topics(
    server: ServerThread,
) -> None:
    """ThingsBoard (MqttTransportHandler.processPublish) ignores the message: no PUBACK,
    nothing stored, the session goes on."""
    plain = server.add_device("not-a-gateway")
    dev = Device(server.mqtt_port, plain.token, protocol=V5)
    acked = threading.Event()
    dev.client.on_publish = lambda c, u, mid, rc, p: acked.set()
    try:
        dev.client.publish("v1/gateway/telemetry", b'{"A": [{"v": 1}]}', qos=1)
        assert not acked.wait(0.5)
        dev.publish("v1/devices/me/telemetry", b'{"own": 1}')
    finally:
        dev.close()
    assert latest(server, plain) == {"own": 1}
    assert device_count(server) == 1


def test_rest_makes_a_gateway(server: ServerThread, rest: httpx.Client) -> None:
    saved = rest.post(
        "/api/device", json={"name": "rest-gw", "additionalInfo": {"gateway": True}}
    ).json()
    token = rest.get(f"/api/device/{saved['id']['id']}/credentials").json()["credentialsId"]
    dev = Device(server.mqtt_port, token, protocol=V5)
    acks: list[int] = []
    dev.client.on_publish = lambda c, u, mid, rc, p: acks.append(rc.value)
    try:
        dev.publish("v1/gateway/connect", b'{"device": "via-rest", "type": "meter"}')
        wait_for(lambda: acks)
    finally:
        dev.close()
    assert acks == [0]
    assert child(server, "via-rest").type == "meter"


def test_the_cli_makes_a_gateway(tmp_path: Any) -> None:
    data = tmp_path / "data"
    added = tinyboard("device", "add", "cli-gw", "--gateway", "--data-dir", str(data))
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    with running(data) as server:
        assert child(server, "cli-gw").additional_info == {"gateway": True}
        dev = Device(server.mqtt_port, token, protocol=V5)
        acks: list[int] = []
        dev.client.on_publish = lambda c, u, mid, rc, p: acks.append(rc.value)
        try:
            dev.publish("v1/gateway/telemetry", b'{"via-cli": [{"v": 1}]}')
            wait_for(lambda: acks)
        finally:
            dev.close()
        assert acks == [0]
        assert latest(server, child(server, "via-cli")) == {"v": 1}


def test_a_deleted_child_goes_offline_and_the_gateway_goes_on(
    server: ServerThread, sdk: TBGatewayMqttClient, rest: httpx.Client
) -> None:
    sdk.gw_connect_device("Child E").get()
    device = child(server, "Child E")
    assert rest.delete(f"/api/device/{device.id}").status_code == 200
    assert not server.on_loop(lambda: server.server.hub.is_connected(device.id))
    assert server.on_loop(lambda: not server.server.registry.for_device(device.id))
    # named again: a new device, as ThingsBoard creates it again
    assert sdk.gw_send_telemetry("Child E", {"v": 2}).get() == TBPublishInfo.TB_ERR_SUCCESS
    again = child(server, "Child E")
    assert again.id != device.id and latest(server, again) == {"v": 2}


def test_gateway_flag_and_answer_shapes() -> None:
    from tinyboard.core import gateway as gw

    def dev(info: Any) -> DeviceRecord:
        return DeviceRecord(
            id="x", key=1, name="n", type="default", label="", token="t", created_ts=0,
            profile_id="p", additional_info=info,
        )  # fmt: skip

    assert gw.is_gateway(dev({"gateway": True})) and gw.is_gateway(dev({"gateway": "true"}))
    assert not gw.is_gateway(dev(None)) and not gw.is_gateway(dev({"gateway": False}))
    query = gw.attribute_query(b'{"id": 3, "device": "A", "client": false, "key": "k"}')
    assert query == gw.AttributeQuery(3, "A", False, ["k"])
    assert gw.attribute_answer(query, {"shared": {"k": 1}}) == {"id": 3, "device": "A", "value": 1}
    assert gw.attribute_answer(query, {"shared": {"k": 1, "j": 2}})["values"] == {"k": 1, "j": 2}
    assert gw.attribute_answer(query, {}) == {"id": 3, "device": "A"}
    assert gw.rpc_reply(b'{"device": "A", "id": 2, "data": {"ok": true}}').data == b'{"ok":true}'
