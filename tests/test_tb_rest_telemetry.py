"""ThingsBoard's official REST client (`tb-rest-client` 4.3) against tinyboard's telemetry
controller and RPC: every call as a ThingsBoard script makes it, its answer read back through
the client, devices on ThingsBoard's own MQTT SDK (`tb-mqtt-client`)."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from tb_device_mqtt import TBDeviceMqttClient
from tb_rest_client.rest import ApiException
from tb_rest_client.rest_client_ce import AssetId, DeviceId, RestClientCE
from websockets.asyncio.client import connect

from tests.helpers import ServerThread
from tests.web_helpers import login
from tinyboard.core.models import Device
from tinyboard.web.entities import NULL_UUID

TIMEOUT = 10


@pytest.fixture
def rest(server: ServerThread) -> RestClientCE:
    client = RestClientCE(base_url=server.base_url)
    client.login(*server.admin)
    return client


@pytest.fixture
def board(server: ServerThread) -> Iterator[tuple[TBDeviceMqttClient, Device]]:
    """A device connected with ThingsBoard's MQTT SDK."""
    device = server.add_device("sdk-board")
    client = TBDeviceMqttClient("127.0.0.1", port=server.mqtt_port, username=device.token)
    client.connect()
    _wait(client.is_connected)
    try:
        yield client, device
    finally:
        client.stop()
        client.disconnect()
        client._client._reset_sockets()  # the SDK leaves paho's wake-up sockets open


def _wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _session(server: ServerThread, device: Device, feed: str) -> None:
    """Wait until the device's session has subscribed to `feed` (attributes or rpc)."""

    def ready() -> bool:
        sessions = server.on_loop(lambda: server.server.hub.for_device(device.id))
        return any(getattr(s, f"wants_{feed}") for s in sessions)

    _wait(ready)


def _values(attributes: list[dict[str, Any]]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in attributes}


def test_attribute_saves_in_every_form_and_scope(
    server: ServerThread, rest: RestClientCE, board: tuple[TBDeviceMqttClient, Device]
) -> None:
    sdk, device = board
    updates: queue.Queue[Any] = queue.Queue()
    sdk.subscribe_to_all_attributes(lambda content, error: updates.put(content))
    _session(server, device, "attributes")
    did = DeviceId(device.id, "DEVICE")
    sdk.send_attributes({"firmware": "1.2"}).get()

    # the three paths of ThingsBoard's saves: legacy, v1 and v2; shared ones reach the device
    rest.save_device_attributes(did, "SHARED_SCOPE", {"interval": 10})
    assert updates.get(timeout=TIMEOUT) == {"interval": 10}
    rest.save_entity_attributes_v1(did, "SHARED_SCOPE", {"led": True})
    assert updates.get(timeout=TIMEOUT) == {"led": True}
    rest.save_entity_attributes_v2(did, "SHARED_SCOPE", {"config": {"mode": "eco"}})
    assert updates.get(timeout=TIMEOUT) == {"config": {"mode": "eco"}}
    rest.save_device_attributes(did, "SERVER_SCOPE", {"site": "lab"})
    rest.save_entity_attributes_v1(did, "SERVER_SCOPE", {"floor": 2})
    rest.save_entity_attributes_v2(did, "SERVER_SCOPE", {"rack": 1.5})
    assert updates.empty()  # server attributes never go to the device

    assert _values(rest.get_attributes_by_scope(did, "SHARED_SCOPE")) == {
        "interval": 10,
        "led": True,
        "config": {"mode": "eco"},
    }
    assert _values(rest.get_attributes_by_scope(did, "SERVER_SCOPE", "site,rack")) == {
        "site": "lab",
        "rack": 1.5,
    }
    every = rest.get_attributes(did)
    scopes = [{"firmware"}, {"site", "floor", "rack"}, {"interval", "led", "config"}]
    assert [a["key"] for a in every][:1] == ["firmware"]  # ThingsBoard's scope order
    assert [{a["key"] for a in every[i:j]} for i, j in ((0, 1), (1, 4), (4, 7))] == scopes
    assert all(isinstance(a["lastUpdateTs"], int) for a in every)
    assert rest.get_attribute_keys(did) == [a["key"] for a in every]
    assert rest.get_attribute_keys_by_scope(did, "CLIENT_SCOPE") == ["firmware"]

    # deletes: a shared delete is announced to the device as ThingsBoard does
    rest.delete_device_attributes(did, "SHARED_SCOPE", "interval,led")
    assert updates.get(timeout=TIMEOUT) == {"deleted": ["interval", "led"]}
    rest.delete_entity_attributes(did, "SERVER_SCOPE", "site")
    rest.delete_entity_attributes(did, "CLIENT_SCOPE", "firmware")
    assert rest.get_attribute_keys(did) == ["floor", "rack", "config"]
    assert updates.empty()


