"""Server-side RPC to devices (ThingsBoard's one-way and two-way calls) and the answers to
device-initiated (client-side) RPC.

A call goes to the newest session of the device that subscribed to RPC requests. Two-way
calls wait for the device's response on `v1/devices/me/rpc/response/{id}` (or its HTTP
equivalent), which the transport hands to `resolve`.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class RpcRequest:
    method: str
    params: Any


class RpcService:
    def __init__(self, hub: SessionHub) -> None:
        self.hub = hub
        self._ids = itertools.count(1)
        self._pending: dict[tuple[str, int], asyncio.Future[Any]] = {}
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
        request is on its way) or `RpcTimeout`."""
        sessions = [s for s in self.hub.for_device(device_id) if s.wants_rpc]
        if not sessions:
            raise DeviceOffline(
                f"device {device_id} is not connected or has not subscribed to RPC requests"
            )
        request_id = next(self._ids)
        key = (device_id, request_id)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not oneway:
            self._pending[key] = answer
        try:
            async with asyncio.timeout(timeout):
                await sessions[-1].push_rpc(request_id, method, params)
                if oneway:
                    return None
                response = await answer
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
        if not (isinstance(response, dict) and "error" in response):
            self._remember(device_id, method)
        return response

    def answered(self, device_id: str) -> list[str]:
        """Methods the device answered without an error, newest first."""
        return list(self._answered.get(device_id, ()))

    def _remember(self, device_id: str, method: str) -> None:
        methods = [method, *(m for m in self._answered.get(device_id, ()) if m != method)]
        self._answered[device_id] = methods[:ANSWERED_KEPT]

    def resolve(self, device_id: str, request_id: int, response: Any) -> bool:
        """Deliver a device's response; False if nobody waits for it (late or unknown id)."""
        waiter = self._pending.pop((device_id, request_id), None)
        if waiter is None or waiter.done():
            return False
        waiter.set_result(response)
        return True


def answer_client_rpc(request: RpcRequest, session_limits: dict[str, Any]) -> dict[str, Any]:
    """The reply to a device-initiated RPC. Only built-in methods are served;
    `getSessionLimits` answers the limits that are enforced (`DeviceLimits.session_limits`)."""
    if request.method == "getSessionLimits":
        return session_limits
    return {"error": f"unsupported method {request.method!r}: tinyboard serves getSessionLimits"}
