"""ThingsBoard's telemetry controller: a device's time series and attributes, read, saved
and deleted on `/api/plugins/telemetry/...` with ThingsBoard's paths, parameters and status
codes, so `tb-rest-client` scripts run unchanged.

Every route needs a JWT (`auth.User`). Ids are checked before anything is looked up: not a
UUID is a 400, an id of no device a 404. tinyboard keeps telemetry and attributes of devices
only, so any other `entityType` is a 404 that says so. Telemetry saved here takes the
device's own path (ingest, the per-device clock, the pipeline), so live views, alarms and
latest values follow it; shared attributes go through `AttributeService`, which pushes them
to the device on every transport.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import StreamingResponse

from tinyboard.core.clock import caught_up
from tinyboard.core.ingest import attributes_from_json, telemetry_from_json
from tinyboard.core.models import Aggregation, Device, Scope
from tinyboard.errors import NotFoundError, PayloadError
from tinyboard.web.auth import User
from tinyboard.web.context import context_of
from tinyboard.web.devices import device_by_id
from tinyboard.web.export import csv_export, time_zone
from tinyboard.web.models import AttributeOut, TsPoint, as_text, errors

PREFIX = "/api/plugins/telemetry"
ENTITY = PREFIX + "/{entityType}/{entityId}"
router = APIRouter(tags=["telemetry"], responses=errors(400, 401, 404))

ScopeName = Literal["CLIENT_SCOPE", "SHARED_SCOPE", "SERVER_SCOPE"]
SCOPE_OF: dict[str, Scope] = {
    "CLIENT_SCOPE": "CLIENT",
    "SERVER_SCOPE": "SERVER",
    "SHARED_SCOPE": "SHARED",
}
"""ThingsBoard's scope names, in its order (AttributeScope.values())."""
IntervalType = Literal["MILLISECONDS", "WEEK", "WEEK_ISO", "MONTH", "QUARTER"]
MAX_TS = 2**62
"""Largest timestamp accepted in queries (SQLite integers are 64-bit)."""
MAX_POINTS = 100_000
"""Most points per key one query answers."""


async def _device(request: Request, entity_id: str, entity_type: str = "DEVICE") -> Device:
    """The device an `{entityType}/{entityId}` pair names."""
    if entity_type != "DEVICE":
        raise NotFoundError(
            f"tinyboard has no {entity_type} entities: it keeps telemetry and attributes of "
            "devices only (entityType DEVICE)"
        )
    return await device_by_id(context_of(request).store, entity_id)


