"""ThingsBoard's legacy WebSocket telemetry commands, parsed into checked values.

Strategy: a message is read whole, then each field by one typed reader that refuses a wrong
type or an out-of-range number. A command that cannot be read becomes `Refused` with its
cmdId (0 when even that is unreadable), which the session answers with ThingsBoard's error
reply, errorCode 2 (BAD_REQUEST): one bad command never ends the connection or spoils the
other commands of its message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from tinyboard.core.models import AGGREGATIONS, SCOPES, Aggregation, Scope
from tinyboard.errors import TinyboardError
from tinyboard.web.telemetry import MAX_TS, SCOPE_OF

# ThingsBoard's SubscriptionErrorCode values.
NO_ERROR, INTERNAL_ERROR, BAD_REQUEST = 0, 1, 2

MAX_COMMAND_BYTES = 64 * 1024
"""Largest command message parsed. A dashboard's message holds a few commands of ~200 bytes,
so this leaves room for hundreds; a bigger one is refused unparsed, so no client can make
the server parse (and answer) megabytes at a time."""
MAX_CMD_ID = 2**31 - 1
"""cmdId is a Java int in ThingsBoard."""
DEFAULT_LIMIT = 100
"""Points per key when a command gives no limit (or 0), as ThingsBoard."""
MAX_LIMIT = 100_000
"""Most points per key one command may ask for: the REST API's limit."""
COMMAND_LISTS = ("tsSubCmds", "historyCmds", "attrSubCmds")
LEGACY_SHAPE = '{"tsSubCmds": [...], "historyCmds": [...], "attrSubCmds": [...]}'


class BadCommand(TinyboardError):
    """A command ThingsBoard would answer with BAD_REQUEST."""


@dataclass(frozen=True, slots=True)
class Window:
    """Which stored points to send: [start, end) in ms, aggregated or not, at most `limit`
    per key."""

    start: int
    end: int
    interval: int
    agg: Aggregation
    limit: int


@dataclass(frozen=True, slots=True)
class Refused:
    cmd_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    cmd_id: int


@dataclass(frozen=True, slots=True)
class TsSubscribe:
    """Latest values (or `window`'s history), then every committed reading."""

    cmd_id: int
    entity_id: str
    keys: frozenset[str] | None
    window: Window | None


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    cmd_id: int
    entity_id: str
    keys: frozenset[str] | None
    window: Window


@dataclass(frozen=True, slots=True)
class AttrSubscribe:
    cmd_id: int
    entity_id: str
    keys: frozenset[str] | None
    scopes: tuple[Scope, ...]
    """The scopes followed: all three when the command names none, as ThingsBoard."""


Command = Unsubscribe | TsSubscribe | HistoryRequest | AttrSubscribe


def parse_message(message: Mapping[str, Any], now: int) -> list[Command | Refused]:
    """The commands of one ASGI WebSocket message, in ThingsBoard's order; `now` in ms."""
    try:
        doc = read_document(message)
    except BadCommand as exc:
        return [Refused(0, str(exc))]
    out: list[Command | Refused] = []
    for name in COMMAND_LISTS:
        commands = doc.get(name)
        if commands is None:
            continue
        if not isinstance(commands, list):
            out.append(Refused(0, f"{name} must be a list of commands"))
            continue
        out += [read_command(_PARSERS[name], cmd, now) for cmd in commands]
    return out


def read_document(message: Mapping[str, Any], shape: str = LEGACY_SHAPE) -> dict[str, Any]:
    """The JSON object of one text message, within `MAX_COMMAND_BYTES`; `shape` is what
    the error message tells a client to send instead."""
    text = message.get("text")
    if text is None:
        raise BadCommand("send commands as JSON in text frames, not binary ones")
    data = text.encode() if len(text) <= MAX_COMMAND_BYTES else b""
    if not data or len(data) > MAX_COMMAND_BYTES:
        raise BadCommand(
            f"a command message is at most {MAX_COMMAND_BYTES} bytes (UTF-8) and not empty: "
            "send the commands in several messages"
        )
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BadCommand("commands must be JSON") from None
    if not isinstance(doc, dict):
        raise BadCommand(f"send {shape}")
    return doc


C = TypeVar("C")
Parser = Callable[[int, dict[str, Any], int], C]
"""Reads one command object: (cmdId, the command, now in ms) → a checked command."""


def read_command(parse: Parser[C], cmd: object, now: int) -> C | Refused:
    """One command, or `Refused` with its cmdId (0 when even that cannot be read)."""
    if not isinstance(cmd, dict):
        return Refused(0, "each command is a JSON object with an integer cmdId")
    try:
        cmd_id = integer_field(cmd, "cmdId", 0, MAX_CMD_ID)
    except BadCommand as exc:
        return Refused(0, str(exc))
    try:
        return parse(cmd_id, cmd, now)
    except BadCommand as exc:
        return Refused(cmd_id, str(exc))


