"""Device names and access tokens."""

from __future__ import annotations

import secrets
import string

from tinyboard.errors import TinyboardError

TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_LENGTH = 20
MAX_NAME = 255


def new_token() -> str:
    """A random access token like ThingsBoard's: 20 letters and digits (~119 bits)."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def check_name(name: str) -> str:
    """Return the trimmed device name or raise with what a valid name looks like."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise TinyboardError(f"a device name needs 1 to {MAX_NAME} characters, got {name!r}")
    return name


def check_token(token: str) -> str:
    """Accept a user-chosen token when it is printable, without spaces, and 1–255 chars."""
    if not token or len(token) > 255 or any(c.isspace() or not c.isprintable() for c in token):
        raise TinyboardError("an access token needs 1 to 255 printable characters and no spaces")
    return token
