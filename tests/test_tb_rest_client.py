"""ThingsBoard's official REST client (`tb-rest-client` 4.3, `RestClientCE`) against a real
tinyboard: users, devices, device profiles. The client's models raise ValueError on a
missing required field or an unknown enum value, so every call that returns here also
proves the shape."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from tb_rest_client.models.models_ce import (
    Device,
    DeviceProfile,
    DeviceProfileData,
    DeviceProfileInfo,
    PageDataDevice,
    PageDataDeviceInfo,
    PageDataDeviceProfile,
    PageDataDeviceProfileInfo,
    Tenant,
    TenantId,
    TenantInfo,
    User,
)
from tb_rest_client.rest import ApiException
from tb_rest_client.rest_client_ce import RestClientCE

from tests.helpers import ServerThread
from tests.mqtt_clients import Device as Board
from tests.web_helpers import login
from tinyboard.core.models import MAX_ADDITIONAL_INFO
from tinyboard.web.entities import NULL_UUID, TENANT_UUID
from tinyboard.web.models import MAX_PROFILE_DATA


@pytest.fixture
def server(server_on_each_store: ServerThread) -> ServerThread:
    return server_on_each_store


@pytest.fixture
def client(server: ServerThread) -> Iterator[RestClientCE]:
    rest = RestClientCE(base_url=server.base_url)
    rest.login(*server.admin)
    yield rest
    rest.stop()


def default_profile_id(client: RestClientCE) -> object:
    info = client.get_default_device_profile_info()
    assert isinstance(info, DeviceProfileInfo)
    return info.id


def error_of(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, object]:
    """ThingsBoard's error body, checked for its four fields."""
    body: dict[str, object] = json.loads(exc.value.body)
    assert set(body) == {"status", "message", "errorCode", "timestamp"}
    assert body["status"] == exc.value.status
    return body


def test_login_and_the_user(client: RestClientCE, server: ServerThread) -> None:
    user = client.get_user()
    assert isinstance(user, User)
    assert (user.email, user.name, user.authority) == (server.admin[0],) * 2 + ("TENANT_ADMIN",)
    assert user.id.entity_type == "USER" and uuid.UUID(user.id.id)
    assert (user.tenant_id.entity_type, user.tenant_id.id) == ("TENANT", TENANT_UUID)
    assert (user.customer_id.entity_type, user.customer_id.id) == ("CUSTOMER", NULL_UUID)
    assert user.created_time > 0 and user.first_name is None


def test_the_tenant_is_readable_and_tenant_admin_s_limits_are_403(
    client: RestClientCE, server: ServerThread
) -> None:
    own = TenantId(TENANT_UUID, "TENANT")
    tenant = client.get_tenant_by_id(own)
    assert isinstance(tenant, Tenant)
    assert (tenant.id.id, tenant.title, tenant.name) == (TENANT_UUID, "tinyboard", "tinyboard")
    assert tenant.created_time == client.get_user().created_time  # the first start
    info = client.get_tenant_info_by_id(own)
    assert isinstance(info, TenantInfo) and info.tenant_profile_name == "Default"
    assert info.tenant_profile_id.entity_type == "TENANT_PROFILE"

    # ThingsBoard looks the tenant up first: another tenant's id is not found for anyone
    with pytest.raises(ApiException) as other:
        client.get_tenant_by_id(TenantId(str(uuid.uuid4()), "TENANT"))
    assert other.value.status == 404 and error_of(other)["errorCode"] == 32

    # listing, creating and deleting tenants is a system administrator's
    for call in (
        lambda: client.get_tenants(page_size=10, page=0),
        lambda: client.get_tenant_infos(page_size=10, page=0),
        lambda: client.save_tenant(Tenant(title="another")),
        lambda: client.delete_tenant(own),
    ):
        with pytest.raises(ApiException) as denied:
            call()
        body = error_of(denied)
        assert (denied.value.status, body["errorCode"]) == (403, 20)
        assert body["message"] == "You don't have permission to perform this operation!"
    assert client.get_tenant_by_id(own).id.id == TENANT_UUID  # still there

    with httpx.Client(base_url=server.base_url, headers=login(server)) as rest:
        assert rest.get("/api/tenant/not-a-uuid").status_code == 400
    assert httpx.get(f"{server.base_url}/api/tenants?pageSize=1&page=0").status_code == 401


