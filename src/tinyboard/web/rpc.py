"""Server-side RPC from REST: ThingsBoard's `/api/rpc` (RpcV2Controller) and the deprecated
`/api/plugins/rpc` (RpcV1Controller, which `tb-rest-client`'s
`handle_one_way_device_rpc_request` / `handle_two_way_device_rpc_request` call).

As ThingsBoard: `/api/rpc` answers 504 when the device is not connected and when it does
not answer in time (web/errors.py maps both); `/api/plugins/rpc` answers 409 and 408. Both
with a JSON error body. A two-way reply is answered as ThingsBoard's
`AbstractRpcController.reply` does, whichever transport carried it: 200 with the device's
JSON, 200 with no body for an empty reply, 406 for one that is not JSON. Every route
needs a JWT (`auth.User`); a device id that is not a UUID is a 400, one of no device a 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from tinyboard.core.rpc import DeviceOffline, RpcTimeout
from tinyboard.web.auth import User
from tinyboard.web.context import context_of
from tinyboard.web.entities import parse_uuid
from tinyboard.web.errors import error
from tinyboard.web.models import RpcIn, errors

router = APIRouter(tags=["RPC"], responses=errors(400, 401, 404))


async def _rpc(request: Request, device_id: str, body: RpcIn, *, oneway: bool) -> Any:
    ctx = context_of(request)
    device = await ctx.store.get_device(parse_uuid(device_id, "the device id"))
    return await ctx.rpc.call(
        device.id, body.method, body.params, oneway=oneway, timeout=body.timeout / 1000
    )


async def _rpc_v1(request: Request, device_id: str, body: RpcIn, *, oneway: bool) -> Any:
    try:
        return await _rpc(request, device_id, body, oneway=oneway)
    except DeviceOffline as exc:
        return error(409, str(exc))
    except RpcTimeout as exc:
        return error(408, str(exc))


@router.post("/api/rpc/oneway/{device_id}", responses=errors(504), response_class=Response)
async def rpc_oneway(device_id: str, body: RpcIn, request: Request, _: User) -> Response:
    """Send a command; 200 once the device has it. 504 if it is not connected to receive RPC
    or did not take the command in time."""
    await _rpc(request, device_id, body, oneway=True)
    return Response(status_code=200)


def _reply(answer: Any) -> Any:
    """The device's JSON; an empty reply (None) is a 200 without a body, as ThingsBoard.
    (A JSON `null` reply is None too, so it also gets no body; ThingsBoard writes `null`.)"""
    return Response(status_code=200) if answer is None else answer


@router.post("/api/rpc/twoway/{device_id}", responses=errors(406, 504))
async def rpc_twoway(device_id: str, body: RpcIn, request: Request, _: User) -> Any:
    """Send a command and return the device's answer; 504 not connected or no answer in
    time, 406 when the answer is not JSON."""
    return _reply(await _rpc(request, device_id, body, oneway=False))


@router.post("/api/plugins/rpc/oneway/{device_id}", include_in_schema=False)
async def rpc_oneway_v1(device_id: str, body: RpcIn, request: Request, _: User) -> Response:
    """ThingsBoard's deprecated path: 409 not connected, 408 timeout."""
    answer = await _rpc_v1(request, device_id, body, oneway=True)
    return answer if isinstance(answer, Response) else Response(status_code=200)


@router.post("/api/plugins/rpc/twoway/{device_id}", include_in_schema=False)
async def rpc_twoway_v1(device_id: str, body: RpcIn, request: Request, _: User) -> Any:
    """ThingsBoard's deprecated path: 409 not connected, 408 timeout."""
    return _reply(await _rpc_v1(request, device_id, body, oneway=False))
