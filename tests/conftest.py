from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ServerThread

IN_CI = os.environ.get("CI") == "true"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    running = ServerThread(tmp_path / "data").start()
    try:
        yield running
    finally:
        running.stop()
