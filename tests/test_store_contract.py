"""The storage contract: every backend must pass these (PostgreSQL joins the parameter list
when its backend lands)."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tinyboard.core.models import Alarm, Device, DeviceProfile, Reading
from tinyboard.errors import ConflictError, InUseError, NotFoundError
from tinyboard.storage.base import Store
from tinyboard.storage.sqlite import SQLiteStore, migrations


async def test_devices_are_created_found_listed_and_deleted(store: Store) -> None:
    a = await store.create_device("kitchen", type="esp8266", label="by the window")
    b = await store.create_device("garage", token="my-own-token-123")
    assert len(a.token) >= 20 and a.token != b.token
    assert b.token == "my-own-token-123"
    assert (a.type, a.label, b.type) == ("esp8266", "by the window", "default")
    assert await store.get_device(a.id) == a
    assert await store.get_device("kitchen") == a
    assert await store.device_by_token(b.token) == b
    assert await store.device_by_token("missing") is None
    assert [d.name for d in await store.list_devices()] == ["garage", "kitchen"]
    assert [d.name for d in await store.list_devices(text_search="kit")] == ["kitchen"]
    assert [d.name for d in await store.list_devices(limit=1, offset=1)] == ["kitchen"]
    assert await store.delete_device("kitchen") == a
    with pytest.raises(NotFoundError):
        await store.get_device(a.id)
    assert await store.device_by_token(a.token) is None


async def test_a_device_keeps_its_additional_info_as_saved(store: Store) -> None:
    info = {"description": "kitchen board", "gateway": False, "n": [1, 2.5, None, {"é": "ü"}]}
    a = await store.create_device("a", additional_info=info)
    plain = await store.create_device("plain")
    assert a.additional_info == info and plain.additional_info is None
    assert (await store.get_device("a")).additional_info == info
    assert (await store.device_by_token(a.token)) == a
    assert [d.additional_info for d in await store.list_devices()] == [info, None]
    keep = {"firmware_id": None, "software_id": None}
    changed = await store.update_device("a", name="a", label="", additional_info={"x": 1}, **keep)
    assert changed.additional_info == {"x": 1} == (await store.get_device(a.id)).additional_info
    cleared = await store.update_device("a", name="a", label="", additional_info=None, **keep)
    assert cleared.additional_info is None is (await store.get_device(a.id)).additional_info
    empty = await store.update_device("plain", name="plain", label="", additional_info={}, **keep)
    assert empty.additional_info == {} == (await store.get_device("plain")).additional_info


async def test_names_and_tokens_are_unique(store: Store) -> None:
    await store.create_device("one", token="token-aaaaaaaaaaaaaaaa")
    with pytest.raises(ConflictError, match="name"):
        await store.create_device("one")
    with pytest.raises(ConflictError, match="token"):
        await store.create_device("two", token="token-aaaaaaaaaaaaaaaa")


async def test_devices_sort_by_thingsboard_s_properties(store: Store) -> None:
    await store.create_device("b", type="z", label="1")
    await store.create_device("a", type="y", label="2")
    await store.create_device("c", type="y", label="0")
    names = [d.name for d in await store.list_devices(order_by="type", descending=True)]
    assert names == ["b", "a", "c"]
    assert [d.name for d in await store.list_devices(order_by="label")] == ["c", "b", "a"]
    assert [d.name for d in await store.list_devices(order_by="created_ts")] == ["b", "a", "c"]
    assert [d.name for d in await store.list_devices(type="y")] == ["a", "c"]
    assert await store.count_devices(type="y") == 2 and await store.count_devices(type="x") == 0
    with pytest.raises(ValueError):
        await store.list_devices(order_by="name; DROP TABLE device")


async def test_every_device_has_a_profile_named_by_its_type(store: Store) -> None:
    (default,) = await store.profiles()
    assert (default.name, default.default) == ("default", True)
    assert default.profile_data["provisionConfiguration"]["type"] == "DISABLED"
    plain = await store.create_device("plain")
    assert (plain.type, plain.profile_id) == ("default", default.id)
    sensor = await store.create_device("s1", type="sensor")  # creates the profile
    profile = await store.get_profile("sensor")
    assert sensor.profile_id == profile.id and not profile.default
    again = await store.create_device("s2", type="sensor")
    assert again.profile_id == profile.id and len(await store.profiles()) == 2
    by_id = await store.create_device("s3", type="ignored", profile_id=profile.id)
    assert (by_id.type, by_id.profile_id) == ("sensor", profile.id)
    with pytest.raises(NotFoundError):
        await store.create_device("s4", profile_id=str(uuid.uuid4()))
    with pytest.raises(ConflictError):  # the profile the failed insert made is rolled back
        await store.create_device("s1", type="new-type")
    assert [p.name for p in await store.profiles()] == ["default", "sensor"]


async def test_profiles_are_renamed_deleted_and_made_default(store: Store) -> None:
    default = await store.get_profile("default")
    await store.create_device("d", type="thermo")
    thermo = await store.get_profile("thermo")
    units = {"type": "DEFAULT", "units": {"t": {"unit": "°C"}}}
    renamed = await store.save_profile(
        DeviceProfile(
            id=thermo.id,
            name="thermometer",
            created_ts=thermo.created_ts,
            description="kitchen",
            profile_data={**thermo.profile_data, "configuration": units},
            settings={"provisionType": "DISABLED"},
        )
    )
    assert renamed.profile_data["configuration"] == units and renamed.description == "kitchen"
    assert (await store.get_device("d")).type == "thermometer"
    with pytest.raises(ConflictError):
        await store.save_profile(DeviceProfile(id=str(uuid.uuid4()), name="default", created_ts=1))
    with pytest.raises(InUseError, match="referenced by the devices"):
        await store.delete_profile(thermo.id)
    with pytest.raises(InUseError, match="Default"):
        await store.delete_profile(default.id)
    assert (await store.set_default_profile(thermo.id)).default
    assert not (await store.get_profile(default.id)).default
    assert (await store.create_device("x")).profile_id == thermo.id  # the new default
    moved = await store.update_device(
        "d", name="d2", label="l", profile_id=default.id, additional_info=None,
        firmware_id=None, software_id=None,
    )  # fmt: skip
    assert (moved.name, moved.label, moved.type) == ("d2", "l", "default")
    await store.set_default_profile(default.id)
    await store.delete_device("x")
    assert (await store.delete_profile(thermo.id)).name == "thermometer"
    with pytest.raises(NotFoundError):
        await store.get_profile(thermo.id)


async def test_readings_keep_their_types(store: Store) -> None:
    d = await store.create_device("types")
    values = {
        "b": True,
        "i": -(2**63),
        "f": 0.1,
        "s": "text ✓",
        "numeric_text": "1.10",
        "int_text": "007",
        "nul": "a\x00b",
        "big": 2**63 - 1,
        "integral_float": 21.0,
        "o": {"a": [1, "x", None]},
        "l": [1, 2.5],
    }
    await store.write([(d.key, k, 1000, v) for k, v in values.items()], [])
    latest = await store.latest(d.key)
    assert {k: v for k, (_, v) in latest.items()} == values
    assert all(type(latest[k][1]) is type(v) for k, v in values.items())
    assert await store.ts_keys(d.key) == sorted(values)
    assert await store.latest(d.key, ["b", "nope"]) == {"b": (1000, True)}


async def test_one_row_per_device_key_and_ts(store: Store) -> None:
    d = await store.create_device("dup")
    await store.write([(d.key, "t", 1000, 0), (d.key, "t", 1000, 1), (d.key, "t", 2000, 2)], [])
    assert await store.history(d.key, "t", start_ts=0, end_ts=10_000) == [(2000, 2), (1000, 1)]
    await store.write([(d.key, "t", 1000, 10)], [])  # a retried message
    history = await store.history(d.key, "t", start_ts=0, end_ts=10_000)
    assert history == [(2000, 2), (1000, 10)]


async def test_latest_is_the_newest_not_the_last_written(store: Store) -> None:
    d = await store.create_device("late")
    await store.write([(d.key, "t", 5000, 5)], [])
    await store.write([(d.key, "t", 1000, 1)], [])  # an old reading sent late
    assert await store.latest(d.key) == {"t": (5000, 5)}


async def test_newest_stamps_are_per_device_and_from_a_time_on(store: Store) -> None:
    a, b, c = [await store.create_device(name) for name in ("a", "b", "c")]
    await store.write([(a.key, "t", 5000, 1), (a.key, "h", 7000, 2), (b.key, "t", 6000, 3)], [])
    await store.write([(c.key, "t", 1000, 4), (a.key, "t", 2000, 5)], [])  # older, sent late
    assert await store.newest_stamps(5500) == {a.key: 7000, b.key: 6000}
    assert await store.newest_stamps(0) == {a.key: 7000, b.key: 6000, c.key: 1000}


async def test_history_range_order_and_limit(store: Store) -> None:
    d = await store.create_device("hist")
    other = await store.create_device("other")
    batch: list[Reading] = [(d.key, "t", ts, ts // 10) for ts in range(0, 1000, 10)]
    batch += [(other.key, "t", 500, -1), (d.key, "u", 500, -2)]
    await store.write(batch, [])
    newest = await store.history(d.key, "t", start_ts=100, end_ts=200, limit=3)
    assert newest == [(190, 19), (180, 18), (170, 17)]
    oldest = await store.history(d.key, "t", start_ts=100, end_ts=200, descending=False)
    assert [ts for ts, _ in oldest] == list(range(100, 200, 10))
    assert await store.history(d.key, "missing", start_ts=0, end_ts=10**6) == []


async def test_attributes_by_scope(store: Store) -> None:
    d = await store.create_device("attrs")
    await store.write(
        [],
        [(d.key, "CLIENT", "fw", 10, "1.0"), (d.key, "SHARED", "interval", 10, 30)],
    )
    await store.write([], [(d.key, "CLIENT", "fw", 20, "1.1")])
    assert await store.attributes(d.key, "CLIENT") == {"fw": (20, "1.1")}
    assert await store.attributes(d.key, "SHARED", ["interval"]) == {"interval": (10, 30)}
    assert await store.attributes(d.key, "SERVER") == {}


async def test_deleting_attributes_of_one_scope(store: Store) -> None:
    d, other = await store.create_device("attr-del"), await store.create_device("attr-keep")
    rows = [(d.key, "SHARED", "a", 1, 1), (d.key, "SHARED", "b", 1, 2)]
    rows += [(d.key, "SERVER", "a", 1, 3), (other.key, "SHARED", "a", 1, 4)]
    await store.write([], rows)
    assert await store.delete_attributes(d.key, "SHARED", ["a", "missing", "a"]) == ["a"]
    assert await store.attributes(d.key, "SHARED") == {"b": (1, 2)}
    assert await store.attributes(d.key, "SERVER") == {"a": (1, 3)}
    assert await store.attributes(other.key, "SHARED") == {"a": (1, 4)}
    assert await store.delete_attributes(d.key, "SHARED", ["a"]) == []


async def test_deleting_a_time_range_keeps_latest_values_right(store: Store) -> None:
    d, other = await store.create_device("ts-del"), await store.create_device("ts-keep")
    points = [(d.key, k, ts, ts) for k in ("t", "h", "x") for ts in (100, 200, 300)]
    await store.write([*points, (other.key, "t", 300, 0)], [])
    # a range without the latest value: the latest stays
    assert await store.delete_timeseries(d.key, ["t"], start_ts=100, end_ts=200) == 1
    assert await store.history(d.key, "t", start_ts=0, end_ts=1000) == [(300, 300), (200, 200)]
    # the latest inside the range: deleted, not replaced (ThingsBoard's default) ...
    assert await store.delete_timeseries(d.key, ["t", "nope"], start_ts=300, end_ts=301) == 1
    assert "t" not in await store.latest(d.key) and "t" not in await store.ts_keys(d.key)
    # ... replaced by the newest point left when asked ...
    await store.delete_timeseries(d.key, ["h"], start_ts=250, end_ts=400, rewrite_latest=True)
    assert (await store.latest(d.key))["h"] == (200, 200)
    # ... or kept when deleteLatest is false
    await store.delete_timeseries(d.key, ["x"], start_ts=0, end_ts=1000, delete_latest=False)
    assert await store.history(d.key, "x", start_ts=0, end_ts=1000) == []
    assert (await store.latest(d.key))["x"] == (300, 300)
    # a rewrite with nothing left leaves no latest value
    await store.delete_timeseries(d.key, ["h"], start_ts=0, end_ts=1000, rewrite_latest=True)
    assert await store.latest(d.key) == {"x": (300, 300)}
    assert await store.latest(other.key) == {"t": (300, 0)}
    await store.write([(d.key, "t", 50, "back")], [])  # an older point after the delete
    assert (await store.latest(d.key))["t"] == (50, "back")


async def test_deleting_a_device_deletes_its_data(store: Store) -> None:
    d = await store.create_device("gone")
    keep = await store.create_device("kept")
    await store.write([(d.key, "t", 1, 1), (keep.key, "t", 1, 2)], [(d.key, "CLIENT", "a", 1, 1)])
    await store.delete_device(d.id)
    again = await store.create_device("gone")
    assert await store.latest(again.key) == {}
    assert await store.latest(keep.key) == {"t": (1, 2)}


async def test_sqlite_migrations_are_versioned_and_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    for _ in range(2):
        s = SQLiteStore(path)
        await s.open()
        await s.close()
    latest_version = migrations()[-1][0]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (latest_version,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"device", "ts_kv", "ts_latest", "attribute", "ts_key", "device_profile"} <= tables


async def test_sqlite_migration_gives_existing_devices_a_profile_per_type(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for version, script in migrations():
            if version < 6:
                conn.executescript(script)
        conn.execute("PRAGMA user_version = 5")
        conn.executemany(
            "INSERT INTO device (id, name, type, label, token, created_ts) VALUES (?,?,?,?,?,?)",
            [
                (str(uuid.uuid4()), n, t, "", f"token-{n}-aaaaaaaaaaaaaaa", 5)
                for n, t in [("a", "esp8266"), ("b", "esp8266"), ("c", "default"), ("d", "light")]
            ],
        )
    s = SQLiteStore(path)
    await s.open()
    try:
        profiles = {p.name: p for p in await s.profiles()}
        assert sorted(profiles) == ["default", "esp8266", "light"]
        assert [p.name for p in profiles.values() if p.default] == ["default"]
        for device in await s.list_devices():
            assert profiles[device.type].id == device.profile_id
            assert str(uuid.UUID(device.profile_id)) == device.profile_id
        assert profiles["esp8266"].profile_data["transportConfiguration"] == {"type": "DEFAULT"}
    finally:
        await s.close()


async def test_aggregation_in_buckets(store: Store) -> None:
    d = await store.create_device("agg")
    points: list[Reading] = [(d.key, "t", ts, ts // 1000) for ts in range(0, 10_000, 1000)]
    points += [(d.key, "t", 500, "text is skipped"), (d.key, "t", 1500, True)]
    await store.write(points, [])
    args = {"start_ts": 0, "end_ts": 10_000, "interval": 5000}
    assert await store.aggregate(d.key, "t", agg="AVG", **args) == [(2500, 2.0), (7500, 7.0)]
    assert await store.aggregate(d.key, "t", agg="MIN", **args) == [(2500, 0), (7500, 5)]
    assert await store.aggregate(d.key, "t", agg="MAX", **args) == [(2500, 4), (7500, 9)]
    assert await store.aggregate(d.key, "t", agg="SUM", **args) == [(2500, 10), (7500, 35)]
    assert await store.aggregate(d.key, "t", agg="COUNT", **args) == [(2500, 7), (7500, 5)]
    newest = await store.aggregate(d.key, "t", agg="MAX", limit=1, descending=True, **args)
    assert newest == [(7500, 9)]
    # A partial last bucket is reported at the middle of the part inside the range.
    partial = await store.aggregate(d.key, "t", start_ts=0, end_ts=7000, interval=5000, agg="COUNT")
    assert partial == [(2500, 7), (6000, 2)]
    none = await store.aggregate(d.key, "t", agg="NONE", limit=2, descending=True, **args)
    assert none == [(9000, 9), (8000, 8)]
    # Many tiny buckets (over the bucket-by-bucket limit) give the same answer.
    tiny = await store.aggregate(
        d.key, "t", start_ts=0, end_ts=1_000_000, interval=1, agg="MAX", limit=3
    )
    assert tiny == [(0, 0), (1000, 1), (2000, 2)]
    assert await store.aggregate(d.key, "missing", agg="AVG", **args) == []
    # An empty or reversed range has no buckets (a WebSocket command can ask for one).
    for start, end in ((5000, 5000), (0, 0), (9000, 1000)):
        empty = {"start_ts": start, "end_ts": end, "interval": 1000}
        assert await store.aggregate(d.key, "t", agg="AVG", **empty) == [], (start, end)


async def test_device_counts(store: Store) -> None:
    for name in ("a1", "a2", "b1"):
        await store.create_device(name)
    assert await store.count_devices() == 3
    assert await store.count_devices(text_search="a") == 2
    assert await store.count_devices(text_search="%") == 0


async def test_users(store: Store) -> None:
    user = await store.create_user("Ana@Example.org", "hash-1", role="TENANT_ADMIN")
    assert (user.email, user.role) == ("Ana@Example.org", "TENANT_ADMIN")
    assert await store.user_by_email("ana@example.org") == user
    with pytest.raises(ConflictError):
        await store.create_user("ANA@example.org", "x", role="TENANT_ADMIN")
    await store.set_password_hash("ana@example.org", "hash-2")
    changed = await store.user_by_email("Ana@Example.org")
    assert changed is not None and changed.password_hash == "hash-2"
    with pytest.raises(NotFoundError):
        await store.set_password_hash("nobody@example.org", "x")
    assert [u.email for u in await store.list_users()] == ["Ana@Example.org"]
    await store.delete_user("ANA@example.org")
    assert await store.user_by_email("ana@example.org") is None
    with pytest.raises(NotFoundError):
        await store.delete_user("ana@example.org")


async def test_settings_keep_the_first_value(store: Store) -> None:
    assert await store.setting("jwt", "first") == "first"
    assert await store.setting("jwt", "second") == "first"


async def test_long_aggregations_split_across_readers_give_the_same_answer(store: Store) -> None:
    d = await store.create_device("split")
    await store.write([(d.key, "t", ts, ts % 7) for ts in range(0, 5000, 3)], [])
    interval = 10  # 500 buckets: enough to be split
    expected = []
    for first in range(0, 5000, interval):
        values = [ts % 7 for ts in range(0, 5000, 3) if first <= ts < first + interval]
        if values:
            expected.append((first + interval // 2, max(values)))
    got = await store.aggregate(
        d.key, "t", start_ts=0, end_ts=5000, interval=interval, agg="MAX", limit=10_000
    )
    assert got == expected
    newest = await store.aggregate(
        d.key,
        "t",
        start_ts=0,
        end_ts=5000,
        interval=interval,
        agg="MAX",
        limit=300,
        descending=True,
    )
    assert newest == expected[::-1][:300]


async def test_device_generation_moves_on_every_device_change(store: Store) -> None:
    first = await store.device_generation()
    device = await store.create_device("gen")
    second = await store.device_generation()
    await store.write([(device.key, "t", 1, 1)], [])  # telemetry is not a device change
    assert await store.device_generation() == second != first
    await store.delete_device(device.id)
    assert await store.device_generation() not in (first, second)


async def test_a_deleted_device_s_key_is_never_given_to_a_new_device(store: Store) -> None:
    first = await store.create_device("first")
    newest = await store.create_device("newest")
    await store.delete_device(newest.id)
    after = await store.create_device("after")
    assert after.key not in (first.key, newest.key)


def _alarm(device: Device, *, type: str = "Hot", **kw: object) -> Alarm:
    fields: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "device_key": device.key,
        "device_id": device.id,
        "device_name": device.name,
        "type": type,
        "severity": "MAJOR",
        "start_ts": 1000,
        "end_ts": 1000,
        "details": {"value": 31.5},
        **kw,
    }
    return Alarm(**fields)


async def test_alarms_are_saved_found_listed_and_deleted(store: Store) -> None:
    d = await store.create_device("alarmed")
    other = await store.create_device("calm")
    hot = _alarm(d, start_ts=1000)
    await store.save_alarm(hot)
    assert await store.get_alarm(hot.id) == hot
    assert await store.open_alarms() == [hot]
    with pytest.raises(ConflictError):  # one open alarm per (device, type)
        await store.save_alarm(_alarm(d))
    hot.acknowledged, hot.ack_ts = True, 1500
    hot.cleared, hot.clear_ts, hot.end_ts = True, 2000, 2000
    await store.save_alarm(hot)
    assert (await store.get_alarm(hot.id)).status == "CLEARED_ACK"
    assert await store.open_alarms() == []
    again = _alarm(d, start_ts=3000)  # the type is free again once cleared
    await store.save_alarm(again)
    await store.save_alarm(_alarm(other, type="Cold", start_ts=2500))
    page, total = await store.list_alarms(limit=2)
    assert total == 3 and [a.start_ts for a in page] == [3000, 2500]
    mine, total = await store.list_alarms(device=d.key)
    assert total == 2 and [a.id for a in mine] == [again.id, hot.id]
    active, _ = await store.list_alarms(statuses=["ACTIVE_UNACK", "ACTIVE_ACK"])
    assert {a.type for a in active} == {"Hot", "Cold"}
    assert (await store.list_alarms(statuses=[]))[1] == 0
    found, _ = await store.list_alarms(text_search="cal")  # by device name
    assert [a.device_name for a in found] == ["calm"]
    windowed, _ = await store.list_alarms(start_ts=2000, end_ts=2600)
    assert [a.type for a in windowed] == ["Cold"]
    assert (await store.delete_alarm(hot.id)).id == hot.id
    with pytest.raises(NotFoundError):
        await store.get_alarm(hot.id)
    await store.delete_device(d.id)  # a device's alarms go with it
    assert [a.type for a in await store.open_alarms()] == ["Cold"]


async def test_alarms_keep_thingsboard_fields_and_sort_and_filter_as_thingsboard(
    store: Store,
) -> None:
    d = await store.create_device("boiler", label="Boiler room")
    posted = _alarm(
        d, type="Pressure", severity="MINOR", start_ts=500, end_ts=600, created_ts=900,
        propagate=True, propagate_to_tenant=True, propagate_relation_types=("Contains",),
    )  # fmt: skip
    hot = _alarm(d, type="Hot", severity="CRITICAL", start_ts=1000, end_ts=1000, acknowledged=True)
    cold = _alarm(d, type="Cold", severity="WARNING", start_ts=2000, end_ts=2000, cleared=True)
    for alarm in (posted, hot, cold):
        await store.save_alarm(alarm)
    stored = await store.get_alarm(posted.id)
    assert stored == replace(posted, device_label="Boiler room")
    assert (stored.created_ts, stored.start_ts, stored.propagate_relation_types) == (
        900,
        500,
        ("Contains",),
    )

    async def types(**query: Any) -> list[str]:
        return [a.type for a in (await store.list_alarms(**query))[0]]

    assert await types() == ["Cold", "Hot", "Pressure"]  # newest created first
    assert await types(sort="startTs", descending=False) == ["Pressure", "Hot", "Cold"]
    # severity and status sort by name, as ThingsBoard (both are text there)
    assert await types(sort="severity") == ["Cold", "Pressure", "Hot"]
    assert await types(sort="type", descending=False) == ["Cold", "Hot", "Pressure"]
    assert await types(sort="status", descending=False) == ["Hot", "Pressure", "Cold"]
    assert await types(severities=["CRITICAL", "WARNING"]) == ["Cold", "Hot"]
    assert await types(types=["Hot", "Pressure"]) == ["Hot", "Pressure"]
    assert await types(types=[]) == []
    assert await types(start_ts=900, end_ts=1001) == ["Hot", "Pressure"]  # by creation time
    # a case-insensitive substring of the type, severity, status or device name
    assert await types(text_search="OLD") == ["Cold"]
    assert await types(text_search="itic") == ["Hot"]
    assert await types(text_search="cleared_") == ["Cold"]
    assert await types(text_search="oile") == ["Cold", "Hot", "Pressure"]
    assert await types(text_search="50%") == []
    # assigned to a user: the e-mail comes with it, and lists filter by the user's id
    user = await store.create_user("ops@example.com", "hash", role="TENANT_ADMIN")
    hot.assignee_id, hot.assign_ts = user.id, 1500
    await store.save_alarm(hot)
    assigned = await store.get_alarm(hot.id)
    assert (assigned.assignee_id, assigned.assignee_email, assigned.assign_ts) == (
        user.id,
        "ops@example.com",
        1500,
    )
    assert await types(assignee=user.id) == ["Hot"]
    assert await types(assignee=str(uuid.uuid4())) == []
    assert await store.alarm_types() == ["Cold", "Hot", "Pressure"]


async def test_alarm_rules_and_pending_conditions(store: Store) -> None:
    d = await store.create_device("ruled")
    await store.save_alarm_rule("r1", {"id": "r1", "key": "t"})
    await store.save_alarm_rule("r2", {"id": "r2", "key": "h"})
    await store.save_alarm_rule("r1", {"id": "r1", "key": "t2"})  # replaced in place
    assert await store.alarm_rules() == [{"id": "r1", "key": "t2"}, {"id": "r2", "key": "h"}]
    await store.set_alarm_pending("r1", d.key, 1234)
    await store.set_alarm_pending("r2", d.key, 99)
    await store.set_alarm_pending("r2", d.key, None)
    assert await store.alarm_pending() == [("r1", d.key, 1234)]
    await store.delete_alarm_rule("r1")  # its pending conditions go with it
    assert await store.alarm_pending() == []
    with pytest.raises(NotFoundError):
        await store.delete_alarm_rule("r1")


async def test_last_telemetry_is_each_device_s_newest_timestamp(store: Store) -> None:
    a = await store.create_device("a")
    b = await store.create_device("b")
    await store.write([(a.key, "t", 5, 1), (a.key, "h", 9, 1), (b.key, "t", 7, 1)], ())
    assert await store.last_telemetry() == {a.key: 9, b.key: 7}


async def test_history_is_deleted_before_a_time_in_bounded_batches(store: Store) -> None:
    d = await store.create_device("old")
    await store.write([(d.key, k, ts, ts) for k in ("a", "b") for ts in range(1, 101)], ())
    assert await store.delete_history_before(51, 30) == 30
    deleted = 30
    while (gone := await store.delete_history_before(51, 30)) == 30:
        deleted += gone
    assert deleted + gone == 100  # 50 points of each key
    kept = await store.history(d.key, "a", start_ts=0, end_ts=2**62, limit=1000)
    assert sorted(ts for ts, _ in kept) == list(range(51, 101))
    assert await store.latest(d.key) == {"a": (100, 100), "b": (100, 100)}
    assert await store.delete_history_before(1000, 10) == 10  # the latest values stay in latest
    assert (await store.latest(d.key))["a"] == (100, 100)
