"""The dashboard's pages; importing this package registers them with NiceGUI."""

from __future__ import annotations

from pathlib import Path

from tinyboard.dashboard.pages import alarms, connections, device, devices, login, rules

FAVICON = Path(__file__).parent.parent / "favicon.svg"

__all__ = ["FAVICON", "alarms", "connections", "device", "devices", "login", "rules"]
