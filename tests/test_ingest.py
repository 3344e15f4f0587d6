"""Payload parsing shared by all transports: examples and Hypothesis properties."""

from __future__ import annotations

import contextlib
import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import FixedClock
from tinyboard.core.ingest import is_reading, parse_attributes, parse_line, parse_telemetry
from tinyboard.errors import PayloadError

NOW = 1_700_000_000_000
DEV = 7


AT_NOW = FixedClock(NOW)

no_nul = st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00")
"""Text holding NUL is refused, in keys and values alike (tests/abuse/test_storage_faults.py)."""
keys = st.text(alphabet=no_nul, min_size=1, max_size=40)
json_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=no_nul, max_size=50)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet=no_nul, max_size=5), inner)
    ),
    max_leaves=6,
)
pair_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,20}", fullmatch=True)


def test_bare_numbers_go_to_key_value() -> None:
    assert parse_line("23.5", DEV, AT_NOW) == [(DEV, "value", NOW, 23.5)]
    assert parse_line("-4", DEV, AT_NOW) == [(DEV, "value", NOW, -4)]
    assert parse_line("1e3", DEV, AT_NOW) == [(DEV, "value", NOW, 1000.0)]
    big = parse_line(str(2**70), DEV, AT_NOW)[0][3]
    assert isinstance(big, float)


def test_pairs_are_typed() -> None:
    assert parse_line("temperature=23.5 humidity=40,led=TRUE;door=open", DEV, AT_NOW) == [
        (DEV, "temperature", NOW, 23.5),
        (DEV, "humidity", NOW, 40),
        (DEV, "led", NOW, True),
        (DEV, "door", NOW, "open"),
    ]


@pytest.mark.parametrize(
    "line",
    [
        "temperature = 23 humidity = 40",
        "temperature =23 humidity= 40",
        "temperature\t=\t23,humidity = 40",
        "temperature = 23, humidity = 40",
        "temperature = 23 ; humidity=40",
        "temperature=23, humidity=40,",
        ";temperature=23 humidity=40;",
    ],
)
def test_spaces_around_equals_are_ignored(line: str) -> None:
    assert parse_line(line, DEV, AT_NOW) == [
        (DEV, "temperature", NOW, 23),
        (DEV, "humidity", NOW, 40),
    ]
    assert parse_line("led = TRUE", DEV, AT_NOW) == [(DEV, "led", NOW, True)]


@pytest.mark.parametrize(
    "line", ["note = hello world", "a = 1 b", "= 5", "a =", "a = 1 = 2 3", "door opened"]
)
def test_a_value_cannot_hold_spaces_so_such_a_line_is_a_message(line: str) -> None:
    assert parse_line(line, DEV, AT_NOW) == [(DEV, "message", NOW, line)]
    assert not is_reading(line)


@pytest.mark.parametrize(
    ("line", "reading"),
    [
        ("23.5", True),
        ("-4", True),
        ("a=1", True),
        ("temperature = 23", True),
        ("{not json", True),  # refused as JSON once there is a device: never free text
        ('[{"t": 1}]', True),
        ("hello", False),
        ("nan", False),
        ("a=1 b", False),
        ("1 2", False),
    ],
)
def test_is_reading_follows_parse_line(line: str, reading: bool) -> None:
    assert is_reading(line) is reading


