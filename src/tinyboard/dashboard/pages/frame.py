"""What every signed-in page shares: the sign-in check, the header and the navigation."""

from __future__ import annotations

import time
from datetime import UTC, tzinfo
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import ui

from tinyboard.dashboard.session import LOGIN_PATH
from tinyboard.dashboard.state import current
from tinyboard.web.tokens import Claims

NAV: tuple[tuple[str, str, str], ...] = (
    ("Devices", "devices", "/devices"),
    ("Alarms", "notifications", "/alarms"),
    ("Rules", "rule", "/rules"),
    ("Connections", "lan", "/connections"),
)
"""(label, Material icon, path) of each section.
NiceGUI's links and navigation put the mount path (/ui) in front of paths like these."""


TZ_COOKIE = "tinyboard_tz"
TZ_SCRIPT = f"""<script>
document.cookie = "{TZ_COOKIE}=" + encodeURIComponent(Intl.DateTimeFormat().resolvedOptions()
  .timeZone) + "; path=/; SameSite=Lax; max-age=31536000";
</script>"""
"""Tells the server the browser's time zone, so times are shown and read as the user's."""


THEME_COOKIE = "tinyboard_theme"
SWITCH_THEME = f"""() => {{
  const dark = !document.body.classList.contains("body--dark");
  setDark(dark);
  document.cookie = "{THEME_COOKIE}=" + (dark ? "dark" : "light") +
    "; path=/; SameSite=Lax; max-age=31536000";
  emit(dark);
}}"""
"""The header's toggle: the other mode at once, remembered by this browser (in a cookie, so the
server renders the next page in it), and told to the page's dark_mode element, which would
otherwise put its own value back on its next update."""


HOVER = "hover:bg-black/5 dark:hover:bg-white/10"
"""A hover shade that shows in light and in dark mode."""


def theme(request: Request | None) -> ui.dark_mode:
    """Dark mode as chosen with the toggle; until then the browser's preference (None)."""
    chosen = request.cookies.get(THEME_COOKIE, "") if request is not None else ""
    return ui.dark_mode({"dark": True, "light": False}.get(chosen))


def browser_zone(request: Request) -> tzinfo:
    """The browser's time zone (set by TZ_SCRIPT on the login page), else UTC."""
    name = unquote(request.cookies.get(TZ_COOKIE, ""))  # TZ_SCRIPT encodes the "/"
    try:
        return ZoneInfo(name) if name else UTC
    except (ValueError, ZoneInfoNotFoundError):
        return UTC


async def signed_in(request: Request) -> Claims | None:
    return await current().sessions.user(request)


def to_login(request: Request) -> RedirectResponse:
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{LOGIN_PATH}?next={quote(wanted)}", status_code=303)


def frame(user: Claims, title: str) -> None:
    """Header, navigation drawer (a menu button on a phone) and the page title."""
    ui.add_head_html(TZ_SCRIPT)
    ui.colors(primary="#305680")
    dark = theme(ui.context.client.request)
    with ui.header().classes("items-center gap-2 px-3 py-2"):
        drawer_button = ui.button(icon="menu").props("flat round color=white aria-label=Menu")
        drawer_button.classes("lg:hidden")
        ui.link("tinyboard", "/devices").classes("text-white text-lg font-bold no-underline")
        ui.space()
        ui.label(user.email).classes("text-sm max-sm:hidden")
        with ui.button().props("flat round color=white aria-label='Dark or light mode'") as mode:
            ui.icon("dark_mode").classes("dark:hidden")
            ui.icon("light_mode").classes("hidden dark:inline-flex")
        mode.on("click", lambda e: dark.set_value(bool(e.args)), js_handler=SWITCH_THEME)
        mode.tooltip("Dark or light mode")
        ui.button(icon="logout", on_click=lambda: ui.navigate.to("/logout")).props(
            "flat round color=white aria-label='Log out'"
        ).tooltip("Log out")
    # value=False + show-if-above, not NiceGUI's value=None: that asks the browser for the
    # drawer's state on connect and logs an error when a tab closes before it answers
    drawer = ui.left_drawer(value=False, bordered=True)
    with drawer.props("show-if-above width=200 breakpoint=1024"):
        for label, icon, path in NAV:
            link = ui.link(target=path).classes("no-underline text-inherit w-full")
            with link, ui.row().classes(f"items-center gap-3 px-2 py-2 w-full {HOVER}"):
                ui.icon(icon)
                ui.label(label)
    drawer_button.on("click", drawer.toggle)
    ui.label(title).classes("text-2xl font-semibold break-all")


def notify_error(exc: Exception) -> None:
    ui.notify(str(exc), type="negative", multi_line=True)


def ago(ts_ms: int | None, now: float | None = None) -> str:
    """'12 s ago', '3 min ago', ... or 'never'."""
    if ts_ms is None:
        return "never"
    seconds = max(0, (time.time() if now is None else now) - ts_ms / 1000)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"
