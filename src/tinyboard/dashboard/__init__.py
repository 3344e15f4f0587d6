"""The web dashboard: NiceGUI pages under /ui on tinyboard's FastAPI app.

NiceGUI keeps one global app per process, so a process mounts at most one dashboard; the
pages find the running server's parts through `state.current()`. Import this package only
when the dashboard is on: NiceGUI costs about half a second to import.
"""

from __future__ import annotations

from tinyboard.dashboard.state import mount

__all__ = ["mount"]
