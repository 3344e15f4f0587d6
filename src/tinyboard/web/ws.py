"""Live telemetry over WebSocket, in ThingsBoard's legacy command format.

Connect to `/api/ws/plugins/telemetry?token=JWT` and send
`{"tsSubCmds": [...], "historyCmds": [...], "attrSubCmds": [...]}`. Each subscription
answers with its current data, then with every committed change:
`{"subscriptionId": n, "errorCode": 0, "errorMsg": null, "data": {"key": [[ts, "value"]]},
"latestValues": {"key": ts}}`. A command that cannot be read (see `ws_commands`) gets
ThingsBoard's error reply instead. `ws_api` serves `/api/ws` with this same session.

Strategy: the pipeline's after-commit listener (LiveHub) calls `deliver` on the event loop;
`deliver` only formats and queues. One sender task per connection writes the queue out; a
client that lets `MAX_PENDING_BYTES` (or `QUEUE_LIMIT` updates) pile up is disconnected, so
a browser that stops reading costs bounded memory and never slows ingestion. Every
`TOKEN_RECHECK_SECONDS` the session's token is checked again, so a password change or a
deleted user ends the socket as it ends the user's REST calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from fastapi import APIRouter, WebSocket

from tinyboard.core.models import AttributeRow, Device, Reading, Scope, TsValue
from tinyboard.errors import NotFoundError, StorageError, TinyboardError
from tinyboard.storage.base import Store
from tinyboard.web.context import WebContext, context_of
from tinyboard.web.models import as_text
from tinyboard.web.tokens import AuthError
from tinyboard.web.ws_commands import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    NO_ERROR,
    AttrSubscribe,
    BadCommand,
    HistoryRequest,
    Refused,
    TsSubscribe,
    Unsubscribe,
    Window,
    parse_message,
)

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000
"""Updates that may wait for one client (ThingsBoard's max_queue_per_ws_session)."""
MAX_PENDING_BYTES = 4 * 1024 * 1024
"""Bytes of updates that may wait behind the one being written to a client. A live
dashboard stays far below (it reads as fast as the server writes); a client that stops
reading is dropped once this much has piled up, so it holds at most this plus one answer
and the socket's write buffer."""
MAX_SUBSCRIPTIONS = 1000
"""Subscriptions one connection may hold. Each costs memory and work on every commit of its
device; a dashboard uses tens, so more means a runaway client (ThingsBoard caps these per
tenant and user)."""
CLOSE_WAIT = 10.0
TOKEN_RECHECK_SECONDS = 5.0
"""How often an open socket checks that its token still stands (one user look-up)."""
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
router = APIRouter()

Data = dict[str, list[list[Any]]]


def _update(cmd_id: int, data: Data) -> bytes:
    """ThingsBoard's TelemetrySubscriptionUpdate: `latestValues` is the newest ts per key."""
    latest = {key: max(point[0] for point in points) for key, points in data.items() if points}
    return orjson.dumps(
        {
            "subscriptionId": cmd_id,
            "errorCode": NO_ERROR,
            "errorMsg": None,
            "data": data,
            "latestValues": latest,
        }
    )


def failure(cmd_id: int, code: int, message: str) -> bytes:
    """ThingsBoard's error reply (`sendError`): every command type answers errors so."""
    return orjson.dumps(
        {
            "subscriptionId": cmd_id,
            "errorCode": code,
            "errorMsg": message,
            "data": {},
            "latestValues": {},
        }
    )


class Follower:
    """What a subscribing command follows. The session registers it on the LiveHub for each
    of `device_keys` (each counts against `MAX_SUBSCRIPTIONS`), and calls `stop` when the
    subscription ends, to release anything else it holds (alarm listeners, tasks)."""

    session: Session
    cmd_id: int
    device_keys: tuple[int, ...] = ()

    def deliver(self, readings: list[Reading], rows: list[AttributeRow]) -> None:
        """What one commit stored for one of `device_keys`. Must not block."""

    def stop(self) -> None:
        """The subscription ended."""

    @property
    def cost(self) -> int:
        return max(1, len(self.device_keys))


@dataclass(eq=False)
class Subscription(Follower):
    """One tsSubCmd or attrSubCmd: filters a device's commits and queues updates."""

    session: Session
    cmd_id: int
    device: Device
    keys: frozenset[str] | None
    scopes: tuple[Scope, ...] = ()  # empty: telemetry

    def __post_init__(self) -> None:
        self.device_keys = (self.device.key,)

    def deliver(self, readings: list[Reading], rows: list[AttributeRow]) -> None:
        data: Data = {}
        keys = self.keys
        if not self.scopes:
            for _, key, ts, value in readings:
                if keys is None or key in keys:
                    data.setdefault(key, []).append([ts, as_text(value)])
        else:
            for _, scope, key, ts, value in rows:
                if scope in self.scopes and (keys is None or key in keys):
                    data.setdefault(key, []).append([ts, as_text(value)])
        if data:
            self.session.send(_update(self.cmd_id, data))


class Session:
    """One WebSocket connection: its subscriptions and the updates waiting to be written."""

    def __init__(self, websocket: WebSocket, ctx: WebContext) -> None:
        self.websocket = websocket
        self.ctx = ctx
        self.pending: deque[bytes] = deque()
        """Updates waiting behind the one the sender is writing."""
        self.pending_bytes = 0
        self.subscriptions: dict[int, Follower] = {}
        self.following = 0
        """The LiveHub registrations of `subscriptions`, bounded by `MAX_SUBSCRIPTIONS`."""
        self.too_slow = asyncio.Event()
        self._ready = asyncio.Event()
        self.lock = asyncio.Lock()
        """Held while a command is answered: work the session starts itself (a dynamic
        page's refresh) takes it too, so it never interleaves with a command."""

    def send(self, message: bytes) -> None:
        """Queue a message; past the limits, flag the client as too slow instead."""
        if self.too_slow.is_set():
            return
        if self.pending and (
            len(self.pending) >= QUEUE_LIMIT
            or self.pending_bytes + len(message) > MAX_PENDING_BYTES
        ):
            self.too_slow.set()
            return
        self.pending.append(message)
        self.pending_bytes += len(message)
        self._ready.set()

    async def sender(self) -> None:
        while True:
            while not self.pending:
                self._ready.clear()
                await self._ready.wait()
            message = self.pending.popleft()
            self.pending_bytes -= len(message)
            await self.websocket.send_text(message.decode())

    async def handle(self, message: Mapping[str, Any]) -> None:
        """Answer every command of one message, in order."""
        await self.run(parse_message(message, now_ms()))

    HANDLERS: ClassVar[dict[type, Callable[[Any, Any], Awaitable[None]]]] = {}
    """Command type → the method that answers it (filled in below the class)."""

    async def run(self, commands: Sequence[object]) -> None:
        for command in commands:
            if isinstance(command, Refused):
                self.send(failure(command.cmd_id, BAD_REQUEST, command.reason))
                continue
            try:
                async with self.lock:
                    await self.HANDLERS[type(command)](self, command)
            except TinyboardError as exc:
                self.send(failure(getattr(command, "cmd_id", 0), error_code(exc), str(exc)))

    def follow(self, follower: Follower) -> None:
        """Start a subscription under its cmdId (end the one there before first); refused
        past `MAX_SUBSCRIPTIONS` registrations."""
        if self.following + follower.cost > MAX_SUBSCRIPTIONS:
            raise BadCommand(
                f"a connection holds at most {MAX_SUBSCRIPTIONS} subscriptions (each device "
                "followed counts one): unsubscribe some, ask for smaller pages or open "
                "another connection"
            )
        self.subscriptions[follower.cmd_id] = follower
        self.following += follower.cost
        for key in follower.device_keys:
            self.ctx.live.subscribe(key, follower)

    def _subscribe(
        self, cmd_id: int, device: Device, keys: frozenset[str] | None, scopes: tuple[Scope, ...]
    ) -> None:
        self.follow(Subscription(self, cmd_id, device, keys, scopes))

    def _unsubscribe(self, cmd_id: int) -> None:
        old = self.subscriptions.pop(cmd_id, None)
        if old is not None:
            self.following -= old.cost
            for key in old.device_keys:
                self.ctx.live.unsubscribe(key, old)
            old.stop()

    async def _answer(self, cmd_id: int, query: Awaitable[Data]) -> None:
        """Send a new subscription's first data; a failed query ends the subscription."""
        try:
            data = await query
        except BaseException:
            self._unsubscribe(cmd_id)
            raise
        self.send(_update(cmd_id, data))

    async def _on_unsubscribe(self, cmd: Unsubscribe) -> None:
        self._unsubscribe(cmd.cmd_id)

    async def _on_ts_subscribe(self, cmd: TsSubscribe) -> None:
        self._unsubscribe(cmd.cmd_id)
        device = await self.ctx.store.get_device(cmd.entity_id)
        self._subscribe(cmd.cmd_id, device, cmd.keys, ())
        if cmd.window is None:
            await self._answer(cmd.cmd_id, self._latest(device, cmd.keys))
        else:
            await self._answer(cmd.cmd_id, self._history_data(device, cmd.keys, cmd.window))

    async def _on_history(self, cmd: HistoryRequest) -> None:
        device = await self.ctx.store.get_device(cmd.entity_id)
        self.send(_update(cmd.cmd_id, await self._history_data(device, cmd.keys, cmd.window)))

    async def _on_attr_subscribe(self, cmd: AttrSubscribe) -> None:
        self._unsubscribe(cmd.cmd_id)
        device = await self.ctx.store.get_device(cmd.entity_id)
        self._subscribe(cmd.cmd_id, device, cmd.keys, cmd.scopes)
        await self._answer(cmd.cmd_id, self._attributes(device, cmd.keys, cmd.scopes))

    async def _latest(self, device: Device, keys: frozenset[str] | None) -> Data:
        latest = await self.ctx.store.latest(device.key, sorted(keys) if keys else None)
        return {k: [[ts, as_text(v)]] for k, (ts, v) in latest.items()}

    async def _attributes(
        self, device: Device, keys: frozenset[str] | None, scopes: tuple[Scope, ...]
    ) -> Data:
        """Each key's value in `scopes` (the newest when several scopes hold the key)."""
        data: Data = {}
        for scope in scopes:
            values = await self.ctx.store.attributes(
                device.key, scope, sorted(keys) if keys else None
            )
            for k, (ts, v) in values.items():
                if k not in data or data[k][0][0] < ts:
                    data[k] = [[ts, as_text(v)]]
        return data

    async def _history_data(
        self, device: Device, keys: frozenset[str] | None, window: Window
    ) -> Data:
        store, budget = self.ctx.store, PointBudget(self.ctx.ws_max_points)
        data: Data = {}
        for key in sorted(keys) if keys else await store.ts_keys(device.key):
            points = await window_points(store, device.key, key, window, budget, descending=False)
            if points:
                data[key] = [[ts, as_text(v)] for ts, v in points]
        return data

    def close(self) -> None:
        """End every subscription and free what was waiting to be sent."""
        for cmd_id in list(self.subscriptions):
            self._unsubscribe(cmd_id)
        self.pending.clear()
        self.pending_bytes = 0


Session.HANDLERS = {
    Unsubscribe: Session._on_unsubscribe,
    TsSubscribe: Session._on_ts_subscribe,
    HistoryRequest: Session._on_history,
    AttrSubscribe: Session._on_attr_subscribe,
}


class PointBudget:
    """What is left of the points one command's answer may hold (`--ws-max-points`, over
    all its keys and devices). A history answer is built whole before it is sent, so this
    bounds the memory and time one command can cost; each store call reads at most one
    point past it, so refusing a command costs no more than the limit. Over it, the command
    is refused with BAD_REQUEST, never answered in part."""

    def __init__(self, total: int) -> None:
        self.total = self.left = total

    def limit(self, wanted: int) -> int:
        return min(wanted, self.left + 1)

    def spend(self, points: int) -> None:
        self.left -= points
        if self.left < 0:
            raise BadCommand(
                f"this command's answer would hold more than {self.total} points: ask for "
                "fewer keys or devices, a shorter time window, a smaller limit or a coarser "
                "aggregation interval"
            )


async def window_points(
    store: Store, device: int, key: str, window: Window, budget: PointBudget, *, descending: bool
) -> list[TsValue]:
    """The points (or buckets) of one key in `window`, charged to `budget`: the one store call
    every WebSocket history answer makes."""
    points = await store.aggregate(
        device,
        key,
        start_ts=window.start,
        end_ts=window.end,
        interval=window.interval,
        agg=window.agg,
        limit=budget.limit(window.limit),
        descending=descending,
    )
    budget.spend(len(points))
    return points


def error_code(exc: TinyboardError) -> int:
    """A missing device is the client's mistake; a failing store is ours."""
    if isinstance(exc, StorageError) and not isinstance(exc, NotFoundError):
        log.error("WebSocket command failed in the store: %s", exc)
        return INTERNAL_ERROR
    return BAD_REQUEST


def now_ms() -> int:
    return int(time.time() * 1000)


async def _drop_slow(session: Session, sender: asyncio.Task[None]) -> None:
    """Stop feeding a client that fell behind, then close it once its socket drains (the
    close frame queues behind what it has not read yet)."""
    websocket = session.websocket
    log.warning(
        "WebSocket client %s stopped reading: %d updates (%d bytes) waiting, over the limit "
        "of %d updates or %d bytes; disconnecting it (close code %d)",
        websocket.client,
        len(session.pending),
        session.pending_bytes,
        QUEUE_LIMIT,
        MAX_PENDING_BYTES,
        TRY_AGAIN_LATER,
    )
    sender.cancel()
    session.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=TRY_AGAIN_LATER, reason="too slow"), CLOSE_WAIT)