def test_a_saved_device_s_token_works_over_mqtt(client: RestClientCE, server: ServerThread) -> None:
    profile_id = default_profile_id(client)
    saved = client.save_device(
        Device(name="thermo-1", label="kitchen", device_profile_id=profile_id)
    )
    assert isinstance(saved, Device)
    assert (saved.name, saved.label, saved.type) == ("thermo-1", "kitchen", "default")
    assert saved.id.entity_type == "DEVICE" and saved.device_profile_id.id == profile_id.id
    assert saved.tenant_id.id == TENANT_UUID and saved.customer_id.id == NULL_UUID
    credentials = client.get_device_credentials_by_device_id(saved.id)
    assert credentials.credentials_type == "ACCESS_TOKEN"
    assert credentials.device_id.id == saved.id.id

    board = Board(server.mqtt_port, credentials.credentials_id)
    try:
        assert board.connack == 0
        board.publish("v1/devices/me/telemetry", '{"temperature": 21.5}')  # PUBACK: stored
        stored = server.call(server.server.store.get_device(saved.id.id))
        latest = server.call(server.server.store.latest(stored.key))
        assert latest["temperature"][1] == 21.5
        info = client.get_device_info_by_id(saved.id)
        assert (info.device_profile_name, info.active, info.customer_is_public) == (
            "default",
            True,
            False,
        )
    finally:
        board.close()

    assert client.get_tenant_device("thermo-1").id.id == saved.id.id
    assert client.get_device_by_id(saved.id).to_dict() == saved.to_dict()
    unknown = str(uuid.uuid4())
    assert [d.name for d in client.get_devices_by_ids([saved.id.id, unknown])] == ["thermo-1"]
    saved.label = "hall"
    assert client.save_device(saved).label == "hall"  # with an id: an update
    client.delete_device(saved.id)
    with pytest.raises(ApiException) as gone:
        client.get_device_by_id(saved.id)
    assert gone.value.status == 404 and error_of(gone)["errorCode"] == 32


def test_a_device_s_additional_info_is_kept_as_saved(client: RestClientCE) -> None:
    profile_id = default_profile_id(client)
    info = {"description": "kitchen board", "gateway": False, "layout": {"floor": 1}}
    saved = client.save_device(
        Device(name="board", device_profile_id=profile_id, additional_info=info)
    )
    plain = client.save_device(Device(name="plain", device_profile_id=profile_id))
    assert saved.additional_info == info and plain.additional_info is None  # as ThingsBoard
    assert client.get_device_by_id(saved.id).additional_info == info
    assert client.get_device_info_by_id(saved.id).additional_info == info
    assert client.get_tenant_device("board").additional_info == info
    assert [d.additional_info for d in client.get_devices_by_ids([saved.id.id])] == [info]
    infos = client.get_tenant_device_infos(page_size=10, page=0, sort_property="name")
    assert [(d.name, d.additional_info) for d in infos.data] == [("board", info), ("plain", None)]
    listed = client.get_tenant_devices(page_size=10, page=0, sort_property="name")
    assert [d.additional_info for d in listed.data] == [info, None]

    saved.additional_info = {"description": "hall board"}  # an update replaces it
    assert client.save_device(saved).additional_info == {"description": "hall board"}
    assert client.get_device_by_id(saved.id).additional_info == {"description": "hall board"}
    saved.additional_info = None
    assert client.save_device(saved).additional_info is None
    assert client.get_device_by_id(saved.id).additional_info is None


