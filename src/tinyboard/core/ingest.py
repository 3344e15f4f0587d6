"""Turn device payloads into typed readings, the same way for every transport.

Accepted telemetry (ThingsBoard's formats): `{"k": v}`, `[{"k": v}, ...]`,
`{"ts": ms, "values": {...}}` and arrays of those. Values may be booleans, integers, floats,
strings or JSON objects/arrays. The line protocol also accepts a bare number (key `value`),
`key=value` pairs (spaces around `=` allowed) and free text (key `message`); `is_reading`
tells the first three from free text by the same rule.

Every key and value passes the same checks whatever the transport and store (`_key`,
`json_value`, `_text`): what one store cannot hold (NUL, JSON nested deeper than the encoder
writes) is refused here with a `PayloadError` for the sender, never later in a batch
shared with other devices.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, Protocol

import orjson

from tinyboard.core.models import JsonValue, Reading, Value
from tinyboard.errors import PayloadError

MAX_KEY = 255
MAX_JSON_DEPTH = 254
"""Nesting of a JSON value that orjson can still write back (it stops at 255)."""
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_PAIR_SEPARATORS = re.compile(r"[\s,;]+")
_SPACED_EQUALS = re.compile(r"\s*=\s*")


class Stamps(Protocol):
    """Where readings without their own `ts` get one (`core.clock.DeviceClocks`)."""

    def stamp(self, device: int) -> int: ...

    def saw(self, device: int, ts: int) -> None: ...


def parse_json(payload: bytes | str) -> Any:
    """Decode JSON or raise `PayloadError` naming the problem."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"invalid JSON: {exc}") from None


def telemetry_from_json(doc: Any, device: int, clock: Stamps) -> list[Reading]:
    """Readings from a decoded ThingsBoard telemetry document. Items without `ts` share one
    server stamp, taken only if there is such an item."""
    out: list[Reading] = []
    items = doc if isinstance(doc, list) else [doc]
    now_ms = -1
    for item in items:
        if not isinstance(item, dict):
            raise PayloadError("telemetry must be a JSON object or an array of objects")
        if "ts" in item and "values" in item:
            ts = _timestamp(item["ts"])
            clock.saw(device, ts)
            values = item["values"]
            if not isinstance(values, dict):
                raise PayloadError('"values" must be a JSON object of key/value pairs')
        else:
            if now_ms < 0:
                now_ms = clock.stamp(device)
            ts, values = now_ms, item
        for key, value in values.items():
            out.append((device, _key(key), ts, json_value(key, value)))
    return out


def parse_telemetry(payload: bytes | str, device: int, clock: Stamps) -> list[Reading]:
    """Readings from a ThingsBoard telemetry payload (raw JSON bytes or text)."""
    return telemetry_from_json(parse_json(payload), device, clock)


def parse_attributes(payload: bytes | str) -> dict[str, Value]:
    """Attribute key/values from a flat JSON object, as ThingsBoard's attributes API takes."""
    return attributes_from_json(parse_json(payload))


def attributes_from_json(doc: Any) -> dict[str, Value]:
    """Attribute key/values from a decoded JSON object."""
    if not isinstance(doc, dict):
        raise PayloadError("attributes must be a JSON object of key/value pairs")
    return {_key(k): json_value(k, v) for k, v in doc.items()}


def parse_line(text: str, device: int, clock: Stamps) -> list[Reading]:
    """Readings from one line-protocol line (already stripped, never empty)."""
    if text[0] in "{[":
        return parse_telemetry(text, device, clock)
    ts = clock.stamp(device)
    if _NUMBER.fullmatch(text):
        return [(device, "value", ts, _number(text))]
    pairs = _pairs(text)
    if pairs is not None:
        return [(device, _key(key), ts, text_value(key, raw)) for key, raw in pairs]
    return [(device, "message", ts, _text("message", text))]


