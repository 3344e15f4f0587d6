"""ThingsBoard's official REST client (`tb-rest-client` 4.3) against tinyboard's alarm routes:
an alarm raised by a rule from real MQTT telemetry, then listed, read, acknowledged, assigned,
cleared and deleted through `RestClientCE`, whose models refuse a body that lacks a required
field. A script raises its own alarm with `save_alarm`, and the alarm engine owns it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tb_rest_client.models.models_ce import Alarm, AlarmInfo, DeviceId, EntityId, UserId
from tb_rest_client.rest import ApiException
from tb_rest_client.rest_client_ce import RestClientCE

from tests.helpers import ServerThread
from tests.mqtt_clients import Device
from tests.test_alarms import Receiver, eventually
from tests.web_helpers import api
from tinyboard.web.entities import NULL_UUID, TENANT_UUID
from tinyboard.web.models import MAX_ALARM_DETAILS

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(server: ServerThread) -> Iterator[RestClientCE]:
    rest = RestClientCE(base_url=server.base_url)
    rest.login(*server.admin)
    yield rest


@pytest.fixture
def rest(server: ServerThread) -> Iterator[httpx.Client]:
    with api(server) as http:
        yield http


def hot_device(server: ServerThread, rest: httpx.Client, name: str) -> tuple[str, Device]:
    """A device with a rule "temperature > 30 → MAJOR 'Too hot'" and its MQTT connection."""
    device = server.add_device(name, label=f"{name} label")
    rest.post(
        "/api/alarmRule",
        json={
            "deviceId": device.id,
            "key": "temperature",
            "condition": {"op": ">", "value": 30},
            "severity": "MAJOR",
            "alarmType": "Too hot",
        },
    ).raise_for_status()
    return device.id, Device(server.mqtt_port, device.token)


def raise_alarm(client: RestClientCE, device_id: str, board: Device) -> AlarmInfo:
    board.publish("v1/devices/me/telemetry", json.dumps({"temperature": 31.5}))

    def raised() -> list[AlarmInfo]:
        found: list[AlarmInfo] = client.get_alarms(DeviceId(device_id, "DEVICE"), 10, 0).data
        return found

    (alarm,) = eventually(raised)
    return alarm


def test_alarms_list_ack_clear_and_delete_with_the_rest_client(
    server: ServerThread, client: RestClientCE, rest: httpx.Client
) -> None:
    device_id, board = hot_device(server, rest, "greenhouse")
    try:
        alarm = raise_alarm(client, device_id, board)
    finally:
        board.close()
    assert isinstance(alarm, AlarmInfo)
    assert (alarm.type, alarm.name, alarm.severity) == ("Too hot", "Too hot", "MAJOR")
    assert (alarm.status, alarm.acknowledged, alarm.cleared) == ("ACTIVE_UNACK", False, False)
    assert alarm.id.entity_type == "ALARM"
    assert (alarm.originator.entity_type, alarm.originator.id) == ("DEVICE", device_id)
    assert (alarm.originator_name, alarm.originator_label) == ("greenhouse", "greenhouse label")
    assert alarm.tenant_id.id == TENANT_UUID and alarm.customer_id.id == NULL_UUID
    assert alarm.assignee_id is None and alarm.assignee is None and alarm.assign_ts == 0
    assert alarm.created_time == alarm.start_ts == alarm.end_ts > 0
    assert alarm.details["value"] == 31.5
    assert alarm.propagate is False and alarm.propagate_relation_types == []

    device = DeviceId(device_id, "DEVICE")
    assert client.get_highest_alarm_severity(device) == "MAJOR"
    assert client.get_highest_alarm_severity(device, search_status="CLEARED") is None
    info = client.get_alarm_info_by_id(alarm.id)
    assert info.id.id == alarm.id.id and info.originator_name == "greenhouse"
    assert client.get_alarm_by_id(alarm.id).status == "ACTIVE_UNACK"

    acked = client.ack_alarm(alarm.id)
    assert isinstance(acked, AlarmInfo)
    assert (acked.status, acked.acknowledged) == ("ACTIVE_ACK", True)
    assert acked.ack_ts >= alarm.start_ts
    admin = server.server.created_admin
    assert admin is not None
    admin_id = admin[0].id
    assigned = client.assign_alarm(alarm.id, admin_id)
    assert assigned.assignee_id.id == admin_id and assigned.assign_ts >= acked.ack_ts
    assignee = client.get_alarm_info_by_id(alarm.id).assignee
    assert (assignee.id.id, assignee.email) == (admin_id, server.admin[0])
    mine = client.get_alarms(device, 10, 0, assignee_id=admin_id)
    assert [a.id.id for a in mine.data] == [alarm.id.id]
    assert client.get_alarms(device, 10, 0, assignee_id=str(uuid.uuid4())).data == []
    assert client.get_highest_alarm_severity(device, assignee_id=admin_id) == "MAJOR"
    unassigned = client.unassign_alarm(alarm.id)
    assert unassigned.assignee_id is None and client.get_alarm_info_by_id(alarm.id).assignee is None
    with pytest.raises(ApiException) as nobody:
        client.assign_alarm(alarm.id, str(uuid.uuid4()))
    assert nobody.value.status == 404

    cleared = client.clear_alarm(alarm.id)
    assert (cleared.status, cleared.cleared, cleared.acknowledged) == ("CLEARED_ACK", True, True)
    assert cleared.clear_ts >= acked.ack_ts

    page = client.get_all_alarms(10, 0, search_status="CLEARED")
    assert [a.id.id for a in page.data] == [alarm.id.id]
    assert (page.total_elements, page.total_pages, page.has_next) == (1, 1, False)
    assert client.get_all_alarms(10, 0, search_status="ACTIVE").data == []
    assert client.get_alarms(device, 10, 0, status="CLEARED_ACK").total_elements == 1
    assert client.get_highest_alarm_severity(device, search_status="ACTIVE") is None

    assert client.delete_alarm(alarm.id) is True
    with pytest.raises(ApiException) as gone:
        client.get_alarm_info_by_id(alarm.id)
    assert gone.value.status == 404
    assert client.get_all_alarms(10, 0).total_elements == 0


def test_a_script_raises_updates_and_clears_its_own_alarm(
    server: ServerThread, client: RestClientCE, rest: httpx.Client
) -> None:
    device = server.add_device("pump", label="Pump 1")
    originator = EntityId(device.id, "DEVICE")

    def posted(severity: str, **fields: Any) -> Alarm:
        # the 4.3 model requires name, status, acknowledged and cleared, even to create
        body = Alarm(
            name="Leak", type="Leak", originator=originator, severity=severity,
            status="ACTIVE_UNACK", acknowledged=False, cleared=False, **fields,
        )  # fmt: skip
        saved: Alarm = client.save_alarm(body)
        return saved

    raised = posted("MINOR", details={"litres": 2}, start_ts=1_000, propagate=True)
    assert raised.id.entity_type == "ALARM" and raised.status == "ACTIVE_UNACK"
    assert (raised.start_ts, raised.details, raised.propagate) == (1_000, {"litres": 2}, True)
    assert raised.created_time > raised.start_ts  # created now, started when the script said
    # ThingsBoard's deduplication: the same originator and type update the open alarm
    again = posted("CRITICAL", details={"litres": 9})
    assert again.id.id == raised.id.id
    assert (again.severity, again.details, again.start_ts) == ("CRITICAL", {"litres": 9}, 1_000)
    assert again.end_ts >= again.created_time
    # the engine owns it: the same list the dashboard reads, the same highest severity
    (listed,) = client.get_alarms(DeviceId(device.id, "DEVICE"), 10, 0, search_status="ACTIVE").data
    assert (listed.id.id, listed.originator_label) == (raised.id.id, "Pump 1")
    assert client.get_highest_alarm_severity(DeviceId(device.id, "DEVICE")) == "CRITICAL"
    # an update by id may assign, acknowledge and clear it, as ThingsBoard's saveAlarm does
    admin = server.server.created_admin
    assert admin is not None
    body = client.get_alarm_by_id(raised.id)
    body.assignee_id = UserId(admin[0].id, "USER")
    assert client.save_alarm(body).assignee_id.id == admin[0].id
    body.acknowledged = body.cleared = True
    body.assignee_id = None  # and an update without an assignee unassigns, as ThingsBoard's
    done = client.save_alarm(body)
    assert (done.id.id, done.status, done.assignee_id) == (raised.id.id, "CLEARED_ACK", None)
    # cleared: the type is free again, the next one is a new alarm
    assert posted("MAJOR").id.id != raised.id.id

    unknown = rest.post(
        "/api/alarm",
        json={
            "type": "Leak",
            "severity": "MAJOR",
            "originator": {"entityType": "DEVICE", "id": str(uuid.uuid4())},
        },
    )
    assert unknown.status_code == 404 and unknown.json()["errorCode"] == 32


def test_v2_lists_filter_by_status_severity_type_and_assignee_and_sort_as_thingsboard(
    server: ServerThread, client: RestClientCE
) -> None:
    device = server.add_device("boiler")
    originator = EntityId(device.id, "DEVICE")
    for alarm_type, severity in (("Pressure", "WARNING"), ("Heat", "CRITICAL"), ("Flow", "MINOR")):
        client.save_alarm(
            Alarm(
                name=alarm_type, type=alarm_type, originator=originator, severity=severity,
                status="ACTIVE_UNACK", acknowledged=False, cleared=False,
            )
        )  # fmt: skip
        time.sleep(0.002)  # distinct creation times, for the default newest-first order
    flow = client.get_all_alarms(10, 0, text_search="flo").data[0]
    client.ack_alarm(flow.id)

    def types(page: Any) -> list[str]:
        return [a.type for a in page.data]

    api = client.alarm_controller
    assert types(client.get_all_alarms(10, 0)) == ["Flow", "Heat", "Pressure"]
    # by name, as ThingsBoard sorts its text column: WARNING, MINOR, CRITICAL
    assert types(client.get_all_alarms(10, 0, sort_property="severity", sort_order="DESC")) == [
        "Pressure",
        "Flow",
        "Heat",
    ]
    assert types(client.get_all_alarms(10, 0, sort_property="type", sort_order="ASC")) == [
        "Flow",
        "Heat",
        "Pressure",
    ]
    paged = client.get_all_alarms(2, 1, sort_property="type", sort_order="ASC")
    assert (types(paged), paged.total_pages, paged.has_next) == (["Pressure"], 2, False)
    assert types(client.get_all_alarms(10, 0, text_search="critical")) == ["Heat"]
    heat = client.get_all_alarms(10, 0, text_search="critical").data[0]
    at = heat.created_time
    assert types(client.get_all_alarms(10, 0, start_time=at, end_time=at)) == ["Heat"]
    assert types(api.get_all_alarms_v2_using_get(10, 0, status_list=["ACTIVE", "ACK"])) == ["Flow"]
    assert types(api.get_all_alarms_v2_using_get(10, 0, severity_list=["CRITICAL", "WARNING"])) == [
        "Heat",
        "Pressure",
    ]
    assert types(
        api.get_alarms_v2_using_get(
            "DEVICE", device.id, 10, 0, type_list=["Pressure", "Flow"], status_list=["UNACK"]
        )
    ) == ["Pressure"]
    boiler = DeviceId(device.id, "DEVICE")
    assert client.get_highest_alarm_severity(boiler) == "CRITICAL"  # by rank, not by name
    assert client.get_highest_alarm_severity(boiler, status="ACTIVE_ACK") == "MINOR"
    known = client.get_alarm_types(10, 0)
    assert [(t.type, t.entity_type, t.tenant_id.id) for t in known.data] == [
        ("Flow", "ALARM", TENANT_UUID),
        ("Heat", "ALARM", TENANT_UUID),
        ("Pressure", "ALARM", TENANT_UUID),
    ]
    assert [t.type for t in client.get_alarm_types(1, 0, "ea", "DESC").data] == ["Heat"]
    admin = server.server.created_admin
    assert admin is not None
    client.assign_alarm(flow.id, admin[0].id)
    assert types(api.get_all_alarms_v2_using_get(10, 0, assignee_id=admin[0].id)) == ["Flow"]
    assert api.get_all_alarms_v2_using_get(10, 0, assignee_id=str(uuid.uuid4())).data == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/alarm/not-a-uuid", 400),
        ("GET", "/api/alarm/info/not-a-uuid", 400),
        ("POST", "/api/alarm/not-a-uuid/ack", 400),
        ("DELETE", "/api/alarm/not-a-uuid", 400),
        ("GET", f"/api/alarm/{uuid.uuid4()}", 404),
        ("POST", f"/api/alarm/{uuid.uuid4()}/clear", 404),
        ("GET", "/api/alarm/DEVICE/not-a-uuid?pageSize=10&page=0", 400),
        ("GET", f"/api/alarm/DEVICE/{uuid.uuid4()}?pageSize=10&page=0", 404),
        ("GET", f"/api/alarm/ASSET/{uuid.uuid4()}?pageSize=10&page=0", 400),
        ("GET", "/api/alarms?pageSize=10&page=0&searchStatus=ACTIVE&status=ACTIVE_ACK", 400),
        ("GET", "/api/alarms?pageSize=10&page=0&sortProperty=colour", 400),
        ("GET", "/api/v2/alarms?pageSize=10&page=0&severityList=HOT", 400),
        ("GET", f"/api/alarm/highestSeverity/DEVICE/{uuid.uuid4()}", 404),
    ],
)
def test_errors_are_thingsboards(
    server: ServerThread, rest: httpx.Client, method: str, path: str, status: int
) -> None:
    answer = rest.request(method, path)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["status"] == status and body["errorCode"] == (32 if status == 404 else 31)
    assert body["message"] and body["timestamp"] > 0
    assert httpx.request(method, f"{server.base_url}{path}").status_code == 401


@pytest.mark.parametrize(
    ("details", "problem"),
    [
        ([1], "must be a JSON object or null, not list"),
        ({"serial": 2**70}, "cannot be stored as JSON"),
        ({"x": "y" * MAX_ALARM_DETAILS}, f"at most {MAX_ALARM_DETAILS}"),
    ],
)
def test_alarm_details_must_be_a_bounded_json_object(
    server: ServerThread, rest: httpx.Client, details: object, problem: str
) -> None:
    device = server.add_device("detailed")
    body = {
        "type": "Leak",
        "originator": {"entityType": "DEVICE", "id": device.id},
        "severity": "MINOR",
        "details": details,
    }
    refused = rest.post("/api/alarm", content=json.dumps(body), headers=JSON)
    assert refused.status_code == 400, refused.text
    assert "details" in refused.json()["message"] and problem in refused.json()["message"]
    assert rest.get("/api/alarms?pageSize=10&page=0").json()["totalElements"] == 0


def test_a_posted_alarm_reaches_the_webhooks_in_thingsboards_shape(tmp_path: Path) -> None:
    hook = Receiver()
    running = ServerThread(tmp_path / "data", alarm_webhook=hook.url).start()
    try:
        device = running.add_device("pump")
        client = RestClientCE(base_url=running.base_url)
        client.login(*running.admin)
        body = Alarm(
            name="Leak", type="Leak", originator=EntityId(device.id, "DEVICE"),
            severity="MAJOR", status="ACTIVE_UNACK", acknowledged=False, cleared=False,
        )  # fmt: skip
        raised = client.save_alarm(body)
        client.save_alarm(body)  # the same open alarm, updated
        client.clear_alarm(raised.id)
        eventually(lambda: len(hook.bodies) == 3)
        events = ["ALARM_CREATED", "ALARM_UPDATED", "ALARM_CLEARED"]
        assert [b["event"] for b in hook.bodies] == events
        sent = hook.bodies[0]["alarm"]
        # what the webhook sends is what the REST client reads
        info = client.api_client.deserialize(_Body(sent), "AlarmInfo")
        assert (info.id.id, info.originator_name, info.status) == (
            raised.id.id,
            "pump",
            "ACTIVE_UNACK",
        )
        assert sent["tenantId"] == {"entityType": "TENANT", "id": TENANT_UUID}
    finally:
        running.stop()
        hook.close()


class _Body:
    """A webhook body in the shape the REST client's deserializer reads a response from."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body)


def test_a_rule_of_the_same_type_takes_over_a_posted_alarm(
    server: ServerThread, client: RestClientCE, rest: httpx.Client
) -> None:
    device_id, board = hot_device(server, rest, "kiln")
    posted = client.save_alarm(
        Alarm(
            name="Too hot", type="Too hot", originator=EntityId(device_id, "DEVICE"),
            severity="MINOR", status="ACTIVE_UNACK", acknowledged=False, cleared=False,
        )
    )  # fmt: skip
    device = DeviceId(device_id, "DEVICE")
    try:
        board.publish("v1/devices/me/telemetry", json.dumps({"temperature": 31}))
        eventually(lambda: client.get_alarm_by_id(posted.id).severity == "MAJOR")
        board.publish("v1/devices/me/telemetry", json.dumps({"temperature": 20}))
        eventually(lambda: client.get_alarm_by_id(posted.id).cleared)
    finally:
        board.close()
    (only,) = client.get_alarms(device, 10, 0).data  # one alarm: the rule joined it
    assert (only.id.id, only.status) == (posted.id.id, "CLEARED_UNACK")
