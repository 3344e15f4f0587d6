"""A client that leaves in the middle of its request is routine, not a server error.

Starlette raises `ClientDisconnect` into the route that was reading the body, and uvicorn
logs whatever an app raises as "Exception in ASGI application" with a full traceback. Once the
app has been told the client is gone (`http.disconnect`), whatever it raises is moot: one
debug line instead. The request limits in `limits.py` end a request the same way.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

DEVICE_API = "/api/v1/"


class QuietDisconnects:
    """Pure ASGI middleware around the whole app (WebSocket and lifespan pass through)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gone = False

        async def watched() -> Message:
            nonlocal gone
            message = await receive()
            gone = gone or message["type"] == "http.disconnect"
            return message

        try:
            await self.app(scope, watched, send)
        except Exception as exc:
            if not gone:
                raise
            log.debug(
                "HTTP client %s left during %s %s (%s)",
                scope.get("client"),
                scope["method"],
                _loggable(scope["path"]),
                type(exc).__name__,
            )


def _loggable(path: str) -> str:
    """The path without the device token the device API carries in it (secrets stay out of
    logs)."""
    if not path.startswith(DEVICE_API):
        return path
    _, _, rest = path[len(DEVICE_API) :].partition("/")
    return f"{DEVICE_API}…/{rest}"
