"""Login, token refresh and the JWT check every REST and WebSocket call goes through."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from tinyboard.core.users import verify_password
from tinyboard.web.errors import TooManyRequests
from tinyboard.web.models import errors
from tinyboard.web.tokens import AuthError, Claims

LOGIN_ATTEMPTS = 10
LOGIN_WINDOW = 60.0


class LoginRequest(BaseModel):
    username: str
    password: str


class RefreshRequest(BaseModel):
    refreshToken: str


class TokenPair(BaseModel):
    token: str
    refreshToken: str


class CurrentUser(BaseModel):
    id: str
    email: str
    authority: str


class LoginLimiter:
    """At most LOGIN_ATTEMPTS failed logins per client address per LOGIN_WINDOW seconds."""

    def __init__(self, attempts: int = LOGIN_ATTEMPTS, window: float = LOGIN_WINDOW) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def check(self, who: str) -> None:
        failures = self._failures.get(who)
        if failures is None:
            return
        now = time.monotonic()
        while failures and now - failures[0] > self.window:
            failures.popleft()
        if not failures:
            del self._failures[who]
        elif len(failures) >= self.attempts:
            wait = int(self.window - (now - failures[0])) + 1
            raise TooManyRequests(f"too many failed logins; try again in {wait} s")

    def attempt(self, who: str) -> None:
        """Count an attempt as failed before its password is checked, so attempts made while
        others are being checked (the hash takes ~0.1 s) cannot slip past the limit; raises
        `TooManyRequests` when the limit is reached."""
        self.check(who)
        self._failures.setdefault(who, deque()).append(time.monotonic())

    def succeeded(self, who: str) -> None:
        """The attempt was right after all: take back what `attempt` counted."""
        failures = self._failures.get(who)
        if failures:
            failures.pop()


def bearer(request: Request) -> str:
    """The JWT from `X-Authorization: Bearer ...` (ThingsBoard) or `Authorization: Bearer`."""
    for header in ("x-authorization", "authorization"):
        value = request.headers.get(header, "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    raise AuthError("authentication required: send X-Authorization: Bearer <JWT>")


def current_user(request: Request) -> Claims:
    """Dependency of every protected route."""
    claims: Claims = request.app.state.ctx.tokens.verify(bearer(request))
    return claims


User = Annotated[Claims, Depends(current_user)]

router = APIRouter(tags=["auth"], responses=errors(400, 401, 429))


@router.post("/api/auth/login", response_model=TokenPair)
async def login(body: LoginRequest, request: Request) -> dict[str, str]:
    """Exchange e-mail and password for a JWT (2.5 h) and a refresh token (1 week)."""
    ctx = request.app.state.ctx
    limiter: LoginLimiter = request.app.state.login_limiter
    who = request.client.host if request.client else "?"
    limiter.attempt(who)
    user = await ctx.store.user_by_email(body.username.strip())
    valid = user is not None and await asyncio.to_thread(verify_password, user, body.password)
    if user is None or not valid:
        raise AuthError("invalid username or password")
    limiter.succeeded(who)
    tokens: dict[str, str] = ctx.tokens.issue(user)
    return tokens


@router.post("/api/auth/token", response_model=TokenPair)
async def refresh(body: RefreshRequest, request: Request) -> dict[str, str]:
    """A new token pair for a valid refresh token."""
    ctx = request.app.state.ctx
    claims = ctx.tokens.verify(body.refreshToken, kind="refresh")
    user = await ctx.store.user_by_email(claims.email)
    if user is None:
        raise AuthError("the user no longer exists")
    tokens: dict[str, str] = ctx.tokens.issue(user)
    return tokens


@router.get("/api/auth/user", response_model=CurrentUser)
async def me(user: User) -> CurrentUser:
    """The logged-in user."""
    return CurrentUser(id=user.user_id, email=user.email, authority=user.role)