def test_other_text_is_a_message() -> None:
    assert parse_line("door opened by Ana", DEV, AT_NOW) == [
        (DEV, "message", NOW, "door opened by Ana")
    ]
    assert parse_line("a=1 b", DEV, AT_NOW) == [(DEV, "message", NOW, "a=1 b")]
    assert parse_line("nan", DEV, AT_NOW) == [(DEV, "message", NOW, "nan")]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"t":1,"s":"x"}', [("t", NOW, 1), ("s", NOW, "x")]),
        ('[{"t":1},{"u":false}]', [("t", NOW, 1), ("u", NOW, False)]),
        ('{"ts":5,"values":{"t":1.5}}', [("t", 5, 1.5)]),
        ('[{"ts":5,"values":{"t":1}},{"ts":6,"values":{"t":2}}]', [("t", 5, 1), ("t", 6, 2)]),
        ('{"obj":{"a":[1,{"b":null}]}}', [("obj", NOW, {"a": [1, {"b": None}]})]),
        ('{"ts":5,"other":1}', [("ts", NOW, 5), ("other", NOW, 1)]),
    ],
)
def test_thingsboard_telemetry_shapes(payload: str, expected: list[tuple[object, ...]]) -> None:
    assert parse_telemetry(payload.encode(), DEV, AT_NOW) == [(DEV, *e) for e in expected]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{", "invalid JSON"),
        ("42", "telemetry must be a JSON object"),
        ("[1]", "telemetry must be a JSON object"),
        ('{"a":null}', "null value"),
        ('{"":1}', "keys need 1 to"),
        ('{"ts":-1,"values":{"a":1}}', '"ts" must be'),
        ('{"ts":1.5,"values":{"a":1}}', '"ts" must be'),
        ('{"ts":1,"values":[1]}', '"values" must be'),
    ],
)
def test_bad_telemetry_is_refused_with_a_reason(payload: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_telemetry(payload, DEV, AT_NOW)


def test_attributes() -> None:
    assert parse_attributes(b'{"fw":"1.2","interval":30}') == {"fw": "1.2", "interval": 30}
    with pytest.raises(PayloadError):
        parse_attributes(b"[]")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_finite_float_round_trips_through_a_line(x: float) -> None:
    [(_, key, _, value)] = parse_line(repr(x), DEV, AT_NOW)
    assert key == "value"
    assert value == x or (math.isclose(value, x))  # type: ignore[arg-type]


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_int64_stays_an_int(n: int) -> None:
    assert parse_line(str(n), DEV, AT_NOW) == [(DEV, "value", NOW, n)]


@given(st.dictionaries(pair_keys, st.integers(-(10**12), 10**12) | st.booleans(), min_size=1))
def test_key_value_pairs_round_trip(values: dict[str, int | bool]) -> None:
    line = " ".join(f"{k}={str(v).lower()}" for k, v in values.items())
    parsed = parse_line(line, DEV, AT_NOW)
    assert {k: v for _, k, _, v in parsed} == values
    assert all(type(v) is type(values[k]) for _, k, _, v in parsed)


spacing = st.sampled_from(["", " ", "  ", "\t"])
separators = st.sampled_from([" ", ", ", ",", ";", " ; ", "\t"])


@given(
    st.dictionaries(pair_keys, st.integers(-(10**12), 10**12) | st.booleans(), min_size=1),
    st.data(),
)
def test_spaced_pairs_parse_like_unspaced_ones(
    values: dict[str, int | bool], data: st.DataObject
) -> None:
    parts = [
        f"{k}{data.draw(spacing)}={data.draw(spacing)}{str(v).lower()}" for k, v in values.items()
    ]
    line = "".join(part + data.draw(separators) for part in parts).strip()
    tight = " ".join(f"{k}={str(v).lower()}" for k, v in values.items())
    assert parse_line(line, DEV, AT_NOW) == parse_line(tight, DEV, AT_NOW)
    assert is_reading(line)


@given(st.text(min_size=1).map(str.strip).filter(bool))
def test_is_reading_means_not_stored_as_free_text(text: str) -> None:
    try:
        readings = parse_line(text, DEV, AT_NOW)
    except PayloadError:
        assert is_reading(text) or "\x00" in text  # free text is refused only for a NUL
        return
    as_message = [key for _, key, _, _ in readings] == ["message"] and readings[0][3] == text
    assert is_reading(text) is not as_message


@given(st.dictionaries(keys, json_values, min_size=1, max_size=8))
def test_json_telemetry_round_trips_with_types(values: dict[str, object]) -> None:
    parsed = parse_telemetry(orjson.dumps(values), DEV, AT_NOW)
    assert {k: v for _, k, _, v in parsed} == values


@given(st.text(min_size=1).map(str.strip).filter(bool))
def test_any_text_line_parses_or_raises_payload_error(text: str) -> None:
    try:
        readings = parse_line(text, DEV, AT_NOW)
    except PayloadError:
        return
    assert readings
    assert all(dev == DEV and isinstance(key, str) and key for dev, key, _, _ in readings)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_payload_error(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        parse_telemetry(data, DEV, AT_NOW)


def test_a_key_holding_nul_is_refused_with_a_reason() -> None:
    with pytest.raises(PayloadError, match="cannot contain NUL"):
        parse_telemetry(b'{"a\\u0000b": 1}', DEV, AT_NOW)