def test_attribute_saves_refused_as_thingsboard(server: ServerThread, rest: RestClientCE) -> None:
    did = DeviceId(server.add_device("refusals").id, "DEVICE")
    for call, status in (
        (lambda: rest.save_device_attributes(did, "CLIENT_SCOPE", {"x": 1}), 400),
        (lambda: rest.save_entity_attributes_v2(did, "SERVER_SCOPE", {}), 400),
        (lambda: rest.save_entity_attributes_v1(did, "SERVER_SCOPE", [1, 2]), 400),
        (lambda: rest.delete_device_attributes(did, "SERVER_SCOPE", ","), 400),
    ):
        with pytest.raises(ApiException) as info:
            call()
        assert info.value.status == status
        assert orjson.loads(info.value.body)["status"] == status


async def test_telemetry_saved_over_rest_is_stored_and_live(
    server: ServerThread, rest: RestClientCE
) -> None:
    device = server.add_device("rest-telemetry")
    did = DeviceId(device.id, "DEVICE")
    jwt = login(server)["X-Authorization"].removeprefix("Bearer ")
    url = f"ws://127.0.0.1:{server.http_port}/api/ws/plugins/telemetry?token={jwt}"
    async with connect(url) as ws:
        sub = {"entityType": "DEVICE", "entityId": device.id, "keys": "t", "cmdId": 1}
        await ws.send(orjson.dumps({"tsSubCmds": [sub]}).decode())
        await asyncio.wait_for(ws.recv(), TIMEOUT)  # the (empty) latest values
        before = int(time.time() * 1000)
        await asyncio.to_thread(rest.save_entity_telemetry, did, "ANY", {"t": 21.5})
        live = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    [[stamp, value]] = live["data"]["t"]
    assert value == "21.5" and stamp >= before

    # unstamped saves get the device's clock: two in a row are two points, never one (the
    # items of one message share a stamp, as ThingsBoard's)
    rest.save_entity_telemetry(did, "ANY", [{"t": 22}, {"t": 23}])
    rest.save_entity_telemetry(did, "ANY", {"t": 24})
    rest.save_entity_telemetry(did, "ANY", {"ts": 1000, "values": {"t": 1, "h": "dry"}})
    rest.save_entity_telemetry_with_ttl(did, "ANY", 86400, [{"ts": 2000, "values": {"t": 2}}])
    history = rest.get_timeseries(did, "t", 0, 2**62, limit=10, order_by="ASC")
    assert [p["value"] for p in history["t"]] == ["1", "2", "21.5", "23", "24"]
    assert len({p["ts"] for p in history["t"]}) == 5
    assert rest.get_timeseries_keys_v1(did) == ["h", "t"]
    latest = rest.get_latest_timeseries(did, "t,h", use_strict_data_types=True)
    assert latest["t"][0]["value"] == 24 and latest["h"] == [{"ts": 1000, "value": "dry"}]

    for body in ({}, "not json", [1]):
        with pytest.raises(ApiException) as info:
            rest.save_entity_telemetry(did, "ANY", body)
        assert info.value.status == 400


