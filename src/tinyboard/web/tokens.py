"""JWTs for people: an access token (2.5 h, as ThingsBoard) and a refresh token (1 week).

The signing key is generated on first start and kept in the store, so tokens survive a
restart and every node sharing the store accepts them.
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
    """Set in dashboard sessions: a password change ends them (see `password_mark`)."""


def password_mark(user: User) -> str:
    """A short digest of the user's password hash: it changes when the password does."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


class TokenService:
    def __init__(self, secret: str, *, access_seconds: int = ACCESS_SECONDS) -> None:
        self._secret = secret
        self.access_seconds = access_seconds

    @classmethod
    async def from_store(cls, store: Store) -> TokenService:
        return cls(await store.setting("jwt_secret", secrets.token_urlsafe(48)))

    def issue(self, user: User) -> dict[str, str]:
        """ThingsBoard's login answer: {"token": ..., "refreshToken": ...}."""
        return {
            "token": self.encode(user, "access", self.access_seconds),
            "refreshToken": self.encode(user, "refresh", REFRESH_SECONDS),
        }

    def encode(self, user: User, kind: str, seconds: int, *, mark: bool = False) -> str:
        """A signed token of `kind` ("access", "refresh", the dashboard's "session");
        `mark` adds the password mark."""
        now = int(time.time())
        claims: dict[str, object] = {
            "sub": user.email,
            "userId": user.id,
            "scopes": [user.role],
            "typ": kind,
            "iat": now,
            "exp": now + seconds,
        }
        if mark:
            claims["pwd"] = password_mark(user)
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str, kind: str = "access") -> Claims:
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
