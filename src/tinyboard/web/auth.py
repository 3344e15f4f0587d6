"""Login, token refresh and the JWT check every REST and WebSocket call goes through."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from tinyboard.core.models import User as StoredUser
from tinyboard.web.context import context_of
from tinyboard.web.entities import EntityId, customer_id, tenant_id
from tinyboard.web.models import errors
from tinyboard.web.tokens import AuthError, Claims


class LoginRequest(BaseModel):
    username: str
    password: str


class RefreshRequest(BaseModel):
    refreshToken: str


class TokenPair(BaseModel):
    token: str
    refreshToken: str


class UserOut(BaseModel):
    """ThingsBoard's User (tinyboard's users are all TENANT_ADMIN, without a customer)."""

    id: EntityId
    createdTime: int
    tenantId: EntityId
    customerId: EntityId
    email: str
    authority: str
    firstName: str | None = None
    lastName: str | None = None
    phone: str | None = None
    name: str
    additionalInfo: dict[str, Any]

    @classmethod
    def of(cls, user: StoredUser) -> UserOut:
        return cls(
            id=EntityId(entityType="USER", id=user.id),
            createdTime=user.created_ts,
            tenantId=tenant_id(),
            customerId=customer_id(),
            email=user.email,
            authority=user.role,
            name=user.email,
            additionalInfo={},
        )


def bearer(request: Request) -> str:
    """The JWT from `X-Authorization: Bearer ...` (ThingsBoard) or `Authorization: Bearer`."""
    for header in ("x-authorization", "authorization"):
        value = request.headers.get(header, "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    raise AuthError("authentication required: send X-Authorization: Bearer <JWT>")


async def current_user(request: Request) -> Claims:
    """Dependency of every protected route: a valid access token of a user who has not
    changed password since it was issued."""
    claims: Claims = await context_of(request).tokens.check(bearer(request))
    return claims


def peer(request: Request) -> str:
    """The client's address as the server was given it (a trusted proxy's forwarded one, or
    the socket's): what failed logins are counted against."""
    return request.client.host if request.client else "?"


User = Annotated[Claims, Depends(current_user)]

router = APIRouter(tags=["auth"], responses=errors(400, 401, 429))


@router.post("/api/auth/login", response_model=TokenPair)
async def login(body: LoginRequest, request: Request) -> dict[str, str]:
    """Exchange e-mail and password for a JWT (2.5 h) and a refresh token (1 week); 429
    while failed logins of this account from this address (or of this address) must wait."""
    ctx = context_of(request)
    user = await ctx.logins.check(body.username, body.password, peer(request))
    if user is None:
        raise AuthError("invalid username or password")
    tokens: dict[str, str] = ctx.tokens.issue(user)
    return tokens


@router.post("/api/auth/token", response_model=TokenPair)
async def refresh(body: RefreshRequest, request: Request) -> dict[str, str]:
    """A new token pair for a valid refresh token (none after a password change)."""
    ctx = context_of(request)
    user = await ctx.tokens.holder(ctx.tokens.verify(body.refreshToken, kind="refresh"))
    tokens: dict[str, str] = ctx.tokens.issue(user)
    return tokens


@router.get("/api/auth/user", response_model=UserOut)
async def me(user: User, request: Request) -> UserOut:
    """The logged-in user."""
    stored = await context_of(request).store.user_by_email(user.email)
    if stored is None:  # removed since the token was checked
        raise AuthError("this user no longer exists; log in again")
    return UserOut.of(stored)
