"""Rate limits (core/limits.py): ThingsBoard's text, token buckets, per device."""

from __future__ import annotations

import pytest

from tinyboard.core.limits import DeviceLimits, RateLimit
from tinyboard.errors import ConfigError


def limits(messages: str = "off", telemetry: str = "off", datapoints: str = "off") -> DeviceLimits:
    return DeviceLimits(
        RateLimit.parse(messages), RateLimit.parse(telemetry), RateLimit.parse(datapoints)
    )


def test_every_bucket_must_have_room() -> None:
    device = limits("3:1,5:60")
    assert [device.allow(1, 0.0) for _ in range(4)] == [True, True, True, False]
    assert device.allow(1, 1.0) and device.allow(1, 1.0)  # a second later: 3 more a second,
    assert not device.allow(1, 1.0)  # but the minute's 5 are spent
    assert device.allow(1, 13.0)  # 5 a minute refill one every 12 s


def test_refill_is_greedy_and_capped_at_capacity() -> None:
    device = limits("10:10")
    assert all(device.allow(1, 0.0) for _ in range(10))
    assert not device.allow(1, 0.5)
    assert device.allow(1, 1.0)  # one token a second
    assert not device.allow(1, 1.0)
    assert sum(device.allow(1, 1000.0) for _ in range(20)) == 10  # never more than 10 saved


def test_devices_are_counted_apart_and_forgotten() -> None:
    device = limits("1:60")
    assert device.allow(1, 0.0) and device.allow(2, 0.0)
    assert not device.allow(1, 0.0)
    device.forget(1)
    assert device.allow(1, 0.0)


def test_telemetry_counts_messages_and_data_points() -> None:
    device = limits(telemetry="2:60", datapoints="5:60")
    assert device.allow_telemetry(1, 3, 0.0)
    # 6 values > 5; the message still took its token, as ThingsBoard's buckets do
    assert not device.allow_telemetry(1, 3, 0.0)
    assert not device.allow_telemetry(1, 1, 0.0)  # the third message of the minute
    assert device.allow_telemetry(1, 2, 60.0)


def test_session_limits_answer_what_is_enforced() -> None:
    device = limits("200:1,6000:60")
    assert device.session_limits()["rateLimits"] == {
        "messages": "200:1,6000:60",
        "telemetryMessages": None,
        "telemetryDataPoints": None,
    }
    assert "messages 200:1,6000:60" in device.describe()
    assert limits().describe() == "none"


@pytest.mark.parametrize("text", ["200", "200:", "a:1", "0:1", "5:0", "1:1,", "-1:5"])
def test_malformed_limits_are_refused_with_an_example(text: str) -> None:
    with pytest.raises(ConfigError, match="capacity:seconds"):
        RateLimit.parse(text, "--device-rate-limit")


@pytest.mark.parametrize("text", ["", "off", "OFF", "none", "0"])
def test_off_means_unlimited(text: str) -> None:
    assert RateLimit.parse(text) is None


def test_a_quota_counts_one_read_and_owes_the_buckets_what_it_took() -> None:
    device = limits("5:1")
    expected = {0.0: [True] * 5 + [False], 0.5: [True, True, False], 1.0: [True] * 3 + [False]}
    for now, answers in expected.items():  # 5 a second: 2.5 more by 0.5 s, 0.5 + 2.5 by 1 s
        read = device.quota(1, now)
        assert [read.message() for _ in answers] == answers
        read.spend()
    assert device.quota(2, 1.0).messages == 5  # another device has its own
