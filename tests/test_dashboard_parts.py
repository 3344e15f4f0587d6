"""The dashboard's plain parts, without a browser: chart windows, options and live folding,
units, times, the connection snippets, the login redirect guard and device presence."""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import replace
from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyboard.addresses import lan_ipv4
from tinyboard.core.models import Device
from tinyboard.dashboard import snippets
from tinyboard.dashboard.charts import (
    MARKERS_UP_TO,
    MAX_POINTS,
    RANGES,
    LiveFold,
    chart_options,
    custom,
    preset,
)
from tinyboard.dashboard.presence import INACTIVITY_SECONDS, presence_of
from tinyboard.dashboard.session import local_path
from tinyboard.dashboard.times import when, zone_label
from tinyboard.dashboard.units import KeyUnit, parse_units, read_units
from tinyboard.registry import Registry
from tinyboard.storage.base import Store

NOW = 1_800_000_000_000
FIRMWARE = Path(__file__).resolve().parents[1] / "firmware" / "esp8266"


@pytest.mark.parametrize("name", list(RANGES))
def test_every_preset_stays_under_the_point_budget(name: str) -> None:
    window = preset(name, NOW)
    assert window.live and window.end_ts > NOW
    buckets = -(-(window.end_ts - window.start_ts) // window.interval)
    assert buckets <= MAX_POINTS


def test_a_custom_range_must_end_after_it_starts() -> None:
    assert not custom(NOW - 1000, NOW).live
    with pytest.raises(ValueError, match="after its start"):
        custom(NOW, NOW)


def test_the_bucket_middle_matches_the_database_s() -> None:
    window = custom(0, 2_000_000)  # 1,000 ms buckets
    assert window.interval == 1000
    assert window.bucket_middle(0) == 500
    assert window.bucket_middle(999) == 500
    assert window.bucket_middle(1000) == 1500


def test_live_points_in_one_bucket_are_averaged_and_replace_each_other() -> None:
    fold = LiveFold(custom(0, 2_000_000))
    fold.add(100, 10.0)
    fold.add(200, 20.0)
    assert fold.take() == [(500, 15.0)]
    fold.add(300, 30.0)  # same bucket, next flush: the running average over all three
    fold.add(1100, 5.0)
    assert fold.take() == [(500, 20.0), (1500, 5.0)]
    assert fold.take() == []


def test_a_late_point_does_not_reopen_a_drawn_bucket() -> None:
    fold = LiveFold(custom(0, 2_000_000))
    fold.add(1100, 5.0)
    fold.add(100, 99.0)
    assert fold.take() == [(1500, 5.0)]


@given(st.lists(st.integers(0, 7 * 86_400_000), min_size=1, max_size=300))
def test_folding_any_week_of_points_sends_at_most_one_point_per_bucket(
    offsets: list[int],
) -> None:
    window = preset("7 d", NOW)
    fold = LiveFold(window)
    for offset in sorted(offsets):
        fold.add(window.start_ts + offset, 1.0)
    sent = fold.take()
    middles = [ts for ts, _ in sent]
    assert middles == sorted(set(middles))
    assert len(sent) <= MAX_POINTS
    assert all(value == 1.0 for _, value in sent)


def settings_block(sketch: str) -> str:
    """The settings block of a shipped sketch, from its "// ---- settings" line to the rule
    that closes it, with runs of spaces made one (the sketch aligns its comments)."""
    lines = (FIRMWARE / sketch / f"{sketch}.ino").read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("// ---- settings"))
    last = next(i for i in range(first + 1, len(lines)) if lines[i].startswith("// ----"))
    return one_space("\n".join(lines[first : last + 1]) + "\n")


def one_space(text: str) -> str:
    return re.sub(" +", " ", text)


def test_the_sketch_snippets_are_the_shipped_sketches_settings_blocks() -> None:
    """With the sketches' own example values, each snippet is the block it replaces."""
    tcp = snippets.tcp_sketch("192.168.1.10", 12000, "your-device-token")
    assert one_space(tcp) == settings_block("tinyboard_tcp")
    mqtt = snippets.mqtt_sketch("192.168.1.10", 1883, "your-device-token")
    assert one_space(mqtt) == settings_block("tinyboard_mqtt")


