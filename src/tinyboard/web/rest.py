"""The REST API for people and scripts, on ThingsBoard's paths where ThingsBoard has one:
telemetry, attributes, RPC and the client registry (devices are in web/devices.py).

Every route here needs a JWT (`auth.User`).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from tinyboard.core.ingest import attributes_from_json
from tinyboard.core.models import AGGREGATIONS, Aggregation, Device, Scope
from tinyboard.core.rpc import DeviceOffline, RpcTimeout
from tinyboard.errors import TinyboardError
from tinyboard.web.auth import User
from tinyboard.web.context import WebContext
from tinyboard.web.errors import error
from tinyboard.web.export import csv_export, time_zone
from tinyboard.web.models import (
    AttributeOut,
    ClientOut,
    RpcIn,
    TsPoint,
    as_text,
    errors,
)

router = APIRouter(tags=["REST API"], responses=errors(400, 401, 404, 409))

ScopeName = Literal["CLIENT_SCOPE", "SHARED_SCOPE", "SERVER_SCOPE"]
SCOPE_OF: dict[str, Scope] = {
    "CLIENT_SCOPE": "CLIENT",
    "SHARED_SCOPE": "SHARED",
    "SERVER_SCOPE": "SERVER",
}
MAX_TS = 2**62
"""Largest timestamp accepted in queries (SQLite integers are 64-bit)."""


def _ctx(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


async def _device(request: Request, device_id: str) -> Device:
    return await _ctx(request).store.get_device(device_id)


def _keys(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    return [k.strip() for k in raw.split(",") if k.strip()]


# -- telemetry -----------------------------------------------------------------------------
@router.get("/api/plugins/telemetry/DEVICE/{device_id}/keys/timeseries")
async def ts_keys(device_id: str, request: Request, _: User) -> list[str]:
    device = await _device(request, device_id)
    return await _ctx(request).store.ts_keys(device.key)


@router.get(
    "/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries",
    response_class=Response,
    responses={200: {"model": dict[str, list[TsPoint]]}},
)
async def timeseries(
    device_id: str,
    request: Request,
    _: User,
    keys: str | None = None,
    startTs: int | None = Query(None, ge=0, le=MAX_TS),
    endTs: int | None = Query(None, ge=0, le=MAX_TS),
    interval: int = Query(0, ge=0, le=MAX_TS),
    agg: Aggregation = "NONE",
    limit: int = Query(100, ge=1, le=100_000),
    orderBy: Literal["ASC", "DESC"] = "DESC",
    useStrictDataTypes: bool = False,
) -> Response:
    """Latest values (no `startTs`/`endTs`), or history with optional aggregation done by the
    database: `agg` over `interval`-ms buckets between `startTs` and `endTs`.

    Serialised with orjson straight from tuples: for 1,000 buckets, building a model per
    point cost more than the query's own margin."""
    store = _ctx(request).store
    device = await _device(request, device_id)
    wanted = _keys(keys)
    if startTs is None or endTs is None:
        latest = await store.latest(device.key, wanted)
        return _json(
            {
                k: [{"ts": ts, "value": as_text(v, strict=useStrictDataTypes)}]
                for k, (ts, v) in latest.items()
            }
        )
    if agg != "NONE" and interval <= 0:
        raise TinyboardError("an aggregation needs interval > 0 (milliseconds per bucket)")
    out: dict[str, list[dict[str, Any]]] = {}
    for key in wanted if wanted is not None else await store.ts_keys(device.key):
        points = await store.aggregate(
            device.key,
            key,
            start_ts=startTs,
            end_ts=endTs,
            interval=interval,
            agg=agg,
            limit=limit,
            descending=orderBy == "DESC",
        )
        if points:
            out[key] = [
                {"ts": ts, "value": as_text(v, strict=useStrictDataTypes)} for ts, v in points
            ]
    return _json(out)


def _json(document: Any) -> Response:
    return Response(orjson.dumps(document), media_type="application/json")


@router.get("/api/plugins/telemetry/DEVICE/{device_id}/export.csv")
async def export_csv(
    device_id: str,
    request: Request,
    _: User,
    keys: str | None = None,
    startTs: int = Query(0, ge=0, le=MAX_TS),
    endTs: int = Query(MAX_TS, ge=0, le=MAX_TS),
    tz: str | None = None,
) -> StreamingResponse:
    """The device's time series in [startTs, endTs) as CSV (ts, key, value, time): `time` is
    ISO 8601 in the IANA zone `tz` (default UTC)."""
    zone = time_zone(tz)
    device = await _device(request, device_id)
    return csv_export(_ctx(request).store, device, _keys(keys), startTs, endTs, zone)