@pytest.mark.parametrize(
    ("additional_info", "problem"),
    [
        ("kitchen board", "must be a JSON object or null, not str"),
        (["kitchen"], "must be a JSON object or null, not list"),
        ({"description": "x" * (MAX_ADDITIONAL_INFO - 17)}, "at most 16384"),
        ({"serial": 2**70}, "cannot be stored as JSON"),  # found by schemathesis: was a 500
    ],
)
def test_additional_info_must_be_a_bounded_json_object(
    client: RestClientCE, additional_info: object, problem: str
) -> None:
    profile_id = default_profile_id(client)
    fits = {"description": "x" * (MAX_ADDITIONAL_INFO - 18)}  # exactly the limit as JSON
    assert (
        client.save_device(
            Device(name="fits", device_profile_id=profile_id, additional_info=fits)
        ).additional_info
        == fits
    )
    with pytest.raises(ApiException) as refused:
        client.save_device(
            Device(name="refused", device_profile_id=profile_id, additional_info=additional_info)
        )
    message = str(error_of(refused)["message"])
    assert refused.value.status == 400 and "additionalInfo" in message and problem in message
    assert client.get_tenant_devices(page_size=10, page=0).total_elements == 1


@pytest.mark.parametrize(
    ("profile_data", "problem"),
    [
        ([], "must be a JSON object or null, not list"),
        ({"configuration": {"serial": 2**70}}, "cannot be stored as JSON"),  # was a 500
        ({"configuration": {"x": "\ud800"}}, "cannot be stored as JSON"),  # a lone surrogate
        ({"configuration": {"x": "y" * MAX_PROFILE_DATA}}, f"at most {MAX_PROFILE_DATA}"),
    ],
)
def test_profile_data_must_be_a_bounded_json_object(
    server: ServerThread, profile_data: object, problem: str
) -> None:
    with httpx.Client(base_url=server.base_url, headers=login(server)) as http:
        body = json.dumps({"name": "p", "profileData": profile_data}, ensure_ascii=True)
        refused = http.post(
            "/api/deviceProfile", content=body, headers={"Content-Type": "application/json"}
        )
        assert refused.status_code == 400, refused.text
        message = refused.json()["message"]
        assert "profileData" in message and problem in message
        assert http.get("/api/deviceProfile/names").json() == [
            {"id": default_profile_id_of(http), "name": "default"}
        ]


def default_profile_id_of(http: httpx.Client) -> dict[str, str]:
    info: dict[str, str] = http.get("/api/deviceProfileInfo/default").json()["id"]
    return info


def test_paged_device_lists_honour_thingsboard_s_page_link(client: RestClientCE) -> None:
    profile_id = default_profile_id(client)
    for name, label in [("a1", "z"), ("a2", "y"), ("b1", "x"), ("a3", "w"), ("c1", "v")]:
        client.save_device(Device(name=name, label=label, device_profile_id=profile_id))
    page = client.get_tenant_devices(page_size=2, page=0, sort_property="name", sort_order="DESC")
    assert isinstance(page, PageDataDevice)
    assert [d.name for d in page.data] == ["c1", "b1"]
    assert (page.total_elements, page.total_pages, page.has_next) == (5, 3, True)
    last = client.get_tenant_devices(page_size=2, page=2, sort_property="name", sort_order="DESC")
    assert [d.name for d in last.data] == ["a1"] and not last.has_next
    found = client.get_tenant_devices(page_size=10, page=0, text_search="a", sort_property="label")
    assert [d.name for d in found.data] == ["a3", "a2", "a1"] and found.total_elements == 3
    infos = client.get_tenant_device_infos(
        page_size=10, page=0, device_profile_id=profile_id, sort_property="createdTime"
    )
    assert isinstance(infos, PageDataDeviceInfo)
    assert [d.name for d in infos.data] == ["a1", "a2", "b1", "a3", "c1"]
    assert {d.device_profile_name for d in infos.data} == {"default"}
    idle = client.get_tenant_device_infos(page_size=2, page=1, active=False)
    assert idle.total_elements == 5 and [d.name for d in idle.data] == ["a3", "b1"]
    assert client.get_tenant_devices(page_size=5, page=0, type="other").total_elements == 0
    with pytest.raises(ApiException) as bad:
        client.get_tenant_devices(page_size=5, page=0, sort_property="colour")
    assert bad.value.status == 400 and "deviceProfileName" in str(error_of(bad)["message"])


