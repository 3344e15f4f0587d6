"""ThingsBoard's HTTP device provisioning: `POST /api/v1/provision` (DeviceApiController.
provisionDevice). The rules are core/provisioning.py's, shared with MQTT; this shell reads
the body and answers: 200 with ThingsBoard's JSON for SUCCESS, NOT_FOUND and FAILURE alike
(as ThingsBoard), 400 for a body that is no provision request, 413 past `--max-packet`, and
429 with Retry-After (and the same JSON shape) for an address over its rate limit.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from tinyboard.web.auth import peer
from tinyboard.web.context import context_of
from tinyboard.web.device_api import bounded_body
from tinyboard.web.errors import error
from tinyboard.web.models import errors

router = APIRouter(tags=["device API"], responses=errors(400, 413, 429))


class ProvisionAnswerOut(BaseModel):
    """ThingsBoard's answer: `credentialsType`/`credentialsValue` on SUCCESS, `errorMsg`
    on NOT_FOUND and FAILURE."""

    status: str
    credentialsType: str | None = None
    credentialsValue: str | None = None
    errorMsg: str | None = None


@router.post(
    "/api/v1/provision",
    summary="Provision a device",
    response_model=ProvisionAnswerOut,
    response_model_exclude_none=True,
)
async def provision(request: Request) -> JSONResponse:
    """Exchange a profile's provision key and secret for a device's access token:
    `{"deviceName": "...", "provisionDeviceKey": "...", "provisionDeviceSecret": "..."}`
    (optionally `"credentialsType": "ACCESS_TOKEN", "token": "..."` to choose it)."""
    ctx = context_of(request)
    if ctx.provisioning is None:
        return error(404, "device provisioning is not served here")
    body = await bounded_body(request, ctx.max_payload)
    answer = await ctx.provisioning.provision(body, peer(request))
    if answer.retry_after:
        headers = {"Retry-After": str(answer.retry_after)}
        return JSONResponse(answer.as_json(), status_code=429, headers=headers)
    return JSONResponse(answer.as_json())