def is_reading(text: str) -> bool:
    """Whether a line (stripped, never empty) is written as a reading (JSON, a number or
    key=value pairs) rather than free text: a connection without a device answers such a
    line with a warning that nothing was stored."""
    return text[0] in "{[" or _NUMBER.fullmatch(text) is not None or _pairs(text) is not None


def _pairs(text: str) -> list[tuple[str, str]] | None:
    """`a=1 b = 2, c=x;` as (key, raw value) pairs, or None when any part is not a pair (a
    value cannot hold spaces: `note = hello world` is free text)."""
    if "=" not in text:
        return None
    pairs = []
    for part in _PAIR_SEPARATORS.split(_SPACED_EQUALS.sub("=", text)):
        if not part:  # a separator at either end
            continue
        key, sep, raw = part.partition("=")
        if not (sep and key and raw):
            return None
        pairs.append((key, raw))
    return pairs


def text_value(key: str, raw: str) -> Value:
    """Type a value written as text: number, true/false, or the string itself."""
    if _NUMBER.fullmatch(raw):
        return _number(raw)
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return _text(key, raw)


_KEPT_AS_IS = frozenset({bool, float})


def json_value(key: object, value: object) -> Value:
    """Check a decoded JSON value is one every store can hold; big integers become floats."""
    kind = type(value)  # exact types: orjson makes no subclasses, and this is the hot path
    if kind in _KEPT_AS_IS:
        return value  # type: ignore[return-value]
    if kind is int:
        return value if INT64_MIN <= value <= INT64_MAX else float(value)  # type: ignore[operator,arg-type,return-value]
    if kind is str:
        return _text(key, value)  # type: ignore[arg-type]
    if kind is dict or kind is list:
        return _json(key, value)  # type: ignore[arg-type]
    return _subclassed(key, value)


def _subclassed(key: object, value: object) -> Value:
    """`json_value` for subclasses of the JSON types, which API callers may pass."""
    if isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else float(value)
    if isinstance(value, str):
        return _text(key, value)
    if isinstance(value, dict | list):
        return _json(key, value)
    raise PayloadError(f"key {key!r} has a null value; send a number, string, boolean or JSON")


def _text(key: object, value: str) -> str:
    if "\x00" in value:  # PostgreSQL text cannot hold it: refused for every store alike
        raise PayloadError(f"the value of {key!r} contains a NUL character; send it without")
    return value


def _json(key: object, value: JsonValue) -> JsonValue:
    """Refuse JSON no store can write back: NUL in any string or object key, or nesting
    deeper than the encoder writes. A loop, not recursion: the nesting is the sender's."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            _text(key, item)
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise PayloadError(
                    f"the value of {key!r} nests deeper than {MAX_JSON_DEPTH} levels; "
                    "send flatter JSON"
                )
            if isinstance(item, dict):
                pending += ((k, depth) for k in item)
            pending += ((child, depth + 1) for child in _children(item))
    return value


def _children(item: JsonValue) -> Iterable[object]:
    return item.values() if isinstance(item, dict) else item


def _number(text: str) -> int | float:
    if _INTEGER.fullmatch(text):
        n = int(text)
        if INT64_MIN <= n <= INT64_MAX:
            return n
    f = float(text)
    if not math.isfinite(f):
        raise PayloadError(f"the number {text[:40]} is too large to store")
    return f


def _key(key: object) -> str:
    """The one check of every telemetry and attribute key, on every path."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        shown = key[:40] + "..." if isinstance(key, str) and len(key) > 40 else key
        raise PayloadError(f"keys need 1 to {MAX_KEY} characters, got {shown!r}")
    if "\x00" in key:  # PostgreSQL text cannot hold it, and no real sensor names one so
        raise PayloadError(f"keys cannot contain NUL characters, got {key!r}")
    return key


def _timestamp(ts: object) -> int:
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= INT64_MAX:
        raise PayloadError(f'"ts" must be Unix time in milliseconds (an integer), got {ts!r}')
    return ts
