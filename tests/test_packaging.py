"""What a user downloads: the sdist and the wheel, built by the real backend from a checkout
where the demo and a server have left their databases, carry the code and docs and never a
data directory; the metadata passes the package index's checks; the wheel runs on its own;
and without the `postgresql` extra the CLI names it instead of failing with a traceback."""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ServeProcess

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("src", "tests", "docs", "firmware", "scripts", "benchmarks")
"""The folders an sdist carries (pyproject.toml's sdist include list), besides the top files."""
DATA = re.compile(r"(^|/)(tinyboard-data|tinyboard-demo|my-data)(/|$)|\.db(-wal|-shm)?$")
NO_ASYNCPG = "import sys\nsys.modules['asyncpg'] = None  # `import asyncpg` fails: not installed\n"

PIP_INSTALL = (sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet")
SERVE_ON_FREE_PORTS = (
    *("serve", "--bind", "127.0.0.1", "--no-dashboard"),
    *("--line-port", "0", "--mqtt-port", "0", "--http-port", "0"),
)

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
    """The checkout without git, virtualenvs, caches or the developer's own data (the test makes
    its own)."""
    skip = shutil.ignore_patterns(
        *(".git", ".venv", "dist", "__pycache__", "*_cache", ".hypothesis", "*.egg-info"),
        *("tinyboard-data", "tinyboard-demo"),
    )
    shutil.copytree(ROOT, dest, ignore=skip)
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Both archives, built while a server runs on `tinyboard-data/` (so its -wal and -shm files
    exist too), after the demo's directory, one of the user's own and one inside `firmware/`
    got a store each."""
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
    return Built(checkout, dist, sdist_names, wheel_names)


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
    assert "postgresql" in meta.get_all("Provides-Extra", [])
    asyncpg = [r for r in meta.get_all("Requires-Dist", []) if r.startswith("asyncpg")]
    assert "asyncpg>=0.29; extra == 'postgresql'" in asyncpg
    assert all("; extra == " in r for r in asyncpg), asyncpg  # a default install goes without
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL", []))
    assert {"Homepage", "Documentation", "Issues"} <= set(urls)
    assert meta.get_all("Classifier") and meta["Keywords"]


def blocked_asyncpg(tmp_path: Path, extra_path: str) -> dict[str, str]:
    """An environment where `import asyncpg` fails as when the extra is not installed."""
    (tmp_path / "no-asyncpg").mkdir()
    (tmp_path / "no-asyncpg" / "sitecustomize.py").write_text(NO_ASYNCPG)
    path = os.pathsep.join(p for p in (str(tmp_path / "no-asyncpg"), extra_path) if p)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "PYTHONPATH": path}


def test_the_wheel_runs_on_its_own_without_the_postgresql_extra(
    built: Built, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    wheel = next(built.dist.glob("*.whl"))
    install = subprocess.run(
        [*PIP_INSTALL, "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    env = blocked_asyncpg(tmp_path, str(target))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tinyboard", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import tinyboard; print(tinyboard.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert where.stdout.startswith(str(target)), where.stdout + where.stderr
    added = cli("device", "add", "kitchen", "--data-dir", str(tmp_path / "data"))
    assert added.returncode == 0 and len(added.stdout.strip()) == 20, added.stderr
    listed = cli("device", "list", "--data-dir", str(tmp_path / "data"))
    assert listed.stdout.startswith("kitchen"), listed.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("migrate",),
        ("device", "list"),
        SERVE_ON_FREE_PORTS,
    ],
    ids=lambda c: c[0],
)
def test_a_postgresql_store_without_the_extra_names_it(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    env = blocked_asyncpg(tmp_path, os.environ.get("PYTHONPATH", ""))
    url = "postgresql://tinyboard@127.0.0.1:5432/tinyboard"
    result = subprocess.run(
        [sys.executable, "-m", "tinyboard", *command, "--store", url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "pip install 'tinyboard[postgresql]'" in error
