"""Live telemetry over WebSocket, in ThingsBoard's legacy command format.

Connect to `/api/ws/plugins/telemetry?token=JWT` and send
`{"tsSubCmds": [...], "historyCmds": [...], "attrSubCmds": [...]}`. Each subscription
answers with its current data, then with every committed change:
`{"subscriptionId": n, "errorCode": 0, "errorMsg": null, "data": {"key": [[ts, "value"]]}}`.

Strategy: the pipeline's after-commit listener (LiveHub) calls `deliver` on the event loop;
`deliver` only formats and queues. One sender task per connection drains the queue; if a
client falls `QUEUE_LIMIT` messages behind it is disconnected, so a slow browser never
slows ingestion.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from tinyboard.core.models import AGGREGATIONS, AttributeRow, Device, Reading, Scope
from tinyboard.errors import TinyboardError
from tinyboard.web.context import WebContext
from tinyboard.web.models import as_text
from tinyboard.web.rest import SCOPE_OF
from tinyboard.web.tokens import AuthError

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000
CLOSE_WAIT = 10.0
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
HISTORY_LIMIT = 100
router = APIRouter()


def _update(cmd_id: int, data: dict[str, list[list[Any]]]) -> bytes:
    return orjson.dumps({"subscriptionId": cmd_id, "errorCode": 0, "errorMsg": None, "data": data})


def _failure(cmd_id: int, message: str) -> bytes:
    return orjson.dumps({"subscriptionId": cmd_id, "errorCode": 2, "errorMsg": message, "data": {}})


@dataclass(eq=False)
class Subscription:
    """One tsSubCmd or attrSubCmd: filters a device's commits and queues updates."""

    session: Session
    cmd_id: int
    device: Device
    keys: frozenset[str] | None
    attributes: Scope | None = None  # None: telemetry

    def deliver(self, readings: list[Reading], rows: list[AttributeRow]) -> None:
        data: dict[str, list[list[Any]]] = {}
        keys = self.keys
        if self.attributes is None:
            for _, key, ts, value in readings:
                if keys is None or key in keys:
                    data.setdefault(key, []).append([ts, as_text(value)])
        else:
            for _, scope, key, ts, value in rows:
                if scope == self.attributes and (keys is None or key in keys):
                    data.setdefault(key, []).append([ts, as_text(value)])
        if data:
            self.session.send(_update(self.cmd_id, data))


