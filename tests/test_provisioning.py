"""Device provisioning with ThingsBoard's own clients against a real tinyboard: a profile
saved over REST with provisioning settings, then `TBDeviceMqttClient.provision` (MQTT,
username `provision`) and `TBHTTPDevice.provision` (HTTP `POST /api/v1/provision`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tb_device_http import TBHTTPDevice
from tb_device_mqtt import TBDeviceMqttClient

from tests.helpers import ServerThread
from tests.mqtt_clients import V5, V311, Device
from tests.web_helpers import api
from tinyboard.core.limits import RateLimit
from tinyboard.core.provisioning import (
    FAILURE_TEXT,
    KEY_TAKEN,
    NOT_FOUND_TEXT,
    AddressLimit,
    ProvisionRequest,
)
from tinyboard.errors import PayloadError

# tb-mqtt-client's ProvisionClient makes a paho client with callback API version 1.
OLD_PAHO = pytest.mark.filterwarnings(
    "ignore:Callback API version 1 is deprecated:DeprecationWarning"
)
KEY, SECRET = "factory-key-0123456789", "factory-secret-9876543210"
NOT_FOUND = {"status": "NOT_FOUND", "errorMsg": NOT_FOUND_TEXT}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    running = ServerThread(tmp_path / "data", provision_rate_limit="1000:60").start()
    try:
        yield running
    finally:
        running.stop()


def save_profile(
    server: ServerThread, name: str, kind: str, key: str = KEY, secret: str = SECRET
) -> httpx.Response:
    with api(server) as http:
        return http.post(
            "/api/deviceProfile",
            json={
                "name": name,
                "type": "DEFAULT",
                "transportType": "DEFAULT",
                "provisionType": kind,
                "provisionDeviceKey": key,
                "profileData": {
                    "configuration": {"type": "DEFAULT"},
                    "transportConfiguration": {"type": "DEFAULT"},
                    "provisionConfiguration": {"type": kind, "provisionDeviceSecret": secret},
                },
            },
        )


def provision_http(server: ServerThread, **request: Any) -> httpx.Response:
    body = {"provisionDeviceKey": KEY, "provisionDeviceSecret": SECRET, **request}
    return httpx.post(f"{server.base_url}/api/v1/provision", json=body)


def device_names(server: ServerThread) -> list[str]:
    return [d.name for d in server.call(server.server.store.list_devices())]


@OLD_PAHO
def test_mqtt_provisioning_creates_a_device_whose_token_sends_telemetry(
    server: ServerThread,
) -> None:
    assert save_profile(server, "sensors", "ALLOW_CREATE_NEW_DEVICES").status_code == 200
    credentials = TBDeviceMqttClient.provision(
        "127.0.0.1",
        port=server.mqtt_port,
        provision_device_key=KEY,
        provision_device_secret=SECRET,
        device_name="board-1",
    )
    assert credentials is not None
    assert (credentials["status"], credentials["credentialsType"]) == ("SUCCESS", "ACCESS_TOKEN")
    device = server.call(server.server.store.get_device("board-1"))
    assert device.token == credentials["credentialsValue"] and device.type == "sensors"
    state = server.call(server.server.store.attributes(device.key, "SERVER"))
    assert state["provisionState"][1] == "provisioned"
    board = Device(server.mqtt_port, device.token)
    try:
        assert board.connack == 0
        board.publish("v1/devices/me/telemetry", '{"temperature": 21.5}')
    finally:
        board.close()
    latest = server.call(server.server.store.latest(device.key))
    assert latest["temperature"][1] == 21.5


def test_http_provisioning_with_thingsboard_s_http_client(server: ServerThread) -> None:
    save_profile(server, "sensors", "ALLOW_CREATE_NEW_DEVICES")
    device = TBHTTPDevice.provision(server.base_url, "board-2", KEY, SECRET)
    stored = server.call(server.server.store.get_device("board-2"))
    response = httpx.post(f"{server.base_url}/api/v1/{stored.token}/telemetry", json={"light": 300})
    assert response.status_code == 200
    assert device is not None
    chosen = provision_http(
        server, deviceName="board-3", credentialsType="ACCESS_TOKEN", token="my-chosen-token-123"
    )
    assert chosen.json() == {
        "credentialsValue": "my-chosen-token-123",
        "credentialsType": "ACCESS_TOKEN",
        "status": "SUCCESS",
    }
    unnamed = provision_http(server).json()
    assert unnamed["status"] == "SUCCESS"
    assert any(len(name) == 20 for name in device_names(server))


def test_pre_provisioned_devices_get_their_token_once(server: ServerThread) -> None:
    made = save_profile(server, "meters", "CHECK_PRE_PROVISIONED_DEVICES").json()
    meter = server.add_device("meter-7", profile_id=made["id"]["id"])
    first = provision_http(server, deviceName="meter-7")
    assert first.status_code == 200
    assert first.json() == {
        "credentialsValue": meter.token,
        "credentialsType": "ACCESS_TOKEN",
        "status": "SUCCESS",
    }
    again = provision_http(server, deviceName="meter-7").json()
    assert again["status"] == "FAILURE" and again["errorMsg"].startswith(FAILURE_TEXT)
    unknown = provision_http(server, deviceName="meter-8").json()
    assert unknown["status"] == "FAILURE"
    server.add_device("elsewhere")  # the default profile's: not pre-provisioned in "meters"
    assert provision_http(server, deviceName="elsewhere").json()["status"] == "FAILURE"
    assert sorted(device_names(server)) == ["elsewhere", "meter-7"]


def test_a_wrong_secret_and_a_wrong_key_are_the_same_not_found(server: ServerThread) -> None:
    save_profile(server, "sensors", "ALLOW_CREATE_NEW_DEVICES")
    server.add_device("taken")
    wrong_secret = provision_http(server, deviceName="taken", provisionDeviceSecret="nope")
    wrong_key = provision_http(server, deviceName="taken", provisionDeviceKey="nope")
    absent_device = provision_http(server, deviceName="new-one", provisionDeviceSecret="nope")
    empty = provision_http(server, deviceName="new-one", provisionDeviceSecret="")
    for response in (wrong_secret, wrong_key, absent_device, empty):
        assert (response.status_code, response.json()) == (200, NOT_FOUND)
    assert device_names(server) == ["taken"]


def test_disabled_provisioning_answers_not_found(server: ServerThread) -> None:
    with api(server) as http:
        saved = http.post("/api/deviceProfile", json={"name": "plain", "provisionDeviceKey": KEY})
    assert saved.status_code == 200
    assert provision_http(server, deviceName="x").json() == NOT_FOUND
    assert device_names(server) == []


def test_an_existing_name_in_create_mode_is_thingsboard_s_failure(server: ServerThread) -> None:
    save_profile(server, "sensors", "ALLOW_CREATE_NEW_DEVICES")
    server.add_device("taken")
    answer = provision_http(server, deviceName="taken").json()
    assert answer["status"] == "FAILURE"
    assert answer["errorMsg"] == f"{FAILURE_TEXT} Device with name 'taken' already exists."
    basic = provision_http(
        server, deviceName="b", credentialsType="MQTT_BASIC", username="u", password="p"
    )
    assert basic.json()["status"] == "FAILURE" and "access tokens only" in basic.json()["errorMsg"]
    assert device_names(server) == ["taken"]


def test_malformed_requests_are_400(server: ServerThread) -> None:
    url = f"{server.base_url}/api/v1/provision"
    assert httpx.post(url, content=b"{nope").status_code == 400
    missing = httpx.post(url, json={"deviceName": "x"})
    assert missing.status_code == 400 and "provisionDeviceKey" in missing.json()["message"]
    assert httpx.post(url, json=[1]).status_code == 400


def test_profile_settings_are_checked_on_save(server: ServerThread) -> None:
    assert save_profile(server, "first", "ALLOW_CREATE_NEW_DEVICES").status_code == 200
    taken = save_profile(server, "second", "CHECK_PRE_PROVISIONED_DEVICES")
    assert (taken.status_code, taken.json()["message"]) == (400, KEY_TAKEN)
    no_secret = save_profile(server, "third", "ALLOW_CREATE_NEW_DEVICES", key="k3", secret="")
    assert no_secret.status_code == 400 and "provisionDeviceSecret" in no_secret.json()["message"]
    with api(server) as http:
        mismatch = http.post(
            "/api/deviceProfile",
            json={
                "name": "fourth",
                "provisionType": "ALLOW_CREATE_NEW_DEVICES",
                "provisionDeviceKey": "k4",
            },
        )
    assert mismatch.status_code == 400 and "provisionConfiguration" in mismatch.json()["message"]
    with api(server) as http:
        profile = http.get("/api/deviceProfiles?pageSize=10&page=0&textSearch=first").json()
        first = profile["data"][0]
        assert (first["provisionType"], first["provisionDeviceKey"]) == (
            "ALLOW_CREATE_NEW_DEVICES",
            KEY,
        )
        assert http.post("/api/deviceProfile", json=first).status_code == 200  # its own key


@pytest.mark.parametrize("protocol", [V311, V5])
def test_mqtt_wrong_secret_failure_and_a_publish_elsewhere(
    server: ServerThread, protocol: int
) -> None:
    save_profile(server, "sensors", "ALLOW_CREATE_NEW_DEVICES")
    server.add_device("taken")
    session = Device(server.mqtt_port, "provision", protocol=protocol)
    try:
        assert session.connack == 0
        assert [int(rc.value) for rc in session.subscribe("/provision/response")] == [1]
        assert [int(rc.value) for rc in session.subscribe("v1/devices/me/rpc/request/+")] == [0x80]
        for request, status in (
            (
                {"provisionDeviceKey": KEY, "provisionDeviceSecret": "x", "deviceName": "a"},
                "NOT_FOUND",
            ),
            (
                {"provisionDeviceKey": KEY, "provisionDeviceSecret": SECRET, "deviceName": "taken"},
                "FAILURE",
            ),
        ):
            session.publish("/provision/request", json.dumps(request))
            answer = json.loads(session.next_message().payload)
            assert answer["status"] == status
        session.publish("v1/devices/me/telemetry", '{"t": 1}', qos=0)
        session.disconnected.get(timeout=10)
    finally:
        session.close()
    assert device_names(server) == ["taken"]


def test_a_provisioning_session_ends_after_its_time(server: ServerThread) -> None:
    server.server.mqtt.provision_timeout = 0.5
    session = Device(server.mqtt_port, None, client_id="provision")
    try:
        assert session.connack == 0
        session.disconnected.get(timeout=10)
    finally:
        session.close()


def test_the_rate_limit_trips_clearly_and_devices_are_unaffected(tmp_path: Path) -> None:
    server = ServerThread(tmp_path / "data", provision_rate_limit="3:3600").start()
    try:
        save_profile(server, "sensors", "ALLOW_CREATE_NEW_DEVICES")
        other = server.add_device("other")
        for _ in range(3):
            assert provision_http(server, provisionDeviceSecret="guess").json() == NOT_FOUND
        refused = provision_http(server, deviceName="late")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["status"] == "FAILURE"
        assert "too many provision requests" in refused.json()["errorMsg"]
        session = Device(server.mqtt_port, "provision")
        try:
            session.subscribe("/provision/response")
            session.publish(
                "/provision/request",
                json.dumps({"provisionDeviceKey": KEY, "provisionDeviceSecret": SECRET}),
            )
            assert "too many" in json.loads(session.next_message().payload)["errorMsg"]
        finally:
            session.close()
        posted = httpx.post(f"{server.base_url}/api/v1/{other.token}/telemetry", json={"v": 1})
        assert posted.status_code == 200
        assert device_names(server) == ["other"]
    finally:
        server.stop()


def test_a_profile_saved_with_tb_rest_client_provisions(server: ServerThread) -> None:
    from tb_rest_client.models.models_ce import DeviceProfile, DeviceProfileData
    from tb_rest_client.rest import ApiException
    from tb_rest_client.rest_client_ce import RestClientCE

    def profile(name: str) -> DeviceProfile:
        return DeviceProfile(
            name=name,
            type="DEFAULT",
            transport_type="DEFAULT",
            provision_type="CHECK_PRE_PROVISIONED_DEVICES",
            provision_device_key=KEY,
            profile_data=DeviceProfileData(
                configuration={"type": "DEFAULT"},
                transport_configuration={"type": "DEFAULT"},
                provision_configuration={
                    "type": "CHECK_PRE_PROVISIONED_DEVICES",
                    "provisionDeviceSecret": SECRET,
                },
            ),
        )

    rest = RestClientCE(base_url=server.base_url)
    rest.login(*server.admin)
    try:
        made = rest.save_device_profile(profile("fleet"))
        fetched = rest.get_device_profile_by_id(made.id)
        assert (fetched.provision_type, fetched.provision_device_key) == (
            "CHECK_PRE_PROVISIONED_DEVICES",
            KEY,
        )
        with pytest.raises(ApiException) as taken:
            rest.save_device_profile(profile("fleet-2"))
        assert taken.value.status == 400 and KEY_TAKEN in str(taken.value.body)
    finally:
        rest.stop()
    board = server.add_device("fleet-1", profile_id=made.id.id)
    assert provision_http(server, deviceName="fleet-1").json()["credentialsValue"] == board.token


@pytest.mark.parametrize("protocol", [V311, V5])
def test_a_malformed_mqtt_request_is_refused_as_any_bad_payload(
    server: ServerThread, protocol: int
) -> None:
    session = Device(server.mqtt_port, "provision", protocol=protocol)
    try:
        session.subscribe("/provision/response")
        info = session.publish("/provision/request", b"{not json")
        if protocol == V5:  # PUBACK 0x99 and the session goes on
            assert info.rc == 0
            session.publish(
                "/provision/request",
                json.dumps({"provisionDeviceKey": "k", "provisionDeviceSecret": "s"}),
            )
            assert json.loads(session.next_message().payload) == NOT_FOUND
        else:  # no reason code to carry it in: the session ends
            session.disconnected.get(timeout=10)
    finally:
        session.close()


def test_the_address_limit_refills_and_says_how_long_to_wait() -> None:
    now = [0.0]
    limit = AddressLimit(RateLimit.parse("2:10"), clock=lambda: now[0])
    assert [limit.take("a"), limit.take("a")] == [0.0, 0.0]
    assert limit.take("a") == pytest.approx(5.0)  # one token every 5 s
    assert limit.take("b") == 0.0  # another address has buckets of its own
    now[0] = 5.0
    assert limit.take("a") == 0.0
    assert limit.take("a") > 0
    assert AddressLimit(None).take("a") == 0.0


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"[]", "JSON object"),
        (b'{"provisionDeviceSecret": "s"}', "provisionDeviceKey"),
        (b'{"provisionDeviceKey": "k", "provisionDeviceSecret": 5}', "provisionDeviceSecret"),
        (b'{"provisionDeviceKey": "k", "provisionDeviceSecret": "s", "credentialsType": "X"}',
         "credentialsType"),
        (b'{"provisionDeviceKey": "k", "provisionDeviceSecret": "s", "deviceName": 5}',
         "deviceName"),
    ],
)  # fmt: skip
def test_malformed_requests_say_what_is_wrong(payload: bytes, problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        ProvisionRequest.from_json(payload)
