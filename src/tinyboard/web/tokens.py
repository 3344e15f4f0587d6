"""JWTs for people: an access token (2.5 h, as ThingsBoard) and a refresh token (1 week).

The signing key is generated on first start and kept in the store, so tokens survive a
restart and every node sharing the store accepts them.

Revocation: every token (REST access and refresh, the dashboard's session cookie) carries a
digest of the user's password hash, and `check` compares it with the store's user on each
use. A password change (over any door, `tinyboard user passwd` in another process included)
or the user's removal ends every token issued before it, as ThingsBoard does; nothing is
kept in memory, so every node sharing the store agrees at once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import jwt

from tinyboard.core.models import User
from tinyboard.errors import TinyboardError
from tinyboard.storage.base import Store

ACCESS_SECONDS = 9000
REFRESH_SECONDS = 7 * 24 * 3600
ALGORITHM = "HS256"


class AuthError(TinyboardError):
    """Missing, wrong or expired credentials (HTTP 401)."""


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: str
    email: str
    role: str
    password_mark: str = ""
    """The `password_mark` of the user when the token was issued."""


def password_mark(user: User) -> str:
    """A short digest of the user's password hash: it changes when the password does."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


class TokenService:
    def __init__(self, secret: str, store: Store, *, access_seconds: int = ACCESS_SECONDS) -> None:
        self._secret = secret
        self._store = store
        self.access_seconds = access_seconds

    @classmethod
    async def from_store(cls, store: Store) -> TokenService:
        return cls(await store.setting("jwt_secret", secrets.token_urlsafe(48)), store)

    def issue(self, user: User) -> dict[str, str]:
        """ThingsBoard's login answer: {"token": ..., "refreshToken": ...}."""
        return {
            "token": self.encode(user, "access", self.access_seconds),
            "refreshToken": self.encode(user, "refresh", REFRESH_SECONDS),
        }

    def encode(self, user: User, kind: str, seconds: int) -> str:
        """A signed token of `kind` ("access", "refresh", the dashboard's "session")."""
        now = int(time.time())
        claims: dict[str, object] = {
            "sub": user.email,
            "userId": user.id,
            "scopes": [user.role],
            "typ": kind,
            "iat": now,
            "exp": now + seconds,
            "pwd": password_mark(user),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    async def check(self, token: str, kind: str = "access") -> Claims:
        """The claims of a valid, unexpired, unrevoked token of `kind`; raises `AuthError`."""
        claims = self.verify(token, kind)
        await self.holder(claims)
        return claims

    async def holder(self, claims: Claims) -> User:
        """The user `claims` name, if tokens issued to them still stand: raises `AuthError`
        when the user is gone or changed password since the token was issued."""
        user = await self._store.user_by_email(claims.email)
        if user is None or user.id != claims.user_id:
            raise AuthError("the token's user no longer exists; log in as another user")
        if not secrets.compare_digest(password_mark(user), claims.password_mark):
            raise AuthError("the password changed since this token was issued; log in again")
        return user

    def verify(self, token: str, kind: str = "access") -> Claims:
        """Signature, expiry and kind only: `check` also refuses revoked tokens."""
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM])
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired; log in again") from None
        except jwt.PyJWTError:
            raise AuthError("the token is not valid; log in with POST /api/auth/login") from None
        if claims.get("typ") != kind:
            raise AuthError(f"a {kind} token is needed here")
        role = (claims.get("scopes") or [""])[0]
        return Claims(claims["userId"], claims["sub"], role, claims.get("pwd", ""))
