"""Stores: where readings, devices and attributes live. `open_store` picks one by URL."""

from __future__ import annotations

from pathlib import Path

from tinyboard.errors import ConfigError
from tinyboard.storage.base import Store


def open_store(url: str, *, sync: str = "full") -> Store:
    """A store for `sqlite:PATH` (the embedded default) or `postgresql://...`."""
    scheme, sep, rest = url.partition(":")
    if scheme == "sqlite" and sep and rest:
        from tinyboard.storage.sqlite import SQLiteStore

        return SQLiteStore(Path(rest), sync=sync)
    if scheme in ("postgresql", "postgres") and sep and rest:
        return _postgres_store(url)
    raise ConfigError(
        f"unsupported store {url!r}: use sqlite:/path/to/file.db or "
        "postgresql://user:password@host:5432/database "
        "(or leave --store empty for SQLite in the data directory)"
    )


def _postgres_store(url: str) -> Store:
    """asyncpg is the `postgresql` extra: a default install (SQLite) does without its 12 MB."""
    try:
        from tinyboard.storage.postgres import PostgresStore
    except ModuleNotFoundError as exc:
        if exc.name != "asyncpg":
            raise
        raise ConfigError(
            "the PostgreSQL store needs the asyncpg driver, which is not installed: "
            "pip install 'tinyboard[postgresql]' (in a checkout: .venv/bin/pip install -e "
            "'.[postgresql]'), or leave --store empty for SQLite in the data directory"
        ) from exc
    return PostgresStore(url)