def ts_subscribe(cmd_id: int, cmd: dict[str, Any], now: int) -> Command:
    if unsubscribe_field(cmd):
        return Unsubscribe(cmd_id)
    start, window = integer_field(cmd, "startTs", 0), integer_field(cmd, "timeWindow", 0)
    past = read_window(cmd, start or max(0, now - window), now + 1) if start or window else None
    return TsSubscribe(cmd_id, entity_field(cmd), keys_field(cmd), past)


def history(cmd_id: int, cmd: dict[str, Any], now: int) -> Command:
    start, end = integer_field(cmd, "startTs", 0), integer_field(cmd, "endTs", now + 1)
    return HistoryRequest(cmd_id, entity_field(cmd), keys_field(cmd), read_window(cmd, start, end))


def attr_subscribe(cmd_id: int, cmd: dict[str, Any], _: int) -> Command:
    if unsubscribe_field(cmd):
        return Unsubscribe(cmd_id)
    name = text_field(cmd, "scope")
    scope = SCOPE_OF.get(name)
    if name and scope is None:
        raise BadCommand("scope must be CLIENT_SCOPE, SHARED_SCOPE, SERVER_SCOPE or absent (all)")
    scopes = (scope,) if scope else SCOPES
    return AttrSubscribe(cmd_id, entity_field(cmd), keys_field(cmd), scopes)


_PARSERS: dict[str, Parser[Command]] = {
    "tsSubCmds": ts_subscribe,
    "historyCmds": history,
    "attrSubCmds": attr_subscribe,
}


def read_window(cmd: dict[str, Any], start: int, end: int) -> Window:
    """`agg`, `interval` and `limit` of a command over [start, end). As ThingsBoard (and the
    REST route), `limit` counts raw points only: an aggregation answers every bucket."""
    agg = text_field(cmd, "agg") or "NONE"
    if agg not in AGGREGATIONS:
        raise BadCommand(f"agg must be one of {', '.join(AGGREGATIONS)}")
    interval = integer_field(cmd, "interval", 0)
    if agg != "NONE" and interval <= 0:
        raise BadCommand("an aggregation needs interval > 0 (milliseconds per bucket)")
    limit = integer_field(cmd, "limit", 0, MAX_LIMIT) or DEFAULT_LIMIT
    if agg != "NONE":
        limit = max(1, min(-(-(end - start) // interval), MAX_LIMIT))
    return Window(start, end, interval, agg, limit)


def integer_field(cmd: dict[str, Any], name: str, default: int, high: int = MAX_TS) -> int:
    raw = cmd.get(name)
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= high:
        raise BadCommand(f"{name} must be a whole number from 0 to {high}, not {shown(raw)}")
    if raw % 1:
        raise BadCommand(f"{name} must be a whole number, not {shown(raw)}")
    return int(raw)


def text_field(cmd: dict[str, Any], name: str) -> str:
    raw = cmd.get(name)
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise BadCommand(f"{name} must be a string, not {shown(raw)}")
    return no_nul(name, raw)


def no_nul(name: str, text: str) -> str:
    """No id, name or key holds NUL (PostgreSQL cannot even compare one)."""
    if "\x00" in text:
        raise BadCommand(f"{name} must not contain NUL characters")
    return text


def entity_field(cmd: dict[str, Any]) -> str:
    if (text_field(cmd, "entityType") or "DEVICE") != "DEVICE":
        raise BadCommand("only entityType DEVICE is supported")
    entity_id = text_field(cmd, "entityId")
    if not entity_id:
        raise BadCommand("entityId is missing: give the device's id")
    return entity_id


def keys_field(cmd: dict[str, Any]) -> frozenset[str] | None:
    """None (every key) when absent or empty, as ThingsBoard."""
    raw = cmd.get("keys")
    if raw in (None, "", []):  # not any falsy value: `false` or `{}` is refused below
        return None
    if isinstance(raw, str):
        keys = no_nul("keys", raw).split(",")
        return frozenset(k.strip() for k in keys if k.strip()) or None
    if isinstance(raw, list) and all(isinstance(k, str) for k in raw):
        return frozenset(no_nul("keys", k) for k in raw)
    raise BadCommand('keys is a comma-separated string such as "temperature,humidity"')


def unsubscribe_field(cmd: dict[str, Any]) -> bool:
    raw = cmd.get("unsubscribe", False)
    if not isinstance(raw, bool):
        raise BadCommand(f"unsubscribe must be true or false, not {shown(raw)}")
    return raw


def shown(raw: object) -> str:
    """A refused value as the error message quotes it: short, whatever was sent."""
    try:
        text = orjson.dumps(raw).decode()
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (255 levels)
        return f"{'a list' if isinstance(raw, list) else 'an object'} nested over 255 deep"
    return text if len(text) <= 40 else text[:37] + "..."