class Session:
    """One WebSocket connection and its subscriptions."""

    def __init__(self, websocket: WebSocket, ctx: WebContext) -> None:
        self.websocket = websocket
        self.ctx = ctx
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)
        self.subscriptions: dict[int, Subscription] = {}
        self.too_slow = asyncio.Event()

    def send(self, message: bytes) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.too_slow.set()

    async def sender(self) -> None:
        while True:
            message = await self.queue.get()
            await self.websocket.send_text(message.decode())

    async def handle(self, raw: str) -> None:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.send(_failure(0, "commands must be JSON"))
            return
        if not isinstance(doc, dict):
            self.send(_failure(0, 'send {"tsSubCmds": [...], "historyCmds": [...]}'))
            return
        for name, handler in (
            ("tsSubCmds", self._ts_sub),
            ("historyCmds", self._history),
            ("attrSubCmds", self._attr_sub),
        ):
            for cmd in doc.get(name) or []:
                cmd_id = cmd.get("cmdId", 0) if isinstance(cmd, dict) else 0
                try:
                    if not isinstance(cmd, dict) or not isinstance(cmd_id, int):
                        raise TinyboardError("each command is an object with an integer cmdId")
                    await handler(cmd_id, cmd)
                except TinyboardError as exc:
                    self.send(_failure(cmd_id, str(exc)))

    async def _device(self, cmd: dict[str, Any]) -> Device:
        if cmd.get("entityType", "DEVICE") != "DEVICE":
            raise TinyboardError("only entityType DEVICE is supported")
        return await self.ctx.store.get_device(str(cmd.get("entityId", "")))

    def _unsubscribe(self, cmd_id: int) -> None:
        old = self.subscriptions.pop(cmd_id, None)
        if old is not None:
            self.ctx.live.unsubscribe(old.device.key, old)

    async def _ts_sub(self, cmd_id: int, cmd: dict[str, Any]) -> None:
        self._unsubscribe(cmd_id)
        if cmd.get("unsubscribe"):
            return
        device = await self._device(cmd)
        keys = _keys(cmd.get("keys"))
        sub = Subscription(self, cmd_id, device, keys)
        self.subscriptions[cmd_id] = sub
        self.ctx.live.subscribe(device.key, sub)
        if cmd.get("startTs") or cmd.get("timeWindow"):
            now = _now_ms()
            start = int(cmd.get("startTs") or now - int(cmd["timeWindow"]))
            data = await self._history_data(device, keys, start, now + 1, cmd)
        else:
            latest = await self.ctx.store.latest(device.key, sorted(keys) if keys else None)
            data = {k: [[ts, as_text(v)]] for k, (ts, v) in latest.items()}
        self.send(_update(cmd_id, data))

    async def _history(self, cmd_id: int, cmd: dict[str, Any]) -> None:
        device = await self._device(cmd)
        start, end = int(cmd.get("startTs", 0)), int(cmd.get("endTs", _now_ms() + 1))
        data = await self._history_data(device, _keys(cmd.get("keys")), start, end, cmd)
        self.send(_update(cmd_id, data))

    async def _history_data(
        self, device: Device, keys: frozenset[str] | None, start: int, end: int, cmd: dict[str, Any]
    ) -> dict[str, list[list[Any]]]:
        store = self.ctx.store
        agg = str(cmd.get("agg") or "NONE")
        if agg not in AGGREGATIONS:
            raise TinyboardError(f"agg must be one of {', '.join(AGGREGATIONS)}")
        interval = int(cmd.get("interval") or 0)
        if agg != "NONE" and interval <= 0:
            raise TinyboardError("an aggregation needs interval > 0")
        limit = int(cmd.get("limit") or HISTORY_LIMIT)
        data: dict[str, list[list[Any]]] = {}
        for key in sorted(keys) if keys else await store.ts_keys(device.key):
            points = await store.aggregate(
                device.key,
                key,
                start_ts=start,
                end_ts=end,
                interval=interval,
                agg=agg,
                limit=limit,
                descending=False,
            )
            if points:
                data[key] = [[ts, as_text(v)] for ts, v in points]
        return data

    async def _attr_sub(self, cmd_id: int, cmd: dict[str, Any]) -> None:
        self._unsubscribe(cmd_id)
        if cmd.get("unsubscribe"):
            return
        device = await self._device(cmd)
        scope = SCOPE_OF.get(str(cmd.get("scope") or "CLIENT_SCOPE"))
        if scope is None:
            raise TinyboardError("scope must be CLIENT_SCOPE, SHARED_SCOPE or SERVER_SCOPE")
        keys = _keys(cmd.get("keys"))
        sub = Subscription(self, cmd_id, device, keys, attributes=scope)
        self.subscriptions[cmd_id] = sub
        self.ctx.live.subscribe(device.key, sub)
        values = await self.ctx.store.attributes(device.key, scope, sorted(keys) if keys else None)
        self.send(_update(cmd_id, {k: [[ts, as_text(v)]] for k, (ts, v) in values.items()}))

    def close(self) -> None:
        for cmd_id in list(self.subscriptions):
            self._unsubscribe(cmd_id)


def _keys(raw: object) -> frozenset[str] | None:
    if not raw:
        return None
    if isinstance(raw, str):
        return frozenset(k.strip() for k in raw.split(",") if k.strip())
    if isinstance(raw, list):
        return frozenset(str(k) for k in raw)
    raise TinyboardError("keys is a comma-separated string")


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _drop_slow(session: Session) -> None:
    """Stop feeding a client that fell behind, then close it once its socket drains (the
    close frame queues behind what it has not read yet)."""
    log.info("WebSocket client too slow; disconnecting it")
    session.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            session.websocket.close(code=TRY_AGAIN_LATER, reason="too slow"), CLOSE_WAIT
        )


@router.websocket("/api/ws/plugins/telemetry")
async def telemetry_socket(websocket: WebSocket, token: str = "") -> None:
    ctx: WebContext = websocket.app.state.ctx
    try:
        await ctx.tokens.check(token)
    except AuthError as exc:
        await websocket.close(code=POLICY_VIOLATION, reason=str(exc)[:120])
        return
    await websocket.accept()
    session = Session(websocket, ctx)
    sender = asyncio.create_task(session.sender())
    slow = asyncio.create_task(session.too_slow.wait())
    try:
        while True:
            receive = asyncio.create_task(websocket.receive_text())
            done, _ = await asyncio.wait(
                {receive, slow, sender}, return_when=asyncio.FIRST_COMPLETED
            )
            if receive not in done:
                receive.cancel()
                if slow in done:
                    await _drop_slow(session)
                break
            await session.handle(receive.result())
    except WebSocketDisconnect:
        pass
    finally:
        session.close()
        for task in (sender, slow):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(sender, slow, return_exceptions=True)