def test_device_profiles(client: RestClientCE, server: ServerThread) -> None:
    default = client.get_default_device_profile_info()
    assert (default.name, default.type, default.transport_type) == ("default", "DEFAULT", "DEFAULT")
    made = client.save_device_profile(
        DeviceProfile(
            name="meter",
            description="power meters",
            type="DEFAULT",
            transport_type="DEFAULT",
            provision_type="DISABLED",
            profile_data=DeviceProfileData(
                configuration={"type": "DEFAULT", "units": {"power": {"units": "W"}}},
                transport_configuration={"type": "DEFAULT"},
                provision_configuration={"type": "DISABLED"},
            ),
        )
    )
    assert isinstance(made, DeviceProfile)
    assert (made.name, made.description, made.default) == ("meter", "power meters", False)
    assert made.id.entity_type == "DEVICE_PROFILE" and made.tenant_id.id == TENANT_UUID
    fetched = client.get_device_profile_by_id(made.id)
    assert fetched.profile_data.configuration["units"] == {"power": {"units": "W"}}
    assert client.get_device_profile_info_by_id(made.id).name == "meter"
    infos = client.get_device_profile_infos(page_size=1, page=0, sort_property="name")
    assert isinstance(infos, PageDataDeviceProfileInfo)
    assert [p.name for p in infos.data] == ["default"] and infos.has_next
    profiles = client.get_device_profiles(page_size=10, page=0, text_search="met")
    assert isinstance(profiles, PageDataDeviceProfile)
    assert [p.name for p in profiles.data] == ["meter"]

    assert client.set_default_device_profile(made.id).default
    device = client.save_device(Device(name="m1", device_profile_id=made.id))
    assert device.type == "meter"
    client.set_default_device_profile(default.id)
    with pytest.raises(ApiException) as in_use:
        client.delete_device_profile(made.id)
    assert in_use.value.status == 400
    assert error_of(in_use)["message"] == (
        "The device profile referenced by the devices cannot be deleted!"
    )
    with pytest.raises(ApiException) as is_default:
        client.delete_device_profile(default.id)
    assert is_default.value.status == 400
    assert error_of(is_default)["message"] == "Deletion of Default Device Profile is prohibited!"
    client.delete_device(device.id)
    client.delete_device_profile(made.id)
    with pytest.raises(ApiException) as gone:
        client.get_device_profile_by_id(made.id)
    assert gone.value.status == 404


