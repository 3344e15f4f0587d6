"""What a user downloads: the sdist and the wheel, built by the real backend from a checkout
where the demo and a server have left their databases, carry the code and docs and never a
data directory; and the metadata passes the package index's checks."""

from __future__ import annotations

import email
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ServeProcess

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("src", "tests", "docs", "firmware", "scripts", "benchmarks")
"""The folders an sdist carries (pyproject.toml's sdist include list), besides the top files."""
DATA = re.compile(r"(^|/)(tinyboard-data|tinyboard-demo|my-data)(/|$)|\.db(-wal|-shm)?$")

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Built:
    checkout: Path
    dist: Path
    sdist: list[str]  # member names without the leading `tinyboard-X.Y.Z/`
    wheel: list[str]


def tinyboard_in(checkout: Path, *args: str) -> None:
    """A CLI command run from inside the copied checkout, as the user there would."""
    result = subprocess.run(
        [sys.executable, "-m", "tinyboard", *args],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def copy_checkout(dest: Path) -> Path:
    skip = shutil.ignore_patterns(
        ".git", ".venv", "dist", "__pycache__", "*_cache", ".hypothesis", "*.egg-info"
    )
    shutil.copytree(ROOT, dest, ignore=skip)
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """Both archives, built while a server runs on `tinyboard-data/` (so its -wal and -shm files
    exist too), after the demo's directory and one of the user's own got a store each."""
    checkout = copy_checkout(tmp_path_factory.mktemp("checkout") / "tinyboard")
    tinyboard_in(checkout, "device", "add", "demo-board", "--data-dir", "tinyboard-demo")
    tinyboard_in(checkout, "device", "add", "my-board", "--data-dir", "my-data")
    tinyboard_in(checkout, "device", "add", "fw-board", "--data-dir", "firmware/tinyboard-data")
    server = ServeProcess(checkout / "tinyboard-data", "--no-dashboard")
    try:
        assert (checkout / "tinyboard-data" / "tinyboard.db-wal").exists()
        dist = checkout.parent / "dist"
        build = subprocess.run(
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(checkout)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        server.kill()
    assert build.returncode == 0, build.stdout + build.stderr
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    with tarfile.open(sdist) as archive:
        sdist_names = [m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile()]
    with zipfile.ZipFile(wheel) as archive:
        wheel_names = archive.namelist()
    yield Built(checkout, dist, sdist_names, wheel_names)


def test_the_sdist_carries_the_project_and_no_data(built: Built) -> None:
    assert [name for name in built.sdist if DATA.search(name)] == []
    expected = {
        str(path.relative_to(built.checkout))
        for folder in SHIPPED
        for path in (built.checkout / folder).rglob("*")
        if path.is_file() and not DATA.search(str(path.relative_to(built.checkout)))
    }
    assert "src/tinyboard/cli.py" in expected and "docs/img/devices.png" in expected
    assert expected <= set(built.sdist)
    assert {"README.md", "LICENSE", "pyproject.toml", "PKG-INFO"} <= set(built.sdist)


def test_the_wheel_carries_the_package_and_no_data(built: Built) -> None:
    assert [name for name in built.wheel if DATA.search(name)] == []
    package = built.checkout / "src"
    expected = {
        str(path.relative_to(package))
        for path in (package / "tinyboard").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert "tinyboard/dashboard/favicon.svg" in expected
    assert expected <= set(built.wheel)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in built.wheel)


def test_the_metadata_passes_the_package_index_checks(built: Built) -> None:
    archives = [str(path) for path in sorted(built.dist.iterdir())]
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *archives],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    wheel = zipfile.ZipFile(next(built.dist.glob("*.whl")))
    meta_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    meta = email.message_from_bytes(wheel.read(meta_name))
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL", []))
    assert {"Homepage", "Documentation", "Issues"} <= set(urls)
    assert meta.get_all("Classifier") and meta["Keywords"]
