"""What every store shares: value kinds, alarm status flags, search patterns, migrations."""

from __future__ import annotations

from importlib import resources

KIND_BOOL, KIND_LONG, KIND_DOUBLE, KIND_STR, KIND_JSON = range(5)

STATUS_FLAGS: dict[str, tuple[int, int]] = {
    "ACTIVE_UNACK": (0, 0),
    "ACTIVE_ACK": (0, 1),
    "CLEARED_UNACK": (1, 0),
    "CLEARED_ACK": (1, 1),
}
"""Alarm status → (cleared, acknowledged)."""


def like_prefix(text: str) -> str:
    """A LIKE pattern matching names that start with `text` (wildcards escaped with \\)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def migrations(backend: str) -> list[tuple[int, str]]:
    """(version, SQL script) of every migration of a backend, in order."""
    folder = resources.files("tinyboard.storage") / "migrations" / backend
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)