def test_snippets_carry_the_token_host_and_ports() -> None:
    token = "it's-a-token"
    assert 'THINGSBOARD_SERVER[] = "10.0.0.5";' in snippets.mqtt_sketch("10.0.0.5", 1884, token)
    assert "THINGSBOARD_PORT = 1884U;" in snippets.mqtt_sketch("10.0.0.5", 1884, token)
    assert 'TOKEN[] = "it\'s-a-token";' in snippets.mqtt_sketch("10.0.0.5", 1884, token)
    tcp = snippets.tcp_sketch("10.0.0.5", 12001, token)
    assert '#define TINYBOARD_HOST "10.0.0.5"' in tcp
    assert "#define TINYBOARD_PORT 12001 " in tcp
    assert '#define TINYBOARD_TOKEN "it\'s-a-token"' in tcp
    words = shlex.split(snippets.mosquitto_pub("10.0.0.5", 1884, token))
    assert words[words.index("-u") + 1] == token  # quoted for the shell
    assert words[words.index("-h") + 1] == "10.0.0.5"
    assert words[words.index("-p") + 1] == "1884"
    assert words[words.index("-t") + 1] == "v1/devices/me/telemetry"
    http = shlex.split(snippets.curl("http://10.0.0.5:8080", token))
    assert "http://10.0.0.5:8080/api/v1/it%27s-a-token/telemetry" in http
    simulated = shlex.split(snippets.simulate("10.0.0.5", 1884, token))
    assert simulated[:2] == ["tinyboard", "simulate"]
    assert simulated[simulated.index("--token") + 1] == token
    assert simulated[simulated.index("--port") + 1] == "1884"


def test_a_page_opened_by_a_lan_address_or_name_gives_that_host() -> None:
    lan = snippets.target("http://192.0.2.7:8080/ui/devices", "0.0.0.0", 8080)
    assert (lan.host, lan.http_base, lan.via_loopback, lan.unreachable) == (
        "192.0.2.7", "http://192.0.2.7:8080", False, False,
    )  # fmt: skip
    # behind a reverse proxy: the name and scheme the browser used, not the upstream's port
    proxied = snippets.target("https://iot.example.org/ui/devices", "0.0.0.0", 8080)
    assert (proxied.host, proxied.http_base) == ("iot.example.org", "https://iot.example.org")


def test_a_page_opened_by_loopback_gives_the_address_boards_must_use() -> None:
    bound = snippets.target("http://127.0.0.1:9000/ui/devices", "10.1.2.3", 9000)
    assert (bound.host, bound.http_base) == ("10.1.2.3", "http://10.1.2.3:9000")
    assert bound.via_loopback and not bound.unreachable
    every = snippets.target("http://localhost:9000/ui/devices", "0.0.0.0", 9000)
    if lan_ipv4():
        assert (every.host, every.others) == (lan_ipv4()[0], tuple(lan_ipv4()[1:]))
        assert not every.unreachable
    local = snippets.target("http://[::1]:9000/ui/devices", "127.0.0.1", 9000)
    assert (local.host, local.http_base) == ("127.0.0.1", "http://127.0.0.1:9000")
    assert local.via_loopback and local.unreachable  # no board can reach this server


@pytest.mark.parametrize(
    ("asked", "sent_to"),
    [
        ("/ui/device/abc", "/ui/device/abc"),
        ("/ui/devices?x=1", "/ui/devices?x=1"),
        ("https://evil.example/", "/ui/devices"),
        ("//evil.example/ui/", "/ui/devices"),
        ("/ui/\\\\evil.example", "/ui/devices"),
        ("/api/device", "/ui/devices"),
        ("", "/ui/devices"),
    ],
)
def test_after_login_only_dashboard_paths_are_followed(asked: str, sent_to: str) -> None:
    assert local_path(asked) == sent_to


class _Connection:
    def close(self) -> None: ...

    def abort(self) -> None: ...


def _device(name: str = "d1") -> Device:
    return Device(
        id=name, key=1, name=name, type="t", label="", token="x", created_ts=0, profile_id="p"
    )