async def _revoked(ctx: WebContext, token: str) -> str:
    """Wait until `token` no longer stands (password changed, user gone, expired); why."""
    while True:
        await asyncio.sleep(TOKEN_RECHECK_SECONDS)
        try:
            await ctx.tokens.check(token)
        except AuthError as exc:
            return str(exc)
        except TinyboardError as exc:  # the store failing is no reason to drop a viewer
            log.debug("could not recheck a WebSocket token: %s", exc)


async def _serve(session: Session, *tasks: asyncio.Task[Any]) -> None:
    """Handle messages until the client leaves, the sender fails, the client is too slow
    or its token no longer stands."""
    websocket = session.websocket
    sender, slow, revoked = tasks
    while True:
        receive = asyncio.create_task(websocket.receive())
        done, _ = await asyncio.wait({receive, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        if receive not in done:
            receive.cancel()
            if slow in done:
                await _drop_slow(session, sender)
            elif revoked in done:
                await close_socket(websocket, POLICY_VIOLATION, revoked.result())
            return
        message = receive.result()
        if message["type"] == "websocket.disconnect":
            return
        await session.handle(message)


async def close_socket(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with a reason the client can show (a close reason is at most 123 bytes)."""
    short = reason.encode()[:120].decode(errors="ignore")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=code, reason=short), CLOSE_WAIT)


async def serve_session(session: Session, token: str) -> None:
    """Run an accepted socket whose `token` was checked, until it ends; then free it all."""
    tasks = (
        asyncio.create_task(session.sender()),
        asyncio.create_task(session.too_slow.wait()),
        asyncio.create_task(_revoked(session.ctx, token)),
    )
    try:
        await _serve(session, *tasks)
    finally:
        session.close()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)


@router.websocket("/api/ws/plugins/telemetry")
async def telemetry_socket(websocket: WebSocket, token: str = "") -> None:
    ctx = context_of(websocket)
    try:
        await ctx.tokens.check(token)
    except AuthError as exc:
        await websocket.close(code=POLICY_VIOLATION, reason=str(exc)[:120])
        return
    await websocket.accept()
    await serve_session(Session(websocket, ctx), token)
