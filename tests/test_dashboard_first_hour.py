"""A new user's first hour, in a real browser against real `tinyboard serve` processes: the
"Add device" snippets, copied from the dialog, are run as they are (mosquitto_pub, curl,
`tinyboard simulate`, both sketches built with g++) and store readings; the devices list on a
phone; dark mode."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.conftest import needed_tool
from tests.helpers import TINYBOARD, ServeProcess
from tests.test_dashboard import ADMIN, PHONE, api, base, browser, log_in
from tests.test_firmware import CORE, FIRMWARE, STRICT, run_sketch, tool
from tinyboard.addresses import lan_ipv4

pytestmark = pytest.mark.slow
__all__ = ["browser"]  # the shared Chromium fixture

DARK = re.compile(r"\bbody--dark\b")
NON_DEFAULT = {"line_port": 12000, "mqtt_port": 1883, "http_port": 8080}


def serve(data_dir: Path, *extra: str) -> Iterator[ServeProcess]:
    process = ServeProcess(data_dir, *extra)
    process.admin_password  # noqa: B018 - read it now, before anyone else reads stdout
    yield process
    process.signal(15)
    code, _, err = process.wait()
    assert code == 0, err
    assert "Traceback" not in err and "ERROR" not in err, err


@pytest.fixture(scope="module")
def lan_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """Listening on every address, as `tinyboard serve` does by default (on free ports)."""
    yield from serve(tmp_path_factory.mktemp("lan") / "data", "--bind", "0.0.0.0")


@pytest.fixture(scope="module")
def loopback_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    yield from serve(tmp_path_factory.mktemp("loopback") / "data")  # --bind 127.0.0.1


@pytest.fixture
def page(browser: Browser, lan_served: ServeProcess) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(10_000)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base(lan_served))
    tab = context.new_page()
    log_in(tab, lan_served)
    yield tab
    context.close()


def lan_host() -> str:
    hosts = lan_ipv4()
    if not hosts:
        pytest.skip("this machine has no LAN address for a board to use")
    return hosts[0]


def add_in_dialog(page: Page, name: str) -> str:
    """Add a device with the dialog; its token."""
    page.get_by_role("button", name="Add device").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("button", name="Create").click()
    return page.get_by_label("Access token").input_value()


def copied(page: Page, tab: str) -> str:
    """A snippet as the user gets it: the tab opened, its copy button pressed, the clipboard."""
    page.get_by_role("tab", name=tab, exact=True).click()
    page.evaluate("navigator.clipboard.writeText('')")
    page.locator(".q-tab-panel .nicegui-code-copy").click()
    page.wait_for_function("async () => (await navigator.clipboard.readText()) !== ''")
    text: str = page.evaluate("navigator.clipboard.readText()")
    return text


def stored(served: ServeProcess, name: str, key: str) -> list[float]:
    """Every stored value of one key of one device, over REST."""
    with api(served) as client:
        found = client.get("/api/tenant/devices", params={"deviceName": name}).json()
        values = client.get(
            f"/api/plugins/telemetry/DEVICE/{found['id']['id']}/values/timeseries",
            params={"keys": key, "startTs": 0, "endTs": 2**62, "limit": 10_000},
        ).json()
    return [float(point["value"]) for point in values.get(key, [])]


def until_stored(served: ServeProcess, name: str, key: str, count: int) -> list[float]:
    deadline = time.monotonic() + 10
    while len(values := stored(served, name, key)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return values


def run(command: list[str], seconds: float = 30) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds, check=False)
    assert done.returncode == 0, f"{shlex.join(command)}\n{done.stdout}{done.stderr}"
    return done


def test_snippets_copied_from_the_dialog_store_readings(
    page: Page, lan_served: ServeProcess
) -> None:
    """Opened via 127.0.0.1 (as on the server's own screen): the snippets name the LAN address
    a board needs and the ports the server is really on, and each one works as pasted."""
    needed_tool("mosquitto_pub", "mosquitto-clients")
    needed_tool("curl", "curl")
    host = lan_host()
    ports = {"line_port": lan_served.line_port, "mqtt_port": lan_served.mqtt_port}
    assert all(ports[k] != NON_DEFAULT[k] for k in ports)
    token = add_in_dialog(page, "first-board")
    expect(page.get_by_text(f"this computer's network address {host}")).to_be_visible()

    publish = copied(page, "mosquitto_pub")
    assert f"-h {host} -p {lan_served.mqtt_port}" in publish
    run(shlex.split(publish))
    assert until_stored(lan_served, "first-board", "temperature", 1) == [25.0]

    post = copied(page, "curl")
    assert f"http://{host}:{lan_served.http_port}/api/v1/{token}/telemetry" in post
    run(shlex.split(post))
    assert until_stored(lan_served, "first-board", "temperature", 2) == [25.0, 25.0]

    simulate = shlex.split(copied(page, "simulate"))
    assert simulate[:2] == ["tinyboard", "simulate"]
    run([*TINYBOARD, *simulate[1:], "--duration", "1"])
    assert until_stored(lan_served, "first-board", "humidity", 1)  # the simulated DHT22


def sketch_with(tmp_path: Path, sketch: str, settings: str) -> Path:
    """The shipped sketch with its settings block replaced by `settings`, as a user does."""
    text = (FIRMWARE / sketch / f"{sketch}.ino").read_text()
    start = text.index("// ---- settings")
    end = text.index("// ----", text.index("\n", start)) + 1
    end = text.index("\n", end) + 1
    assert text[start:end].count("\n") > 5  # the whole block, nothing more
    pasted = tmp_path / f"{sketch}.ino"
    pasted.write_text(text[:start] + settings + text[end:])
    return pasted


def test_the_sketch_snippets_build_and_the_tcp_one_sends_readings(
    page: Page, lan_served: ServeProcess, tmp_path: Path
) -> None:
    host = lan_host()
    add_in_dialog(page, "esp-first")
    mqtt = copied(page, "MQTT sketch")
    assert f'THINGSBOARD_SERVER[] = "{host}";' in mqtt
    assert f"THINGSBOARD_PORT = {lan_served.mqtt_port}U;" in mqtt
    subprocess.run(
        [
            tool("g++"), *STRICT, "-fsyntax-only", f"-I{FIRMWARE / 'host'}", f"-I{CORE}",
            "-x", "c++", str(sketch_with(tmp_path, "tinyboard_mqtt", mqtt)),
        ],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    tcp = copied(page, "TCP sketch")
    assert f'#define TINYBOARD_HOST "{host}"' in tcp
    assert f"#define TINYBOARD_PORT {lan_served.line_port} " in tcp
    binary = tmp_path / "tinyboard_tcp"
    subprocess.run(
        [
            tool("g++"), *STRICT, f"-I{FIRMWARE / 'host'}", f"-I{CORE}", "-DINTERVAL_MS=200UL",
            "-x", "c++", str(sketch_with(tmp_path, "tinyboard_tcp", tcp)),
            "-x", "none", str(FIRMWARE / "host" / "main.cpp"), str(CORE / "TinyboardCore.cpp"),
            "-o", str(binary),
        ],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = run_sketch(binary, 2)
    assert f"connecting to {host}:{lan_served.line_port}" in output
    assert "server: OK esp-first" in output
    assert until_stored(lan_served, "esp-first", "temperature", 1)


def test_the_token_and_snippets_can_be_shown_again(page: Page) -> None:
    """Closing the dialog before copying everything is no dead end."""
    token = add_in_dialog(page, "closed-too-soon")
    page.get_by_role("button", name="Done").click()
    page.get_by_role("button", name="Connect closed-too-soon").click()
    expect(page.get_by_label("Access token")).to_have_value(token)
    assert f'TOKEN[] = "{token}";' in copied(page, "MQTT sketch")


def test_a_page_opened_by_its_lan_address_gives_that_address(
    browser: Browser, lan_served: ServeProcess
) -> None:
    host = lan_host()
    context = browser.new_context()
    context.set_default_timeout(10_000)
    tab = context.new_page()
    url = f"http://{host}:{lan_served.http_port}"
    tab.goto(url + "/")
    tab.get_by_label("E-mail").fill(ADMIN)
    tab.get_by_label("Password").fill(lan_served.admin_password)
    tab.get_by_role("button", name="Log in").click()
    tab.wait_for_url("**/ui/devices")
    add_in_dialog(tab, "lan-board")
    expect(tab.get_by_text("loopback")).to_have_count(0)
    tab.get_by_role("tab", name="curl", exact=True).click()
    expect(tab.locator(".q-tab-panel .nicegui-code")).to_contain_text(f"{url}/api/v1/")
    context.close()


def test_a_server_on_loopback_only_says_no_board_can_reach_it(
    browser: Browser, loopback_served: ServeProcess
) -> None:
    context = browser.new_context()
    context.set_default_timeout(10_000)
    tab = context.new_page()
    log_in(tab, loopback_served)
    add_in_dialog(tab, "unreachable-board")
    warning = tab.get_by_role("alert")
    expect(warning).to_contain_text("listens on 127.0.0.1 only, so no board can reach it")
    expect(warning).to_contain_text("tinyboard serve --bind 0.0.0.0")
    expect(tab.locator(".q-tab-panel .nicegui-code")).to_contain_text(
        'THINGSBOARD_SERVER[] = "127.0.0.1";'
    )
    context.close()


# -- on a phone, and in the dark -----------------------------------------------------------
STICKING_OUT = """([el, left, right]) => [el, ...el.querySelectorAll("*")]
  .filter(e => e.getClientRects().length > 0 && !e.closest(".q-tabs, pre"))
  .filter(e => { const r = e.getBoundingClientRect();
                 return r.left < left - 0.5 || r.right > right + 0.5; })
  .map(e => e.outerHTML.slice(0, 120))"""
"""What of `el` shows outside [left, right] (in one go: the page re-renders while we look);
tabs and code scroll sideways by design."""


def sticking_out(part: Locator, left: float, right: float) -> list[str]:
    found: list[str] = part.evaluate(f"(el, [l, r]) => ({STICKING_OUT})([el, l, r])", [left, right])
    return found


def test_the_devices_list_fits_a_phone(browser: Browser, lan_served: ServeProcess) -> None:
    with api(lan_served) as client:
        made = client.post("/api/device", json={"name": "a-rather-long-device-name-on-a-phone"})
        device_id = made.json()["id"]["id"]
        token = client.get(f"/api/device/{device_id}/credentials").json()["credentialsId"]
    values = {"temperature": 21.5, "humidity": 40.25, "light": 512, "pressure": 1013.25}
    posted = httpx.post(f"{base(lan_served)}/api/v1/{token}/telemetry", json=values)
    assert posted.status_code == 200, posted.text
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    log_in(tab, lan_served)
    card = tab.get_by_test_id("device-card").filter(has_text="a-rather-long-device-name")
    expect(card).to_contain_text("pressure: 1013.25")  # every part of the row is there
    assert sticking_out(card, 0, PHONE["width"]) == []
    assert tab.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    tab.get_by_role("button", name="Delete a-rather-long-device-name-on-a-phone").click()
    expect(tab.get_by_text("and all its data?")).to_be_visible()
    tab.get_by_role("button", name="Cancel").click()
    add_in_dialog(tab, "phone-board")
    dialog = tab.locator(".q-dialog .q-card")
    assert sticking_out(dialog, 0, PHONE["width"]) == []
    area = dialog.bounding_box()
    assert area is not None  # and its text wrapped inside it, not cut off at its edge:
    assert sticking_out(dialog, area["x"], area["x"] + area["width"]) == []
    tab.get_by_role("button", name="Done").click()
    card.get_by_role("link").click()
    tab.wait_for_url(f"**/ui/device/{device_id}")
    context.close()


def test_the_wide_devices_table_keeps_its_columns(page: Page, lan_served: ServeProcess) -> None:
    with api(lan_served) as client:
        client.post("/api/device", json={"name": "on-a-desk"})
    page.reload()
    expect(page.get_by_role("columnheader", name="Latest values")).to_be_visible()
    expect(page.get_by_test_id("device-card")).to_have_count(0)


def shows_dark(tab: Page, dark: bool) -> None:
    body = expect(tab.locator("body"))
    if dark:
        body.to_have_class(DARK)
    else:
        body.not_to_have_class(DARK)


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_the_dashboard_follows_the_browser_then_the_toggle(
    browser: Browser, lan_served: ServeProcess, scheme: Literal["dark", "light"]
) -> None:
    context = browser.new_context(color_scheme=scheme)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    log_in(tab, lan_served)
    shows_dark(tab, scheme == "dark")
    tab.get_by_role("button", name="Dark or light mode").click()
    shows_dark(tab, scheme != "dark")
    tab.get_by_placeholder("Search by name").fill("no-such-device")  # the page updates...
    expect(tab.get_by_text("No data available")).to_be_visible()
    shows_dark(tab, scheme != "dark")  # ...and stays as the user chose
    tab.reload()
    expect(tab.get_by_role("button", name="Add device")).to_be_visible()
    shows_dark(tab, scheme != "dark")  # remembered by this browser, on every page
    tab.get_by_role("link", name="Connections").click()
    tab.wait_for_url("**/ui/connections")
    shows_dark(tab, scheme != "dark")
    context.close()
