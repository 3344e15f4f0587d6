"""The FastAPI application: routers, error handlers and shared state."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi_offline import FastAPIOffline

from tinyboard import __version__
from tinyboard.web import (
    alarm_rule_api,
    alarms,
    auth,
    device_api,
    devices,
    errors,
    metrics,
    ota,
    profiles,
    provision,
    rest,
    rpc,
    telemetry,
    tenants,
    webhook_status,
    ws,
    ws_api,
)
from tinyboard.web.context import WebContext
from tinyboard.web.headers import SecurityHeaders

DESCRIPTION = """\
tinyboard's HTTP API. Devices use ThingsBoard's device API under `/api/v1/{token}/...`.
People and scripts log in with `POST /api/auth/login` and send the JWT as
`X-Authorization: Bearer <token>` on every other call.
"""


def create_app(ctx: WebContext, *, home: str = "/docs") -> FastAPI:
    """The API application; `/` sends a browser to `home` (the dashboard when it is on)."""
    # FastAPIOffline: Swagger UI at /docs served from the package, not a CDN (works on a LAN).
    # No ReDoc: its page still loads a logo from cdn.redoc.ly.
    app = FastAPIOffline(
        title="tinyboard", version=__version__, description=DESCRIPTION, redoc_url=None
    )
    app.add_middleware(SecurityHeaders)
    app.state.ctx = ctx
    app.state.metrics = metrics.registry_for(ctx)
    errors.install(app)
    # routes are matched, and listed in /openapi.json, in this order
    modules = (auth, device_api, devices, profiles, ota, tenants, rest, telemetry, rpc, alarms)
    for module in (*modules, provision, alarm_rule_api, webhook_status, ws, ws_api, metrics):
        app.include_router(module.router)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(home)

    return app
