"""People: password hashing (argon2), the login check and the first admin account.

Hashing takes tens of milliseconds of CPU on purpose, so callers on the event loop run it in
a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tinyboard.core.login_limits import LoginLimiter, LoginThrottled
from tinyboard.core.models import User
from tinyboard.errors import TinyboardError
from tinyboard.storage.base import Store

log = logging.getLogger(__name__)

ADMIN_EMAIL = "admin@tinyboard.local"
ROLE_ADMIN = "TENANT_ADMIN"
MIN_PASSWORD = 8

_hasher = PasswordHasher()
MAX_HASHING = 2
"""argon2 checks run at once: each takes 64 MiB and a core for ~0.1 s, so a flood of logins
from many addresses waits in line instead of taking hundreds of MB."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise TinyboardError(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def password_matches(encoded: str, password: str) -> bool:
    """Whether `password` hashes to `encoded` (argon2: slow on purpose)."""
    try:
        return _hasher.verify(encoded, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def unknown_user_hash() -> str:
    """What an unknown e-mail's password is checked against, so that it costs the same argon2
    work as a known one: a hash of a password nobody knows, with the parameters new passwords
    get (made on first use)."""
    return _hasher.hash(secrets.token_urlsafe(32))


class Logins:
    """The one e-mail and password check behind every login (REST and dashboard): the
    failed-login limits first (`core.login_limits`), then argon2."""

    def __init__(self, store: Store, limiter: LoginLimiter) -> None:
        self.store = store
        self.limiter = limiter
        self.password_checks = 0
        """argon2 verifications run, known e-mail or not (for /metrics)."""
        self.failed = 0
        self.throttled = 0
        self._lock = threading.Lock()  # password_checks is counted on worker threads
        self._hashing = asyncio.Semaphore(MAX_HASHING)
        self._running = 0
        self.most_hashing = 0
        """The most argon2 checks that ran at once (at most MAX_HASHING)."""

    async def check(self, email: str, password: str, address: str) -> User | None:
        """The user when the password is right, else None; raises `LoginThrottled` when
        `address` must wait (then no password is checked)."""
        try:
            await self.limiter.attempt(email, address)
        except LoginThrottled:
            self.throttled += 1
            raise
        user = await self.store.user_by_email(email.strip())
        async with self._hashing:
            self._running += 1
            self.most_hashing = max(self.most_hashing, self._running)
            try:
                matches = await asyncio.to_thread(self._verify, user, password)
            finally:
                self._running -= 1
        if matches:
            await self.limiter.succeeded(email, address)
            return user
        self.failed += 1
        log.info("failed login from %s", address)
        return None

    def _verify(self, user: User | None, password: str) -> bool:
        """On a worker thread: the same argon2 work whether the e-mail is known or not."""
        encoded = user.password_hash if user is not None else unknown_user_hash()
        matches = password_matches(encoded, password)
        with self._lock:
            self.password_checks += 1
        return matches and user is not None


def check_email(email: str) -> str:
    email = email.strip()
    if "@" not in email or len(email) > 255 or any(c.isspace() for c in email):
        raise TinyboardError(f"{email!r} is not an e-mail address")
    return email


async def ensure_admin(store: Store) -> tuple[User, str] | None:
    """On first start (no users yet) create the admin with a random password.

    Returns (user, password) when one was created, so the caller can print it once.
    """
    if await store.list_users():
        return None
    password = secrets.token_urlsafe(12)
    user = await store.create_user(ADMIN_EMAIL, hash_password(password), role=ROLE_ADMIN)
    return user, password
