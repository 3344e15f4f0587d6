"""Server-side RPC to devices: ThingsBoard's one-way and two-way calls.

A call goes to the newest session of the device that subscribed to RPC requests. Two-way
calls wait for the device's reply (`v1/devices/me/rpc/response/{id}` over MQTT,
`POST /api/v1/{token}/rpc/{id}` over HTTP), which the device API hands to `resolve` as the
bytes that came; `call` then says what they mean, the same whichever transport carried
them. (Client-side RPC, which the device starts, is core/device_api.py's.)
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson

from tinyboard.core.sessions import SessionHub
from tinyboard.errors import TinyboardError

DEFAULT_TIMEOUT = 10.0
ANSWERED_KEPT = 8
"""Methods remembered per device that it answered (newest first), for the RPC console's
suggestions; kept in memory only, so a restart forgets them."""


class DeviceOffline(TinyboardError):
    """No connected session of the device accepts RPC."""


class RpcTimeout(TinyboardError):
    """The device did not answer a two-way call in time."""


class RpcReplyNotJson(TinyboardError):
    """The device answered a two-way call with something that is not JSON."""


class RpcService:
    def __init__(self, hub: SessionHub) -> None:
        self.hub = hub
        self._ids = itertools.count(1)
        self._pending: dict[tuple[str, int], asyncio.Future[bytes]] = {}
        self._answered: dict[str, list[str]] = {}

    async def call(
        self,
        device_id: str,
        method: str,
        params: Any = None,
        *,
        oneway: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Any:
        """Send `method(params)` to a device; return its response (two-way) or None (one-way,
        once delivered). Raises `DeviceOffline` (also when the device drops out while the
        request is on its way), `RpcTimeout` or `RpcReplyNotJson` (see `reply_value`)."""
        sessions = [s for s in self.hub.for_device(device_id) if s.wants_rpc]
        if not sessions:
            raise DeviceOffline(
                f"device {device_id} is not connected or has not subscribed to RPC requests"
            )
        request_id = next(self._ids)
        key = (device_id, request_id)
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if not oneway:
            self._pending[key] = answer
        try:
            async with asyncio.timeout(timeout):
                await sessions[-1].push_rpc(request_id, method, params)
                if oneway:
                    return None
                reply = await answer
        except TimeoutError:
            raise RpcTimeout(
                f"device {device_id} did not answer {method!r} within {timeout:g} s"
            ) from None
        except ConnectionError:  # the session ended between our look-up and its delivery
            raise DeviceOffline(
                f"device {device_id} disconnected before it took {method!r}; "
                "try again once it is connected"
            ) from None
        finally:
            self._pending.pop(key, None)
        response = reply_value(reply, device_id, method)
        if not (isinstance(response, dict) and "error" in response):
            self._remember(device_id, method)
        return response

    def answered(self, device_id: str) -> list[str]:
        """Methods the device answered without an error, newest first."""
        return list(self._answered.get(device_id, ()))

    def _remember(self, device_id: str, method: str) -> None:
        methods = [method, *(m for m in self._answered.get(device_id, ()) if m != method)]
        self._answered[device_id] = methods[:ANSWERED_KEPT]

    def resolve(self, device_id: str, request_id: int, reply: bytes) -> bool:
        """Deliver a device's reply as it came; False if nobody waits for it (late or
        unknown id)."""
        waiter = self._pending.pop((device_id, request_id), None)
        if waiter is None or waiter.done():
            return False
        waiter.set_result(reply)
        return True


def reply_value(reply: bytes, device_id: str, method: str) -> Any:
    """What a device's reply means to the caller, as ThingsBoard's
    `AbstractRpcController.reply` decides it for every transport: empty is no content
    (None), JSON is its value, anything else is `RpcReplyNotJson` (ThingsBoard: 406)."""
    if not reply:
        return None
    try:
        return orjson.loads(reply)
    except orjson.JSONDecodeError:
        shown = reply[:100].decode(errors="replace")
        raise RpcReplyNotJson(
            f"device {device_id} answered {method!r} with {shown!r}, which is not JSON; "
            "the device must reply with a JSON value (or nothing)"
        ) from None
