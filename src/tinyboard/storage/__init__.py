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
        from tinyboard.storage.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigError(
        f"unsupported store {url!r}: use sqlite:/path/to/file.db or "
        "postgresql://user:password@host:5432/database "
        "(or leave --store empty for SQLite in the data directory)"
    )