def test_a_device_type_without_a_profile_creates_it(server: ServerThread) -> None:
    """ThingsBoard's findOrCreateDeviceProfile: `type` alone names (or makes) the profile."""
    with httpx.Client(base_url=server.base_url, headers=login(server)) as http:
        made = http.post("/api/device", json={"name": "s1", "type": "sensor"}).json()
        profile = http.get(f"/api/deviceProfile/{made['deviceProfileId']['id']}").json()
        assert (made["type"], profile["name"], profile["default"]) == ("sensor", "sensor", False)
        again = http.post("/api/device", json={"name": "s2", "type": "sensor"}).json()
        assert again["deviceProfileId"] == made["deviceProfileId"]
        renamed = http.post("/api/deviceProfile", json={**profile, "name": "sensors"})
        assert renamed.status_code == 200
        assert http.get(f"/api/device/{made['id']['id']}").json()["type"] == "sensors"
        types = http.get("/api/device/types").json()
        assert [t["type"] for t in types] == ["default", "sensors"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/device/{}",
        "/api/device/info/{}",
        "/api/device/{}/credentials",
        "/api/devices?deviceIds={}",
        "/api/deviceProfile/{}",
        "/api/deviceProfileInfo/{}",
        "/api/deviceProfileInfos?deviceProfileIds={}",
        "/api/tenant/deviceInfos?deviceProfileId={}",
    ],
)
def test_an_invalid_id_is_a_400_and_an_unknown_one_a_404(server: ServerThread, path: str) -> None:
    with httpx.Client(base_url=server.base_url, headers=login(server)) as http:
        bad = http.get(path.format("not-a-uuid"))
        assert bad.status_code == 400, bad.text
        assert bad.json()["errorCode"] == 31 and "UUID" in bad.json()["message"]
        unknown = http.get(path.format(uuid.uuid4()))
        if "Ids=" in path:  # lists leave unknown ids out, as ThingsBoard
            assert unknown.status_code == 200 and unknown.json() == []
        else:
            assert unknown.status_code == 404, unknown.text
    assert httpx.get(server.base_url + path.format(uuid.uuid4())).status_code == 401


def test_alarm_rules_scoped_by_profile_apply_to_its_devices(
    client: RestClientCE, server: ServerThread
) -> None:
    """A rule's `deviceType` is a profile's name; `deviceProfileId` names it by id."""
    boiler = client.save_device_profile(
        DeviceProfile(name="boiler", type="DEFAULT", transport_type="DEFAULT")
    )
    hot = client.save_device(Device(name="hot", device_profile_id=boiler.id))
    other = client.save_device(Device(name="other", device_profile_id=default_profile_id(client)))
    with httpx.Client(base_url=server.base_url, headers=login(server)) as http:
        rule = http.post(
            "/api/alarmRule",
            json={
                "deviceProfileId": boiler.id.id,
                "key": "pressure",
                "condition": {"op": ">", "value": 5},
                "alarmType": "Pressure",
            },
        )
        assert rule.status_code == 200 and rule.json()["deviceType"] == "boiler"
        unknown = http.post("/api/alarmRule", json={**rule.json(), "deviceProfileId": "x"})
        assert unknown.status_code == 400
    store = server.server.store
    for device in (other, hot):  # other's reading is evaluated before hot's alarm shows
        publish_over_mqtt(client, server, device, '{"pressure": 9}')
    wait_for_an_alarm(server, hot, "the boiler's alarm was not raised")
    other_key = server.call(store.get_device(other.id.id)).key
    assert server.call(store.list_alarms(device=other_key))[0] == []

    # renamed, the profile keeps its rules: they follow its name, as its devices' type does
    boiler.name = "boiler-2"
    client.save_device_profile(boiler)
    with httpx.Client(base_url=server.base_url, headers=login(server)) as http:
        moved = http.get(f"/api/alarmRule/{rule.json()['id']}").json()
    assert moved["deviceType"] == "boiler-2"
    late = client.save_device(Device(name="late", device_profile_id=boiler.id))
    assert late.type == "boiler-2"
    publish_over_mqtt(client, server, late, '{"pressure": 9}')
    wait_for_an_alarm(server, late, "the renamed profile's rule did not apply")


def publish_over_mqtt(client: RestClientCE, server: ServerThread, device: Device, doc: str) -> None:
    """Telemetry from the device, with the token the REST client reads for it."""
    token = client.get_device_credentials_by_device_id(device.id).credentials_id
    board = Board(server.mqtt_port, token)
    try:
        board.publish("v1/devices/me/telemetry", doc)
    finally:
        board.close()


def wait_for_an_alarm(server: ServerThread, device: Device, problem: str) -> None:
    store = server.server.store
    key = server.call(store.get_device(device.id.id)).key
    deadline = time.monotonic() + 10
    while not server.call(store.list_alarms(device=key))[0]:
        assert time.monotonic() < deadline, problem
        time.sleep(0.05)