def test_presence_connected_then_recently_heard_then_offline() -> None:
    registry = Registry()
    device = _device()
    now = time.time()  # the registry stamps closures with the real clock
    assert presence_of(registry, device, None, now).online is False
    assert presence_of(registry, device, None, now).last_seen_ms is None

    client = registry.add("mqtt", "127.0.0.1:5000", _Connection())
    client.device = device
    state = presence_of(registry, device, None, now)
    assert (state.online, state.transport) == (True, "mqtt")

    registry.remove(client)
    state = presence_of(registry, device, None, now + 1)
    assert (state.online, state.transport) == (True, "mqtt")  # heard from a second ago
    assert state.last_seen_ms is not None and abs(state.last_seen_ms - now * 1000) < 5000
    later = now + INACTIVITY_SECONDS + 60
    assert presence_of(registry, device, None, later).online is False

    registry.seen(device, "http")
    state = presence_of(registry, device, None, time.time())
    assert (state.online, state.transport) == (True, "http")


def test_presence_counts_a_stored_reading_as_being_heard_from() -> None:
    state = presence_of(Registry(), _device(), NOW - 1000, NOW / 1000)
    assert state.online and state.last_seen_ms == NOW - 1000 and state.transport == ""


def test_an_inactivity_rule_decides_online_even_while_connected() -> None:
    registry = Registry()
    device = _device()
    client = registry.add("mqtt", "127.0.0.1:5000", _Connection())
    client.device = device
    silent = presence_of(registry, device, None, time.time(), inactive=True)
    assert (silent.online, silent.transport) == (False, "mqtt")  # connected, but no telemetry
    assert presence_of(registry, device, None, time.time(), inactive=False).online is True
    registry.remove(client)
    old = int((time.time() - 10 * INACTIVITY_SECONDS) * 1000)
    # the rule says it is active although the default timeout would call it offline
    assert presence_of(Registry(), device, old, time.time(), inactive=False).online is True


def test_units_come_from_the_units_attribute_and_skip_what_they_cannot_read() -> None:
    units = parse_units(
        {
            "temperature": {"units": "°C", "decimals": 1},
            "humidity": "%",
            "light": {"decimals": 0},
            "bad": {"decimals": 11},
            "worse": 3,
        }
    )
    assert set(units) == {"temperature", "humidity", "light"}
    assert units["temperature"].show(23.456) == "23.5 °C"
    assert units["humidity"].show(40) == "40 %"
    assert units["light"].show(812.4) == "812"
    assert units["temperature"].show(True) == "true"  # not a number: as it arrived
    assert units["temperature"].show("warm") == "warm"
    assert parse_units("°C") == {}


async def test_a_device_s_units_fall_back_to_its_profile_s(store: Store) -> None:
    device = await store.create_device("meter", type="meter")
    profile = await store.get_profile("meter")
    configuration = {"type": "DEFAULT", "units": {"power": "W", "voltage": "V"}}
    data = {**profile.profile_data, "configuration": configuration}
    await store.save_profile(replace(profile, profile_data=data))
    assert {k: u.units for k, u in (await read_units(store, device)).items()} == {
        "power": "W",
        "voltage": "V",
    }
    own = {"power": {"units": "kW", "decimals": 2}}
    await store.write([], [(device.key, "SERVER", "units", 1, own)])
    units = await read_units(store, device)
    assert units["power"] == KeyUnit("kW", 2) and units["voltage"] == KeyUnit("V")
    other = await store.create_device("plain")
    assert await read_units(store, other) == {}


def test_a_chart_spans_its_window_not_its_data() -> None:
    window = preset("1 h", NOW)
    options = chart_options("t", [[NOW - 1000, 1.0]], window, KeyUnit("°C", 1))
    assert (options["xAxis"]["min"], options["xAxis"]["max"]) == (NOW - 3_600_000, NOW + 1)
    assert options["series"][0]["showSymbol"] is True
    many = [[NOW - i, 1.0] for i in range(MARKERS_UP_TO + 1)]
    assert chart_options("t", many, window, KeyUnit())["series"][0]["showSymbol"] is False
    assert options["title"]["text"] == "t (°C)"
    assert window.describe(UTC) == "in the last 1 h"
    assert custom(0, 3_600_000).describe(UTC) == "between 1970-01-01 00:00 and 1970-01-01 01:00"


def test_the_zone_label_names_the_zone_and_its_offset_at_that_time() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert zone_label(berlin, 1_800_000_000_000) == "Times in Europe/Berlin (UTC+01:00)"
    summer = 1_784_000_000_000  # July 2026
    assert zone_label(berlin, summer) == "Times in Europe/Berlin (UTC+02:00)"
    assert zone_label(UTC, 0) == "Times in UTC (UTC+00:00)"
    assert when(0, ZoneInfo("Asia/Kolkata")) == "1970-01-01 05:30:00"
