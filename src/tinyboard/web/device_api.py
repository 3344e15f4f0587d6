"""ThingsBoard's device HTTP API: `/api/v1/{token}/...` with its paths and status codes.

This shell frames and routes: what each request means and answers is core/device_api.py's,
shared with MQTT. Every write answers 200 only after the commit. Long polls (attribute
updates, RPC) register a `PollSession` with the session hub for as long as the request
waits. When the store fails for its own reasons (a full disk, a lost database) a write
answers 503 with `Retry-After`, not 400, which would tell the device its payload is bad.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from tinyboard.core.clock import caught_up
from tinyboard.core.device_api import AttributeRequest, rpc_request
from tinyboard.core.models import AttributeRow, Device, OtaType, Reading, Value
from tinyboard.core.ota_download import DownloadRefused
from tinyboard.core.rpc import DeviceOffline
from tinyboard.errors import RejectedDataError, StorageError, StoreFullError
from tinyboard.web.context import context_of
from tinyboard.web.errors import PayloadTooLarge, error
from tinyboard.web.models import errors
from tinyboard.web.tokens import AuthError

DEFAULT_TIMEOUT_MS = 60_000
MAX_TIMEOUT_MS = 300_000
RETRY_AFTER_SECONDS = 30
OCTET_STREAM = "application/octet-stream"
"""How long a 503 asks the device to wait before it sends the same data again."""

router = APIRouter(prefix="/api/v1/{token}", tags=["device API"], responses=errors(400, 401, 413))


class PollSession:
    """A waiting long-poll request, seen by the services as a device session."""

    def __init__(self, *, attributes: bool = False, rpc: bool = False) -> None:
        self._attributes = attributes
        self._rpc = rpc
        self.result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @property
    def wants_attributes(self) -> bool:
        return self._attributes and not self.result.done()

    @property
    def wants_rpc(self) -> bool:
        return self._rpc and not self.result.done()

    def push_attributes(self, values: dict[str, Value]) -> None:
        if not self.result.done():
            self.result.set_result(values)

    def push_rpc(self, request_id: int, method: str, params: Any) -> asyncio.Future[None]:
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.result.done():
            delivered.set_exception(DeviceOffline("the device's RPC poll has just ended"))
        else:
            self.result.set_result(rpc_request(request_id, method, params, with_id=True))
            delivered.set_result(None)
        return delivered

    def close(self) -> None:
        self.result.cancel()


async def _device(request: Request, token: str) -> Device:
    ctx = context_of(request)
    device = await ctx.directory.by_token(token)
    if device is None:
        raise AuthError("invalid device access token")
    ctx.registry.seen(device, "http")
    if not ctx.limits.allow(device.key, asyncio.get_running_loop().time()):
        raise ctx.device_api.over_limit()
    return device


async def _body(request: Request) -> bytes:
    return await bounded_body(request, context_of(request).max_payload)


async def bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    too_large = PayloadTooLarge(f"the payload is over the {limit}-byte limit")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


@router.post("/telemetry", summary="Post telemetry", response_class=Response, responses=errors(503))
async def post_telemetry(token: str, request: Request) -> Response:
    """Telemetry in any ThingsBoard shape; 200 once it is committed."""
    device = await _device(request, token)
    body = await _body(request)
    ctx = context_of(request)
    await caught_up(ctx.clocks, device.key)
    allow = partial(ctx.limits.allow_telemetry, device.key, now=asyncio.get_running_loop().time())
    return await _commit(request, ctx.device_api.telemetry(device, body, allow))


@router.post(
    "/attributes", summary="Post client attributes", response_class=Response, responses=errors(503)
)
async def post_attributes(token: str, request: Request) -> Response:
    device = await _device(request, token)
    body = await _body(request)
    ctx = context_of(request)
    await caught_up(ctx.clocks, device.key)
    return await _commit(request, [], ctx.device_api.client_attributes(device, body))


async def _commit(
    request: Request, readings: list[Reading], attributes: list[AttributeRow] | None = None
) -> Response:
    """200 once committed; 503 with Retry-After when the store, not the payload, failed."""
    try:
        await context_of(request).pipeline.commit(readings, attributes or [])
    except RejectedDataError:
        raise  # the store refused this payload's data: 400, like any bad payload
    except StoreFullError:
        return _unavailable("the server's disk is full; send the data again later")
    except StorageError:
        return _unavailable("the server could not store the data right now; send it again later")
    return Response(status_code=200)


def _unavailable(message: str) -> Response:
    response = error(503, message)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


@router.get("/attributes", summary="Get client and shared attributes")
async def get_attributes(
    token: str,
    request: Request,
    clientKeys: str | None = None,
    sharedKeys: str | None = None,
) -> dict[str, dict[str, Value]]:
    device = await _device(request, token)
    # an empty parameter is an absent one, as ThingsBoard's DeviceApiController reads them;
    # a repeated one is its values joined by commas, as Spring reads it (TBHTTPDevice sends
    # `sharedKeys=a&sharedKeys=b`)
    params = request.query_params
    client_keys = ",".join(params.getlist("clientKeys")) or None
    shared_keys = ",".join(params.getlist("sharedKeys")) or None
    asked = AttributeRequest.of(client_keys, shared_keys)
    return await context_of(request).device_api.attributes(device, asked)


@router.get(
    "/attributes/updates", summary="Wait for a shared-attribute update", responses=errors(408)
)
async def attribute_updates(
    token: str,
    request: Request,
    timeout: int = Query(DEFAULT_TIMEOUT_MS, ge=1, le=MAX_TIMEOUT_MS),
) -> Any:
    """Long poll: the next shared-attribute update, or 408 after `timeout` ms."""
    device = await _device(request, token)
    return await _poll(request, device, PollSession(attributes=True), timeout)


@router.get("/rpc", summary="Wait for a server-side RPC request", responses=errors(408))
async def rpc_poll(
    token: str,
    request: Request,
    timeout: int = Query(DEFAULT_TIMEOUT_MS, ge=1, le=MAX_TIMEOUT_MS),
) -> Any:
    """Long poll: `{"id": n, "method": ..., "params": ...}`, or 408 after `timeout` ms."""
    device = await _device(request, token)
    return await _poll(request, device, PollSession(rpc=True), timeout)


async def _poll(request: Request, device: Device, session: PollSession, timeout_ms: int) -> Any:
    hub = context_of(request).hub
    hub.add(device, session)
    try:
        return await asyncio.wait_for(asyncio.shield(session.result), timeout_ms / 1000)
    except TimeoutError:
        return error(408, f"nothing arrived within {timeout_ms} ms; poll again")
    finally:
        hub.remove(device, session)


@router.post(
    "/rpc/{request_id}", summary="Reply to a server-side RPC request", response_class=Response
)
async def rpc_reply(token: str, request_id: int, request: Request) -> Response:
    """Any body is taken (200), as ThingsBoard does; the caller of the RPC learns what it
    means (not JSON: 406)."""
    device = await _device(request, token)
    body = await _body(request)
    context_of(request).device_api.rpc_reply(device, request_id, body)
    return Response(status_code=200)


@router.post("/rpc", summary="Client-side RPC")
async def client_rpc(token: str, request: Request) -> Any:
    await _device(request, token)
    body = await _body(request)
    return context_of(request).device_api.client_rpc(body)


@router.get("/firmware", summary="Download the firmware package", response_class=Response)
async def get_firmware(
    token: str,
    request: Request,
    title: str,
    version: str,
    size: int = Query(0, ge=0),
    chunk: int = Query(0, ge=0),
) -> Response:
    """The bytes of the device's firmware package `title`/`version`: chunk `chunk` of
    `size` bytes (empty past the end), or with no `size` the whole file, streamed. 404: no
    package (or a URL one); 400: another title or version, or `size` over
    `--ota-max-chunk`."""
    return await _download(request, token, "FIRMWARE", title, version, size, chunk)


@router.get("/software", summary="Download the software package", response_class=Response)
async def get_software(
    token: str,
    request: Request,
    title: str,
    version: str,
    size: int = Query(0, ge=0),
    chunk: int = Query(0, ge=0),
) -> Response:
    """As `/firmware`, for the device's software package."""
    return await _download(request, token, "SOFTWARE", title, version, size, chunk)


async def _download(
    request: Request, token: str, type: OtaType, title: str, version: str, size: int, chunk: int
) -> Response:
    device = await _device(request, token)
    downloads = context_of(request).device_api.downloads
    if downloads is None:
        return error(404, "this server keeps no OTA packages")
    try:
        package = await downloads.for_http(device, type, title, version)
        if size == 0:
            length = {"Content-Length": str(package.data_size or 0)}
            stream = downloads.whole(package)
            return StreamingResponse(stream, headers=length, media_type=OCTET_STREAM)
        data = await downloads.chunk(downloads.checked(package, size), chunk)
    except DownloadRefused as exc:
        return error(exc.http_status, str(exc))
    return Response(data, media_type=OCTET_STREAM)
