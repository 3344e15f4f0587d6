"""Small helpers the benchmark scripts share."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def revision() -> str:
    """The tinyboard source measured: git commit, and whether src/ had uncommitted edits."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args], check=False, capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "src")
    except (OSError, subprocess.SubprocessError):
        return "source revision unknown"
    if not commit:
        return "source revision unknown"
    return f"tinyboard at {commit}" + (" + uncommitted changes in src/" if dirty else "")


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values; NaN when there are none."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]
