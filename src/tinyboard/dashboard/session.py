"""Who is looking at the dashboard: a signed session cookie, set after a password check.

The login page checks the password over NiceGUI's socket, which cannot set an HttpOnly
cookie, so it hands the browser a one-use ticket (valid 30 s) for `/ui/session`,
a plain HTTP route that swaps it for the cookie. The cookie holds a JWT from the same
`TokenService` as the REST API, of its own kind, so REST tokens and cookies never mix.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import RedirectResponse

from tinyboard.core.models import User
from tinyboard.web.tokens import AuthError, Claims, TokenService

COOKIE = "tinyboard_session"
SESSION_SECONDS = 7 * 24 * 3600
TICKET_SECONDS = 30.0
LOGIN_PATH = "/ui/login"
HOME_PATH = "/ui/devices"


@dataclass(slots=True)
class Sessions:
    tokens: TokenService
    _tickets: dict[str, tuple[float, str]] = field(default_factory=dict)

    def ticket_for(self, user: User) -> str:
        """A one-use ticket the browser exchanges for the session cookie."""
        now = time.monotonic()
        for stale in [t for t, (expiry, _) in self._tickets.items() if expiry < now]:
            del self._tickets[stale]
        ticket = secrets.token_urlsafe(32)
        token = self.tokens.encode(user, "session", SESSION_SECONDS)
        self._tickets[ticket] = (now + TICKET_SECONDS, token)
        return ticket

    def redeem(self, ticket: str, next_path: str) -> RedirectResponse:
        entry = self._tickets.pop(ticket, None)
        if entry is None or entry[0] < time.monotonic():
            return RedirectResponse(LOGIN_PATH, status_code=303)
        response = RedirectResponse(local_path(next_path), status_code=303)
        response.set_cookie(
            COOKIE,
            entry[1],
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="lax",
            path="/",
        )
        return response

    async def user(self, request: Request) -> Claims | None:
        """The signed-in user, if the cookie is valid, the user still exists and has not
        changed password since (the same check as REST tokens: `TokenService.check`)."""
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        try:
            return await self.tokens.check(token, kind="session")
        except AuthError:
            return None


def logout() -> RedirectResponse:
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def local_path(path: str) -> str:
    """Only paths on this server: a login link must not redirect elsewhere."""
    if not path.startswith("/ui/") or path.startswith("//") or "\\" in path:
        return HOME_PATH
    return path