# -- attributes ----------------------------------------------------------------------------
@router.get(
    "/api/plugins/telemetry/DEVICE/{device_id}/values/attributes",
    response_model=list[AttributeOut],
)
async def all_attributes(
    device_id: str, request: Request, _: User, keys: str | None = None
) -> list[AttributeOut]:
    return await _attributes(request, device_id, tuple(SCOPE_OF.values()), _keys(keys))


@router.get(
    "/api/plugins/telemetry/DEVICE/{device_id}/values/attributes/{scope}",
    response_model=list[AttributeOut],
)
async def scope_attributes(
    device_id: str, scope: ScopeName, request: Request, _: User, keys: str | None = None
) -> list[AttributeOut]:
    return await _attributes(request, device_id, (SCOPE_OF[scope],), _keys(keys))


async def _attributes(
    request: Request, device_id: str, scopes: tuple[Scope, ...], keys: list[str] | None
) -> list[AttributeOut]:
    store = _ctx(request).store
    device = await _device(request, device_id)
    out: list[AttributeOut] = []
    for scope in scopes:
        values = await store.attributes(device.key, scope, keys)
        out += [AttributeOut(key=k, value=v, lastUpdateTs=ts) for k, (ts, v) in values.items()]
    return out


@router.post(
    "/api/plugins/telemetry/DEVICE/{device_id}/attributes/{scope}", response_class=Response
)
async def save_attributes(
    device_id: str, scope: ScopeName, body: dict[str, Any], request: Request, _: User
) -> Response:
    """Write SERVER or SHARED attributes; SHARED ones are pushed to the connected device."""
    ctx = _ctx(request)
    device = await _device(request, device_id)
    if not body:
        raise TinyboardError("send a JSON object of attribute key/values")
    if scope == "CLIENT_SCOPE":
        raise TinyboardError("client attributes are written by the device, not over REST")
    values = attributes_from_json(body)
    if scope == "SHARED_SCOPE":
        await ctx.attributes.update_shared(device, values)
    else:
        await ctx.attributes.update_server(device, values)
    return Response(status_code=200)


# -- RPC -----------------------------------------------------------------------------------
# As ThingsBoard: /api/rpc (RpcV2Controller) answers 504 when the device is not connected and
# when it does not answer in time (web/errors.py maps both); the deprecated /api/plugins/rpc
# (RpcV1Controller) answers 409 and 408. Both with a JSON error body.
async def _rpc(request: Request, device_id: str, body: RpcIn, *, oneway: bool) -> Any:
    device = await _device(request, device_id)
    return await _ctx(request).rpc.call(
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


@router.post("/api/rpc/twoway/{device_id}", responses=errors(504))
async def rpc_twoway(device_id: str, body: RpcIn, request: Request, _: User) -> Any:
    """Send a command and return the device's answer; 504 not connected or no answer in time."""
    return await _rpc(request, device_id, body, oneway=False)


@router.post("/api/plugins/rpc/oneway/{device_id}", include_in_schema=False)
async def rpc_oneway_v1(device_id: str, body: RpcIn, request: Request, _: User) -> Response:
    """ThingsBoard's deprecated path: 409 not connected, 408 timeout."""
    answer = await _rpc_v1(request, device_id, body, oneway=True)
    return answer if isinstance(answer, Response) else Response(status_code=200)


@router.post("/api/plugins/rpc/twoway/{device_id}", include_in_schema=False)
async def rpc_twoway_v1(device_id: str, body: RpcIn, request: Request, _: User) -> Any:
    """ThingsBoard's deprecated path: 409 not connected, 408 timeout."""
    return await _rpc_v1(request, device_id, body, oneway=False)


# -- the client registry -------------------------------------------------------------------
@router.get("/api/clients", response_model=list[ClientOut])
async def clients(request: Request, _: User) -> list[dict[str, object]]:
    """Every live connection of every transport (course milestone 1's client list)."""
    return [c.as_dict() for c in _ctx(request).registry]


__all__ = ["AGGREGATIONS", "router"]