def test_history_parameters_as_thingsboard(server: ServerThread, rest: RestClientCE) -> None:
    device = server.add_device("history")
    points = [(device.key, "t", ts, ts // 1000) for ts in range(0, 300_000, 1000)]
    server.call(server.server.store.write(points, []))
    did = DeviceId(device.id, "DEVICE")

    def query(**params: Any) -> list[Any]:
        answer = rest.get_timeseries(did, "t", 0, 300_000, use_strict_data_types=True, **params)
        found: list[Any] = [(p["ts"], p["value"]) for p in answer["t"]]
        return found

    # aggregated: every bucket is answered (limit counts raw points only) ...
    buckets = query(agg="MAX", interval=2000, interval_type="MILLISECONDS", order_by="ASC")
    assert len(buckets) == 150 and buckets[:2] == [(1000, 1), (3000, 3)]
    assert query(agg="COUNT", interval=100_000, time_zone="UTC") == [
        (250_000, 100),
        (150_000, 100),
        (50_000, 100),
    ]
    # ... and without an interval an aggregation is raw points, newest first
    assert query(agg="AVG", limit=2) == [(299_000, 299), (298_000, 298)]
    with pytest.raises(ApiException) as info:
        query(agg="AVG", interval=1000, interval_type="MONTH")
    assert info.value.status == 400 and "MILLISECONDS" in orjson.loads(info.value.body)["message"]
    latest = rest.get_latest_timeseries(did, "t,missing")
    assert latest["t"] == [{"ts": 299_000, "value": "299"}]
    [[none]] = [latest["missing"]]  # as ThingsBoard: a key with no value is ts now, null
    assert none["value"] is None and none["ts"] > 299_000


def test_deleting_telemetry_keeps_latest_values_right(
    server: ServerThread, rest: RestClientCE
) -> None:
    device = server.add_device("deletes")
    points = [(device.key, k, ts, ts) for k in ("a", "b", "c", "d") for ts in (1000, 2000, 3000)]
    server.call(server.server.store.write(points, []))
    did = DeviceId(device.id, "DEVICE")

    def kept(key: str) -> list[int]:
        found = rest.get_timeseries(did, key, 0, 10_000, order_by="ASC").get(key, [])
        return [p["ts"] for p in found]

    rest.delete_entity_timeseries(did, "a", start_ts=1000, end_ts=3000)
    assert kept("a") == [3000]
    rest.delete_entity_timeseries(
        did, "b", start_ts=2500, end_ts=4000, rewrite_latest_if_deleted=True
    )
    rest.delete_entity_timeseries(did, "c", start_ts=0, end_ts=9, delete_all_data_for_keys=True)
    rest.delete_entity_timeseries(did, "d", start_ts=0, end_ts=10_000, delete_latest=False)
    assert (kept("b"), kept("c"), kept("d")) == ([1000, 2000], [], [])
    latest = rest.get_latest_timeseries(did)
    assert {k: v[0]["ts"] for k, v in latest.items()} == {"a": 3000, "b": 2000, "d": 3000}
    assert rest.get_timeseries_keys_v1(did) == ["a", "b", "d"]
    path = f"{server.base_url}/api/plugins/telemetry/DEVICE/{device.id}/timeseries/delete"
    headers = login(server)
    for params in ({"keys": "a"}, {"keys": ",", "deleteAllDataForKeys": "true"}, {}):
        refused = httpx.delete(path, params=params, headers=headers)
        assert refused.status_code == 400, params
        assert refused.json()["errorCode"] == 31


def test_rpc_to_a_device_on_the_sdk(
    server: ServerThread, rest: RestClientCE, board: tuple[TBDeviceMqttClient, Device]
) -> None:
    sdk, device = board
    did = DeviceId(device.id, "DEVICE")
    offline = DeviceId(server.add_device("offline").id, "DEVICE")
    with pytest.raises(ApiException) as info:  # not connected: ThingsBoard's 409
        rest.handle_two_way_device_rpc_request(offline, {"method": "setLed", "params": {}})
    assert info.value.status == 409
    calls: queue.Queue[Any] = queue.Queue()

    def handler(request_id: str, request: dict[str, Any]) -> None:
        calls.put(request)
        if request["method"] == "getState":
            sdk.send_rpc_reply(request_id, {"led": True, "params": request["params"]})

    sdk.set_server_side_rpc_request_handler(handler)
    _session(server, device, "rpc")
    answer = rest.handle_two_way_device_rpc_request(
        did, {"method": "getState", "params": {"pin": 2}, "timeout": 5000}
    )
    assert answer == {"led": True, "params": {"pin": 2}}
    rest.handle_one_way_device_rpc_request(did, {"method": "blink", "params": {"times": 3}})
    assert calls.get(timeout=TIMEOUT) == {"method": "getState", "params": {"pin": 2}}
    assert calls.get(timeout=TIMEOUT) == {"method": "blink", "params": {"times": 3}}
    with pytest.raises(ApiException) as info:  # no answer in time: ThingsBoard's 408
        rest.handle_two_way_device_rpc_request(did, {"method": "silent", "timeout": 300})
    assert info.value.status == 408


def test_bad_ids_unknown_entities_and_no_token(server: ServerThread, rest: RestClientCE) -> None:
    device = server.add_device("errors")
    bad, nobody = DeviceId("not-a-uuid", "DEVICE"), DeviceId(NULL_UUID, "DEVICE")
    command = {"method": "m"}
    cases: list[tuple[Callable[[], Any], int]] = [
        (lambda: rest.get_latest_timeseries(bad), 400),
        (lambda: rest.get_attributes(nobody), 404),
        (lambda: rest.get_timeseries_keys_v1(AssetId(device.id, "ASSET")), 404),
        (lambda: rest.save_device_attributes(bad, "SHARED_SCOPE", {"a": 1}), 400),
        (lambda: rest.delete_entity_timeseries(nobody, "a", True), 404),
        (lambda: rest.handle_one_way_device_rpc_request(bad, command), 400),
        (lambda: rest.handle_two_way_device_rpc_request(nobody, command), 404),
    ]
    for call, status in cases:
        with pytest.raises(ApiException) as info:
            call()
        body = orjson.loads(info.value.body)
        assert info.value.status == status == body["status"]
        assert set(body) == {"status", "message", "errorCode", "timestamp"}
        assert body["errorCode"] == {400: 31, 404: 32}[status]
    path = f"/api/plugins/telemetry/DEVICE/{device.id}/timeseries/ANY"
    unauthenticated = httpx.post(server.base_url + path, json={"t": 1})
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["errorCode"] == 10
