"""Mounting the dashboard on the FastAPI app, and what its pages read while they run."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import RedirectResponse

from tinyboard.dashboard.session import HOME_PATH, LOGIN_PATH, Sessions, logout
from tinyboard.web.context import WebContext
from tinyboard.web.export import csv_export, time_zone
from tinyboard.web.telemetry import MAX_TS

MOUNT = "/ui"


@dataclass(frozen=True, slots=True)
class Dashboard:
    ctx: WebContext
    sessions: Sessions
    ports: dict[str, int]
    """Listening ports by setting name, for the connection snippets."""
    bind: str
    """The address the listeners are bound to: which hosts a board can use."""


_current: Dashboard | None = None


def current() -> Dashboard:
    if _current is None:
        raise RuntimeError("the dashboard is not mounted")
    return _current


def mount(app: FastAPI, ctx: WebContext, ports: dict[str, int], bind: str) -> None:
    """Add the dashboard to `app` at /ui. Its own HTTP routes go first: NiceGUI's mount
    would shadow anything under /ui registered after it."""
    global _current  # noqa: PLW0603 - NiceGUI itself is one per process
    if _current is not None:
        raise RuntimeError("this process already serves a dashboard (NiceGUI allows one)")
    sessions = Sessions(ctx.tokens)
    _current = Dashboard(ctx, sessions, ports, bind)

    @app.get(MOUNT + "/session", include_in_schema=False)
    async def session(
        ticket: str = "", next_path: str = Query(HOME_PATH, alias="next")
    ) -> Response:
        return sessions.redeem(ticket, next_path)

    @app.get(MOUNT + "/logout", include_in_schema=False)
    async def sign_out() -> Response:
        return logout()

    @app.get(MOUNT + "/export/{device_id}.csv", include_in_schema=False)
    async def export(
        device_id: str,
        request: Request,
        startTs: int = Query(0, ge=0, le=MAX_TS),
        endTs: int = Query(MAX_TS, ge=0, le=MAX_TS),
        tz: str | None = None,
    ) -> Response:
        if await sessions.user(request) is None:
            return RedirectResponse(LOGIN_PATH, status_code=303)
        zone = time_zone(tz)
        device = await ctx.store.get_device(device_id)
        return csv_export(ctx.store, device, None, startTs, endTs, zone)

    from nicegui import ui

    from tinyboard.dashboard import pages  # registers the @ui.page routes

    ui.run_with(
        app,
        mount_path=MOUNT,
        title="tinyboard",
        dark=None,  # follow the browser; the header's toggle overrides it (pages/frame.py)
        favicon=pages.FAVICON,
        binding_refresh_interval=None,
        show_welcome_message=False,
        reconnect_timeout=10.0,
    )
