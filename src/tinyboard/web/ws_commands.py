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
from typing import Any

import orjson

from tinyboard.core.models import AGGREGATIONS, Aggregation, Scope
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
    scope: Scope


Command = Unsubscribe | TsSubscribe | HistoryRequest | AttrSubscribe


def parse_message(message: Mapping[str, Any], now: int) -> list[Command | Refused]:
    """The commands of one ASGI WebSocket message, in ThingsBoard's order; `now` in ms."""
    try:
        doc = _document(message)
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
        out += [_command(_PARSERS[name], cmd, now) for cmd in commands]
    return out


def _document(message: Mapping[str, Any]) -> dict[str, Any]:
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
        raise BadCommand('send {"tsSubCmds": [...], "historyCmds": [...], "attrSubCmds": [...]}')
    return doc


Parser = Callable[[int, dict[str, Any], int], Command]


def _command(parse: Parser, cmd: object, now: int) -> Command | Refused:
    if not isinstance(cmd, dict):
        return Refused(0, "each command is a JSON object with an integer cmdId")
    try:
        cmd_id = _integer(cmd, "cmdId", 0, MAX_CMD_ID)
    except BadCommand as exc:
        return Refused(0, str(exc))
    try:
        return parse(cmd_id, cmd, now)
    except BadCommand as exc:
        return Refused(cmd_id, str(exc))


def _ts_subscribe(cmd_id: int, cmd: dict[str, Any], now: int) -> Command:
    if _unsubscribe(cmd):
        return Unsubscribe(cmd_id)
    start, window = _integer(cmd, "startTs", 0), _integer(cmd, "timeWindow", 0)
    history = _window(cmd, start or max(0, now - window), now + 1) if start or window else None
    return TsSubscribe(cmd_id, _entity(cmd), _keys(cmd), history)


def _history(cmd_id: int, cmd: dict[str, Any], now: int) -> Command:
    start, end = _integer(cmd, "startTs", 0), _integer(cmd, "endTs", now + 1)
    return HistoryRequest(cmd_id, _entity(cmd), _keys(cmd), _window(cmd, start, end))


def _attr_subscribe(cmd_id: int, cmd: dict[str, Any], _: int) -> Command:
    if _unsubscribe(cmd):
        return Unsubscribe(cmd_id)
    scope = SCOPE_OF.get(_text(cmd, "scope") or "CLIENT_SCOPE")
    if scope is None:
        raise BadCommand("scope must be CLIENT_SCOPE, SHARED_SCOPE or SERVER_SCOPE")
    return AttrSubscribe(cmd_id, _entity(cmd), _keys(cmd), scope)


_PARSERS: dict[str, Parser] = {
    "tsSubCmds": _ts_subscribe,
    "historyCmds": _history,
    "attrSubCmds": _attr_subscribe,
}


def _window(cmd: dict[str, Any], start: int, end: int) -> Window:
    agg = _text(cmd, "agg") or "NONE"
    if agg not in AGGREGATIONS:
        raise BadCommand(f"agg must be one of {', '.join(AGGREGATIONS)}")
    interval = _integer(cmd, "interval", 0)
    if agg != "NONE" and interval <= 0:
        raise BadCommand("an aggregation needs interval > 0 (milliseconds per bucket)")
    limit = _integer(cmd, "limit", 0, MAX_LIMIT) or DEFAULT_LIMIT
    return Window(start, end, interval, agg, limit)


def _integer(cmd: dict[str, Any], name: str, default: int, high: int = MAX_TS) -> int:
    raw = cmd.get(name)
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= high:
        raise BadCommand(f"{name} must be a whole number from 0 to {high}, not {_shown(raw)}")
    if raw % 1:
        raise BadCommand(f"{name} must be a whole number, not {_shown(raw)}")
    return int(raw)


def _text(cmd: dict[str, Any], name: str) -> str:
    raw = cmd.get(name)
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise BadCommand(f"{name} must be a string, not {_shown(raw)}")
    return _no_nul(name, raw)


def _no_nul(name: str, text: str) -> str:
    """No id, name or key holds NUL (PostgreSQL cannot even compare one)."""
    if "\x00" in text:
        raise BadCommand(f"{name} must not contain NUL characters")
    return text


def _entity(cmd: dict[str, Any]) -> str:
    if (_text(cmd, "entityType") or "DEVICE") != "DEVICE":
        raise BadCommand("only entityType DEVICE is supported")
    entity_id = _text(cmd, "entityId")
    if not entity_id:
        raise BadCommand("entityId is missing: give the device's id")
    return entity_id


def _keys(cmd: dict[str, Any]) -> frozenset[str] | None:
    """None (every key) when absent or empty, as ThingsBoard."""
    raw = cmd.get("keys")
    if not raw:
        return None
    if isinstance(raw, str):
        keys = _no_nul("keys", raw).split(",")
        return frozenset(k.strip() for k in keys if k.strip()) or None
    if isinstance(raw, list) and all(isinstance(k, str) for k in raw):
        return frozenset(_no_nul("keys", k) for k in raw)
    raise BadCommand('keys is a comma-separated string such as "temperature,humidity"')


def _unsubscribe(cmd: dict[str, Any]) -> bool:
    raw = cmd.get("unsubscribe", False)
    if not isinstance(raw, bool):
        raise BadCommand(f"unsubscribe must be true or false, not {_shown(raw)}")
    return raw


def _shown(raw: object) -> str:
    """A refused value as the error message quotes it: short, whatever was sent."""
    text = orjson.dumps(raw).decode() if raw is not None else "null"
    return text if len(text) <= 40 else text[:37] + "..."
