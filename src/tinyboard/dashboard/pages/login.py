"""The login page: the users of the REST API, checked by the same `Logins` (one limit)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import ui

from tinyboard.dashboard.pages.frame import TZ_SCRIPT, notify_error, signed_in, theme
from tinyboard.dashboard.session import LOGIN_PATH, local_path
from tinyboard.dashboard.state import MOUNT, current
from tinyboard.errors import TinyboardError
from tinyboard.web.auth import peer


@ui.page(LOGIN_PATH[len(MOUNT) :], title="Log in · tinyboard")
async def login_page(request: Request, next: str = "") -> RedirectResponse | None:
    if await signed_in(request) is not None:
        return RedirectResponse(local_path(next or MOUNT + "/devices"), status_code=303)
    ui.add_head_html(TZ_SCRIPT)
    theme(request)
    who = peer(request)

    async def attempt() -> None:
        dash = current()
        try:
            user = await dash.ctx.logins.check(email.value, password.value, who)
            if user is None:
                raise TinyboardError("wrong e-mail or password")
        except TinyboardError as exc:
            notify_error(exc)
            return
        ticket = dash.sessions.ticket_for(user)
        target = local_path(next or MOUNT + "/devices")  # a full path: FastAPI redirects to it
        ui.navigate.to(f"/session?ticket={ticket}&next={quote(target)}")

    with ui.card().classes("absolute-center w-80 max-w-[90vw]"):
        ui.label("tinyboard").classes("text-2xl font-bold")
        email = ui.input("E-mail").props("autofocus autocomplete=username").classes("w-full")
        password = (
            ui.input("Password", password=True)
            .props("autocomplete=current-password")
            .classes("w-full")
            .on("keydown.enter", attempt)
        )
        ui.button("Log in", on_click=attempt).classes("w-full")
        ui.label(
            "First start printed the admin's password; `tinyboard user passwd` sets a new one."
        ).classes("text-xs text-gray-500")
    return None
