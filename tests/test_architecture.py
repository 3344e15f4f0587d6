"""DESIGN §2: the dependency direction cli → server → transports/web → core → storage.base,
transports → mqtt; mqtt/ and core/ import no server, web framework or database driver."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tinyboard"

# For each package (or top-level module), the tinyboard modules it must never import.
FORBIDDEN_INTERNAL = {
    "mqtt": (  # a pure codec: it stands alone
        "tinyboard.cli",
        "tinyboard.server",
        "tinyboard.core",
        "tinyboard.storage",
        "tinyboard.transports",
        "tinyboard.web",
        "tinyboard.dashboard",
        "tinyboard.registry",
        "tinyboard.config",
        "tinyboard.errors",
    ),
    "core": (
        "tinyboard.cli",
        "tinyboard.server",
        "tinyboard.transports",
        "tinyboard.web",
        "tinyboard.dashboard",
        "tinyboard.storage.sqlite",
        "tinyboard.storage.postgres",
        "tinyboard.registry",
    ),
    "storage": (
        "tinyboard.cli",
        "tinyboard.server",
        "tinyboard.transports",
        "tinyboard.web",
        "tinyboard.dashboard",
        "tinyboard.core.pipeline",
        "tinyboard.core.ingest",
        "tinyboard.registry",
    ),
    "transports": ("tinyboard.cli", "tinyboard.server", "tinyboard.web", "tinyboard.dashboard"),
    "web": ("tinyboard.cli", "tinyboard.server", "tinyboard.transports", "tinyboard.dashboard"),
    "dashboard": ("tinyboard.cli", "tinyboard.server", "tinyboard.transports"),
    "registry": ("tinyboard.cli", "tinyboard.server", "tinyboard.transports"),
    # the simulator is a device: it knows the wire protocols, nothing of the server's inside
    "sim": (
        "tinyboard.cli",
        "tinyboard.server",
        "tinyboard.web",
        "tinyboard.dashboard",
        "tinyboard.transports",
        "tinyboard.storage",
        "tinyboard.core",
        "tinyboard.registry",
    ),
    "server": ("tinyboard.cli",),
}
ALLOWED_INTERNAL = {
    # ThingsBoard's topic names are the wire protocol a device speaks, defined once; the
    # module holding them imports nothing of tinyboard's (test_topic_table_stands_alone)
    "sim": ("tinyboard.transports.thingsboard",),
}
FORBIDDEN_EXTERNAL = {
    "mqtt": ("asyncio", "socket", "sqlite3", "asyncpg", "fastapi", "uvicorn", "nicegui"),
    "core": ("sqlite3", "asyncpg", "fastapi", "uvicorn", "nicegui", "starlette", "socket"),
    # NiceGUI costs ~0.5 s to import: only the dashboard, imported when it is on, may use it
    "web": ("nicegui",),
    "server": ("nicegui",),
    "cli": ("nicegui",),
    "transports": ("nicegui",),
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def layer_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layering(path: Path) -> None:
    layer = layer_of(path)
    imported = imports_of(path)
    allowed = ALLOWED_INTERNAL.get(layer, ())
    bad = [
        name
        for name in imported
        for prefix in FORBIDDEN_INTERNAL.get(layer, ())
        if (name == prefix.rstrip(".") or name.startswith(prefix))
        and not any(name == a or name.startswith(a + ".") for a in allowed)
    ]
    bad += [
        name
        for name in imported
        for root in FORBIDDEN_EXTERNAL.get(layer, ())
        if name == root or name.startswith(root + ".")
    ]
    assert not bad, f"{path.relative_to(SRC)} ({layer}) must not import {sorted(set(bad))}"


def test_topic_table_stands_alone() -> None:
    """What the simulator may import of the server's side holds nothing of its inside."""
    for module in ALLOWED_INTERNAL["sim"]:
        path = SRC.joinpath(*module.split(".")[1:]).with_suffix(".py")
        inside = sorted(name for name in imports_of(path) if name.startswith("tinyboard"))
        assert not inside, f"{module} must import nothing of tinyboard, imports {inside}"


def test_the_checker_sees_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import sqlite3\nfrom tinyboard.server import Server\n")
    assert {"sqlite3", "tinyboard.server", "tinyboard.server.Server"} <= imports_of(bad)
    assert len(MODULES) > 10