def _keys(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    return [k.strip() for k in raw.split(",") if k.strip()]


def _required_keys(raw: str) -> list[str]:
    keys = _keys(raw)
    if not keys:
        raise PayloadError(f"empty keys: {raw!r}; name them as keys=a,b")
    return keys


def _json(document: Any) -> Response:
    return Response(orjson.dumps(document), media_type="application/json")


# -- reading -------------------------------------------------------------------------------
@router.get(ENTITY + "/keys/timeseries")
async def ts_keys(entityType: str, entityId: str, request: Request, _: User) -> list[str]:
    """Keys that have a latest value (ThingsBoard's getTimeseriesKeys)."""
    device = await _device(request, entityId, entityType)
    return await context_of(request).store.ts_keys(device.key)


@router.get(ENTITY + "/keys/attributes")
async def attribute_keys(entityType: str, entityId: str, request: Request, _: User) -> list[str]:
    """Attribute keys of every scope, scope by scope."""
    return [a.key for a in await _attributes(request, entityType, entityId, None, None)]


@router.get(ENTITY + "/keys/attributes/{scope}")
async def scope_attribute_keys(
    entityType: str, entityId: str, scope: ScopeName, request: Request, _: User
) -> list[str]:
    return [a.key for a in await _attributes(request, entityType, entityId, scope, None)]


@router.get(
    ENTITY + "/values/timeseries",
    response_class=Response,
    responses={200: {"model": dict[str, list[TsPoint]]}},
)
async def timeseries(
    entityType: str,
    entityId: str,
    request: Request,
    _: User,
    keys: str | None = None,
    startTs: int | None = Query(None, ge=0, le=MAX_TS),
    endTs: int | None = Query(None, ge=0, le=MAX_TS),
    interval: int = Query(0, ge=0, le=MAX_TS),
    intervalType: IntervalType | None = None,
    timeZone: str | None = None,
    agg: Aggregation = "NONE",
    limit: int = Query(100, ge=1, le=MAX_POINTS),
    orderBy: Literal["ASC", "DESC"] = "DESC",
    useStrictDataTypes: bool = False,
) -> Response:
    """Latest values (no `startTs`/`endTs`), or history: `agg` over `interval`-ms buckets
    between `startTs` and `endTs`, raw points (at most `limit`) when `agg` is NONE or
    `interval` 0, as ThingsBoard. Calendar buckets (`intervalType` WEEK, MONTH, ...) are not
    offered; `timeZone` only matters for those.

    Serialised with orjson straight from tuples: for 1,000 buckets, building a model per
    point cost more than the query's own margin."""
    if intervalType not in (None, "MILLISECONDS"):
        raise PayloadError(
            f"tinyboard has no calendar buckets (intervalType {intervalType}): aggregate with "
            "intervalType=MILLISECONDS and an interval in milliseconds"
        )
    device = await _device(request, entityId, entityType)
    wanted = _keys(keys)
    if startTs is None or endTs is None:
        return _json(await _latest(request, device, wanted, useStrictDataTypes))
    if interval == 0:
        agg = "NONE"
    elif agg != "NONE":  # ThingsBoard's limit counts raw points only: every bucket is answered
        limit = max(1, min(math.ceil((endTs - startTs) / interval), MAX_POINTS))
    query = History(startTs, endTs, interval, agg, limit, orderBy == "DESC")
    return _json(await _history(request, device, wanted, query, useStrictDataTypes))


@dataclass(frozen=True, slots=True)
class History:
    start_ts: int
    end_ts: int
    interval: int
    agg: Aggregation
    limit: int
    descending: bool


async def _history(
    request: Request, device: Device, keys: list[str] | None, query: History, strict: bool
) -> dict[str, list[dict[str, Any]]]:
    """Points (or buckets) of each key; keys without any are left out, as ThingsBoard."""
    store = context_of(request).store
    out: dict[str, list[dict[str, Any]]] = {}
    for key in keys if keys is not None else await store.ts_keys(device.key):
        points = await store.aggregate(
            device.key,
            key,
            start_ts=query.start_ts,
            end_ts=query.end_ts,
            interval=query.interval,
            agg=query.agg,
            limit=query.limit,
            descending=query.descending,
        )
        if points:
            out[key] = [{"ts": ts, "value": as_text(v, strict=strict)} for ts, v in points]
    return out


async def _latest(
    request: Request, device: Device, keys: list[str] | None, strict: bool
) -> dict[str, list[dict[str, Any]]]:
    """Latest values; a named key with none is answered `{"ts": now, "value": null}`, as
    ThingsBoard does (scripts index `[key][0]["value"]` without checking)."""
    latest = await context_of(request).store.latest(device.key, keys)
    out = {k: [{"ts": ts, "value": as_text(v, strict=strict)}] for k, (ts, v) in latest.items()}
    if keys is None:
        return out
    now = int(time.time() * 1000)
    return {k: out.get(k, [{"ts": now, "value": None}]) for k in dict.fromkeys(keys)}


@router.get(PREFIX + "/DEVICE/{entityId}/export.csv")
async def export_csv(
    entityId: str,
    request: Request,
    _: User,
    keys: str | None = None,
    startTs: int = Query(0, ge=0, le=MAX_TS),
    endTs: int = Query(MAX_TS, ge=0, le=MAX_TS),
    tz: str | None = None,
) -> StreamingResponse:
    """The device's time series in [startTs, endTs) as CSV (ts, key, value, time): `time` is
    ISO 8601 in the IANA zone `tz` (default UTC). tinyboard's own, not ThingsBoard's."""
    zone = time_zone(tz)
    device = await _device(request, entityId)
    return csv_export(context_of(request).store, device, _keys(keys), startTs, endTs, zone)


@router.get(ENTITY + "/values/attributes", response_model=list[AttributeOut])
async def all_attributes(
    entityType: str, entityId: str, request: Request, _: User, keys: str | None = None
) -> list[AttributeOut]:
    return await _attributes(request, entityType, entityId, None, _keys(keys))


@router.get(ENTITY + "/values/attributes/{scope}", response_model=list[AttributeOut])
async def scope_attributes(
    entityType: str,
    entityId: str,
    scope: ScopeName,
    request: Request,
    _: User,
    keys: str | None = None,
) -> list[AttributeOut]:
    return await _attributes(request, entityType, entityId, scope, _keys(keys))


async def _attributes(
    request: Request,
    entity_type: str,
    entity_id: str,
    scope: ScopeName | None,
    keys: list[str] | None,
) -> list[AttributeOut]:
    """Attributes of one scope, or of every scope (None) in ThingsBoard's order."""
    device = await _device(request, entity_id, entity_type)
    store = context_of(request).store
    out: list[AttributeOut] = []
    for name, stored in SCOPE_OF.items():
        if scope is None or scope == name:
            values = await store.attributes(device.key, stored, keys)
            out += [AttributeOut(key=k, value=v, lastUpdateTs=ts) for k, (ts, v) in values.items()]
    return out


# -- saving --------------------------------------------------------------------------------
AttributesBody = Annotated[dict[str, Any], Body(description="attribute key/values")]


@router.post(PREFIX + "/{deviceId}/{scope}", response_class=Response)
async def save_device_attributes(
    deviceId: str, scope: ScopeName, body: AttributesBody, request: Request, _: User
) -> Response:
    """ThingsBoard's saveDeviceAttributes (the path its own examples use)."""
    return await _save_attributes(request, await _device(request, deviceId), scope, body)


@router.post(ENTITY + "/{scope}", response_class=Response)
async def save_attributes_v1(
    entityType: str,
    entityId: str,
    scope: ScopeName,
    body: AttributesBody,
    request: Request,
    _: User,
) -> Response:
    device = await _device(request, entityId, entityType)
    return await _save_attributes(request, device, scope, body)


@router.post(ENTITY + "/attributes/{scope}", response_class=Response)
async def save_attributes(
    entityType: str,
    entityId: str,
    scope: ScopeName,
    body: AttributesBody,
    request: Request,
    _: User,
) -> Response:
    """Write SERVER or SHARED attributes; SHARED ones are pushed to the connected device."""
    device = await _device(request, entityId, entityType)
    return await _save_attributes(request, device, scope, body)


async def _save_attributes(
    request: Request, device: Device, scope: ScopeName, body: dict[str, Any]
) -> Response:
    if scope == "CLIENT_SCOPE":
        raise PayloadError(
            "client attributes are written by the device, not over REST: "
            "save to SERVER_SCOPE or SHARED_SCOPE"
        )
    values = attributes_from_json(body)
    if not values:
        raise PayloadError('no attributes in the request body: send {"key": value, ...}')
    service = context_of(request).attributes
    if scope == "SHARED_SCOPE":
        await service.update_shared(device, values)
    else:
        await service.update_server(device, values)
    return Response(status_code=200)


TelemetryBody = Annotated[
    Any,
    Body(description='{"key": value}, {"ts": ms, "values": {...}}, or an array of those'),
]


@router.post(ENTITY + "/timeseries/{scope}", response_class=Response, responses=errors(503))
async def save_telemetry(
    entityType: str, entityId: str, scope: str, body: TelemetryBody, request: Request, _: User
) -> Response:
    """Save telemetry as the device would send it; readings without `ts` get the device's
    server time. `scope` is not used (ThingsBoard's clients send ANY). 200 once committed."""
    device = await _device(request, entityId, entityType)
    ctx = context_of(request)
    await caught_up(ctx.clocks, device.key)
    readings = telemetry_from_json(body, device.key, ctx.clocks)
    if not readings:
        raise PayloadError('no time series in the request body: send {"key": value, ...}')
    await ctx.pipeline.commit(readings, [])
    return Response(status_code=200)


@router.post(ENTITY + "/timeseries/{scope}/{ttl}", response_class=Response, responses=errors(503))
async def save_telemetry_with_ttl(
    entityType: str,
    entityId: str,
    scope: str,
    ttl: int,
    body: TelemetryBody,
    request: Request,
    user: User,
) -> Response:
    """As without `ttl`: tinyboard keeps every point for `--retention-days` (ThingsBoard,
    too, honours a TTL only on Cassandra)."""
    return await save_telemetry(entityType, entityId, scope, body, request, user)


# -- deleting ------------------------------------------------------------------------------
@router.delete(ENTITY + "/timeseries/delete", response_class=Response)
async def delete_timeseries(
    entityType: str,
    entityId: str,
    request: Request,
    _: User,
    keys: str,
    deleteAllDataForKeys: bool = False,
    startTs: int | None = Query(None, ge=0, le=MAX_TS),
    endTs: int | None = Query(None, ge=0, le=MAX_TS),
    deleteLatest: bool = True,
    rewriteLatestIfDeleted: bool = False,
) -> Response:
    """Delete the points of `keys` in [startTs, endTs), or all of them. The latest value is
    deleted when it lies in the range (unless `deleteLatest` is false) and then replaced by
    the newest point left if `rewriteLatestIfDeleted`."""
    wanted = _required_keys(keys)
    if deleteAllDataForKeys:
        startTs, endTs = 0, MAX_TS
    elif startTs is None or endTs is None:
        raise PayloadError(
            "give startTs and endTs (milliseconds) of the range to delete, "
            "or deleteAllDataForKeys=true"
        )
    device = await _device(request, entityId, entityType)
    await context_of(request).store.delete_timeseries(
        device.key,
        wanted,
        start_ts=startTs,
        end_ts=endTs,
        delete_latest=deleteLatest,
        rewrite_latest=rewriteLatestIfDeleted,
    )
    return Response(status_code=200)


@router.delete(PREFIX + "/{deviceId}/{scope}", response_class=Response)
async def delete_device_attributes(
    deviceId: str, scope: ScopeName, keys: str, request: Request, _: User
) -> Response:
    """Delete attributes; deleted SHARED ones are announced to the device."""
    return await _delete_attributes(request, await _device(request, deviceId), scope, keys)


@router.delete(ENTITY + "/{scope}", response_class=Response)
async def delete_attributes(
    entityType: str, entityId: str, scope: ScopeName, keys: str, request: Request, _: User
) -> Response:
    device = await _device(request, entityId, entityType)
    return await _delete_attributes(request, device, scope, keys)


async def _delete_attributes(
    request: Request, device: Device, scope: ScopeName, keys: str
) -> Response:
    await context_of(request).attributes.delete(device, SCOPE_OF[scope], _required_keys(keys))
    return Response(status_code=200)
