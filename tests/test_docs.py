"""Docs generated from code stay current, every setting is documented, and the commands a
reader copies from the README and the tutorial work as written."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from scripts.cli_reference import OUT, render

from tests.helpers import ServerThread
from tests.web_helpers import api
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


def shell_block(doc: str, marker: str) -> str:
    """The one ```sh block of `doc` that contains `marker`, as a reader copies it."""
    blocks = re.findall(r"^```sh\n(.*?)^```$", (ROOT / doc).read_text(), re.M | re.S)
    found = [block for block in blocks if marker in block]
    assert len(found) == 1, f"{doc}: {len(found)} sh blocks with {marker!r}"
    return found[0]


def run_bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


PASSWORD_PLACEHOLDER = "'the password serve printed'"


def login_snippet(doc: str, server: ServerThread, password: str) -> str:
    """The docs' copy-paste login with the real port and `password` put in."""
    snippet = shell_block(doc, "/api/auth/login")
    assert PASSWORD_PLACEHOLDER in snippet and "127.0.0.1:8080" in snippet
    assert server.admin[0] in snippet
    return snippet.replace(PASSWORD_PLACEHOLDER, shlex.quote(password)).replace(
        "127.0.0.1:8080", f"127.0.0.1:{server.http_port}"
    )


@pytest.mark.parametrize("doc", ["README.md", "docs/tutorial.md"])
def test_the_login_snippet_prints_the_device_list(
    doc: str, server: ServerThread, tmp_path: Path
) -> None:
    server.add_device("esp-kitchen")
    result = run_bash(login_snippet(doc, server, server.admin[1]), tmp_path)
    assert result.returncode == 0, result.stderr
    page = json.loads(result.stdout)
    assert [device["name"] for device in page["data"]] == ["esp-kitchen"]


def test_the_login_snippet_says_when_the_password_is_wrong(
    server: ServerThread, tmp_path: Path
) -> None:
    result = run_bash(login_snippet("README.md", server, "not-the-password"), tmp_path)
    assert result.stderr.startswith("invalid username or password\n"), result.stderr


TB_TOKEN = "'PASTE-THE-THINGSBOARD-TOKEN'"
TOKEN = "A1b2C3d4E5f6G7h8I9j0"  # as ThingsBoard makes them: 20 letters and digits


def run_simulate_block(block: str, server: ServerThread, cwd: Path) -> str:
    """A tutorial block with its host swapped for `server` and each simulate stopped after
    its first reading; what it printed."""
    here = f"--host 127.0.0.1 --port {server.mqtt_port}"
    script = block.replace(TB_TOKEN, TOKEN)
    script = script.replace(".venv/bin/tinyboard", f"{shlex.quote(sys.executable)} -m tinyboard")
    script = re.sub(r"--host (demo\.thingsboard\.io|127\.0\.0\.1)", here, script)
    script = re.sub(r"^(.* simulate .*)$", r"\1 --duration 2", script, flags=re.M)
    assert script.count(here) == 1 and script.count("--duration 2") == 1, script
    result = run_bash(script, cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def temperatures(server: ServerThread, name: str) -> list[object]:
    device = server.call(server.server.store.get_device(name))
    assert device.token == TOKEN
    with api(server) as rest:
        history = rest.get(
            f"/api/plugins/telemetry/DEVICE/{device.id}/values/timeseries",
            params={"keys": "temperature", "startTs": 0, "endTs": 2**62, "limit": 10},
        ).json()
    return list(history.get("temperature", []))


def test_the_tutorial_board_runs_on_thingsboard_and_on_tinyboard_by_changing_the_host(
    tmp_path: Path,
) -> None:
    """Milestone 3 on ThingsBoard's live demo: the tutorial's first block against a real server
    standing in for demo.thingsboard.io (first before the device exists there: a wrong token,
    as the tutorial describes it; then with the device made as in the ThingsBoard UI), the
    second against the reader's own server, where its `device add` gives the same token."""
    on_thingsboard = shell_block("docs/tutorial.md", "--host demo.thingsboard.io")
    on_tinyboard = shell_block("docs/tutorial.md", 'device add kitchen --token "$(cat tokens.txt)"')
    assert TB_TOKEN in on_thingsboard
    thingsboard = ServerThread(tmp_path / "thingsboard").start()
    tinyboard = ServerThread(tmp_path / "tinyboard-data").start()  # the dir `device add` uses
    try:
        refused = run_simulate_block(on_thingsboard, thingsboard, tmp_path)  # no such device
        assert "CONNACK refused (code 5): check the token" in refused, refused
        thingsboard.add_device("kitchen", token=TOKEN)
        assert "1 acknowledged by the server" in run_simulate_block(
            on_thingsboard, thingsboard, tmp_path
        )
        assert "1 acknowledged by the server" in run_simulate_block(
            on_tinyboard, tinyboard, tmp_path
        )
        assert len(temperatures(thingsboard, "kitchen")) == 1
        assert len(temperatures(tinyboard, "kitchen")) == 1
    finally:
        thingsboard.stop()
        tinyboard.stop()


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's ids for a file's headings: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_the_readme_links_work_on_the_package_index() -> None:
    """The package index shows README.md without the repository around it: every image and
    link is absolute, and each one into the repository names a file (and heading) that is
    there. The base is pyproject's Homepage."""
    home = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Homepage"]
    owner_repo = home.removeprefix("https://github.com/")
    bases = {
        "image": f"https://raw.githubusercontent.com/{owner_repo}/main/",
        "link": f"{home}/blob/main/",
    }
    readme = re.sub(r"^```.*?^```$", "", (ROOT / "README.md").read_text(), flags=re.M | re.S)
    links = re.findall(r"(!?)\[[^\]]*\]\(([^)\s]+)\)", readme)
    assert len(links) > 10
    for bang, target in links:
        base = bases["image" if bang else "link"]
        assert target.startswith(base), f"{target}: should start with {base}"
        path, _, anchor = target.removeprefix(base).partition("#")
        assert (ROOT / path).is_file(), f"{target}: no {path} in the repository"
        if anchor:
            assert anchor in heading_anchors((ROOT / path).read_text()), target
