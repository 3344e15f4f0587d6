"""The device API's rules on plain values: what each ThingsBoard device request means and
answers (core/device_api.py, and core/rpc.py for what a device's RPC reply means), before
any transport frames it (tests/test_device_api_transports.py sends the same requests over
MQTT and HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyboard.core.attributes import AttributeService
from tinyboard.core.clock import DeviceClocks
from tinyboard.core.device_api import (
    CLIENT_RPC_SHAPE,
    AttributeRequest,
    DeviceApi,
    rpc_request,
)
from tinyboard.core.limits import DeviceLimits, OverLimit, RateLimit
from tinyboard.core.models import Device
from tinyboard.core.pipeline import Pipeline
from tinyboard.core.rpc import RpcReplyNotJson, RpcService, reply_value
from tinyboard.core.sessions import SessionHub
from tinyboard.errors import PayloadError
from tinyboard.storage.sqlite import SQLiteStore

NOW = 1_700_000_000_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "api.db", sync="normal")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def device(store: SQLiteStore) -> Device:
    return await store.create_device("board")


def device_api(store: SQLiteStore, limits: DeviceLimits | None = None) -> DeviceApi:
    hub = SessionHub()
    pipeline = Pipeline(store, queue_limit=100, batch_limit=100)
    return DeviceApi(
        clocks=DeviceClocks(1000, now=lambda: NOW),
        limits=limits or DeviceLimits(),
        attributes=AttributeService(store, pipeline, hub),
        rpc=RpcService(hub),
    )


def allow_all(values: int) -> bool:
    return True


async def test_telemetry_is_stamped_by_the_device_clock(store: SQLiteStore, device: Device) -> None:
    api = device_api(store)
    payload = b'[{"t": 1}, {"u": true}, {"ts": 5, "values": {"v": "x"}}]'
    readings = api.telemetry(device, payload, allow_all)
    assert readings == [
        (device.key, "t", NOW, 1),
        (device.key, "u", NOW, True),
        (device.key, "v", 5, "x"),
    ]
    assert api.telemetry(device, b'{"t": 2}', allow_all) == [(device.key, "t", NOW + 1, 2)]


async def test_telemetry_counts_its_values_against_the_limit(
    store: SQLiteStore, device: Device
) -> None:
    limits = DeviceLimits(RateLimit.parse("100:60"))
    api = device_api(store, limits)
    counted: list[int] = []

    def count(values: int) -> bool:
        counted.append(values)
        return True

    api.telemetry(device, b'{"a": 1, "b": 2, "c": 3}', count)
    assert counted == [3]
    with pytest.raises(OverLimit, match=r"rate limit \(messages 100:60 \(count:seconds\)\)"):
        api.telemetry(device, b'{"a": 1}', lambda n: False)


@pytest.mark.parametrize("payload", [b"{nope", b'{"k": null}', b"[1]", b'{"ts": -1, "values": {}}'])
async def test_bad_telemetry_is_a_payload_error(
    store: SQLiteStore, device: Device, payload: bytes
) -> None:
    with pytest.raises(PayloadError):
        device_api(store).telemetry(device, payload, allow_all)


async def test_client_attributes_share_one_stamp_and_a_refusal_takes_none(
    store: SQLiteStore, device: Device
) -> None:
    api = device_api(store)
    with pytest.raises(PayloadError, match="JSON object"):
        api.client_attributes(device, b"[1, 2]")
    rows = api.client_attributes(device, b'{"fw": "1.0", "battery": 97}')
    assert rows == [
        (device.key, "CLIENT", "fw", NOW, "1.0"),
        (device.key, "CLIENT", "battery", NOW, 97),
    ]


@pytest.mark.parametrize(
    ("body", "client", "shared"),
    [
        (b"{}", None, None),  # neither: every attribute of both scopes
        (b'{"clientKeys": "a, b"}', ["a", "b"], []),
        (b'{"sharedKeys": "c"}', [], ["c"]),
        (b'{"clientKeys": "a", "sharedKeys": "c,d"}', ["a"], ["c", "d"]),
        (b'{"clientKeys": ""}', [], []),  # ThingsBoard's MQTT reads the key "": nothing
        (b'{"sharedKeys": ["x", "y"]}', [], ["x", "y"]),
    ],
)
def test_attribute_requests(
    body: bytes, client: list[str] | None, shared: list[str] | None
) -> None:
    assert AttributeRequest.from_json(body) == AttributeRequest(client, shared)


@pytest.mark.parametrize("body", [b"[]", b'"a"', b'{"clientKeys": 1}', b'{"sharedKeys": [1]}'])
def test_malformed_attribute_requests(body: bytes) -> None:
    with pytest.raises(PayloadError):
        AttributeRequest.from_json(body)


KEY = st.text(st.characters(blacklist_characters=",", blacklist_categories=["Cs"]), min_size=1)
NAMES = st.lists(KEY.filter(str.strip), max_size=4).map(",".join)


@given(NAMES | st.none(), NAMES | st.none())
def test_a_json_body_and_query_parameters_ask_alike(client: str | None, shared: str | None) -> None:
    """MQTT's JSON body and HTTP's query ask for the same keys (HTTP drops empty ones)."""
    body = {k: v for k, v in (("clientKeys", client), ("sharedKeys", shared)) if v}
    assert AttributeRequest.from_json(orjson.dumps(body)) == AttributeRequest.of(
        client or None, shared or None
    )


async def test_attribute_answers_leave_out_empty_sections(
    store: SQLiteStore, device: Device
) -> None:
    rows = [(device.key, "CLIENT", "fw", 1, "1.0"), (device.key, "SHARED", "mode", 1, "eco")]
    await store.write([], rows)
    api = device_api(store)
    everything = await api.attributes(device, AttributeRequest.of(None, None))
    assert everything == {"client": {"fw": "1.0"}, "shared": {"mode": "eco"}}
    assert await api.attributes(device, AttributeRequest.of("missing", None)) == {}
    assert await api.attributes(device, AttributeRequest.of(None, "mode")) == {
        "shared": {"mode": "eco"}
    }


async def test_client_side_rpc(store: SQLiteStore) -> None:
    limits = DeviceLimits(RateLimit.parse("200:1"), max_payload=1024)
    api = device_api(store, limits)
    answer = api.client_rpc(b'{"method": "getSessionLimits", "params": {}}')
    assert answer == limits.session_limits()
    assert answer["maxPayloadSize"] == 1024 and answer["rateLimits"]["messages"] == "200:1"
    assert api.client_rpc(b'{"method": "sum", "params": [1, 2]}') == {
        "error": "unsupported method 'sum': tinyboard serves getSessionLimits"
    }
    for bad in (b"{}", b'{"method": null}', b"[]", b'"getSessionLimits"'):
        with pytest.raises(PayloadError) as refused:
            api.client_rpc(bad)
        assert str(refused.value) == CLIENT_RPC_SHAPE


def test_server_side_rpc_requests_carry_the_id_where_the_transport_wants_it() -> None:
    assert rpc_request(7, "setGpio", {"pin": 2}, with_id=False) == {
        "method": "setGpio",
        "params": {"pin": 2},
    }
    assert rpc_request(7, "setGpio", None, with_id=True) == {
        "id": 7,
        "method": "setGpio",
        "params": None,
    }


@pytest.mark.parametrize(
    ("reply", "value"),
    [(b'{"ok": true}', {"ok": True}), (b"42", 42), (b'"on"', "on"), (b"null", None), (b"", None)],
)
def test_what_a_device_reply_means(reply: bytes, value: object) -> None:
    assert reply_value(reply, "dev-1", "read") == value


@pytest.mark.parametrize("reply", [b"on", b"{nope", b"\xff\xfe", b" "])
def test_a_reply_that_is_not_json_says_so(reply: bytes) -> None:
    with pytest.raises(RpcReplyNotJson, match=r"'read' with .*which is not JSON"):
        reply_value(reply, "dev-1", "read")


async def test_a_reply_nobody_waits_for_is_dropped(store: SQLiteStore, device: Device) -> None:
    api = device_api(store)
    api.rpc_reply(device, 99, b'{"late": true}')  # no error: a late reply is normal
    assert not RpcService(SessionHub()).resolve(device.id, 99, b"{}")
