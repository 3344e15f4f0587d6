"""People: password hashing (argon2) and the first admin account.

Hashing takes tens of milliseconds of CPU on purpose, so callers on the event loop run it in
a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tinyboard.core.models import User
from tinyboard.errors import TinyboardError
from tinyboard.storage.base import Store

ADMIN_EMAIL = "admin@tinyboard.local"
ROLE_ADMIN = "TENANT_ADMIN"
MIN_PASSWORD = 8

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise TinyboardError(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def verify_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


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
