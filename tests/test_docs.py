"""Docs generated from code stay current, and every setting is documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from scripts.cli_reference import OUT, render

from tinyboard.config import SETTINGS

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current() -> None:
    assert OUT.read_text() == render(), "run: python scripts/cli_reference.py"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_documented(setting: object) -> None:
    readme = (ROOT / "README.md").read_text()
    cli = OUT.read_text()
    assert setting.flag in readme and setting.env in readme  # type: ignore[attr-defined]
    assert setting.flag in cli and setting.env in cli  # type: ignore[attr-defined]
