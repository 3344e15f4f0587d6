"""Security headers on every HTTP response, so no other site can frame the dashboard or the
API docs (clickjacking), and a browser neither sniffs a type nor leaks a URL elsewhere.

Strategy: one pure ASGI middleware around the whole app (the REST API, Swagger UI and the
NiceGUI dashboard mounted under /ui), adding headers to each `http.response.start`. HTML
pages get the strictest Content-Security-Policy NiceGUI 3 runs under (see
docs/architecture.md); every other response gets one that allows nothing.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = "; ".join(
    (
        "default-src 'self'",
        # NiceGUI writes each page's elements into inline scripts, runs `run_javascript` and
        # `:prop` bindings with eval, and Vue compiles its components' templates at run time
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "script-src-attr 'none'",  # no onclick="..." anywhere: injected markup cannot run
        # Quasar, Tailwind's browser build and ECharts set styles from script
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",  # Swagger UI draws its select arrows as data: SVGs
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
"""For HTML pages: the dashboard and Swagger UI, which load everything from this host."""
OTHER_POLICY = "default-src 'none'; frame-ancestors 'none'"
"""For JSON, CSV, scripts and the rest: opened as a document, none of them may run anything."""
HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
"""`X-Frame-Options` for browsers without `frame-ancestors`; `same-origin` keeps the
Referer (device ids, paths) on this host and leaves the `Origin` of same-site requests as
it is."""


class SecurityHeaders:
    """The middleware: headers the application already set are left as they are."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_security_headers(MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_security_headers(headers: MutableHeaders) -> None:
    html = headers.get("content-type", "").startswith("text/html")
    headers.setdefault("Content-Security-Policy", PAGE_POLICY if html else OTHER_POLICY)
    for name, value in HEADERS.items():
        headers.setdefault(name, value)
