"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real
`tinyboard serve` process, with real paho-mqtt devices and the line protocol.

Set TINYBOARD_SCREENSHOTS=docs/img to refresh the README's screenshots
(`scripts/screenshots` does that).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.conftest import IN_CI
from tests.helpers import LineClient, ServeProcess, tinyboard
from tests.mqtt_clients import Device

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN = "admin@tinyboard.local"
PHONE = {"width": 390, "height": 844}
DEAD_WEBHOOK = "http://127.0.0.1:9/nobody-listens"
SCREENSHOTS = os.environ.get("TINYBOARD_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail("Chromium is missing at /usr/bin/chromium; .ci/run installs it")
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    # a webhook nobody answers: the Alarms page must say so
    process = ServeProcess(  # on every address, as `tinyboard serve` listens by default
        tmp_path_factory.mktemp("dashboard") / "data", "--alarm-webhook", DEAD_WEBHOOK,
        "--bind", "0.0.0.0",
    )  # fmt: skip
    process.admin_password  # noqa: B018 - read it now, before anyone else reads stdout
    yield process
    process.signal(15)
    code, _, err = process.wait()
    assert code == 0, err
    assert "Traceback" not in err and "ERROR" not in err, err


def base(served: ServeProcess) -> str:
    return f"http://127.0.0.1:{served.http_port}"


@contextlib.contextmanager
def api(served: ServeProcess) -> Iterator[httpx.Client]:
    """A REST client logged in as the admin."""
    with httpx.Client(base_url=base(served), timeout=30) as client:
        token = client.post(
            "/api/auth/login", json={"username": ADMIN, "password": served.admin_password}
        ).json()["token"]
        client.headers["X-Authorization"] = f"Bearer {token}"
        yield client


def log_in(page: Page, served: ServeProcess) -> None:
    page.goto(base(served) + "/")
    page.get_by_label("E-mail").fill(ADMIN)
    page.get_by_label("Password").fill(served.admin_password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui/devices")
    expect(page.get_by_role("button", name="Add device")).to_be_visible()


class Requests:
    """Every URL the browser asked for, to show the dashboard needs nothing off this host."""

    def __init__(self, context: BrowserContext) -> None:
        self.urls: list[str] = []
        context.on("request", lambda request: self.urls.append(request.url))

    def off_host(self) -> list[str]:
        return [
            u
            for u in self.urls
            if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).hostname != "127.0.0.1"
        ]


@pytest.fixture
def page(browser: Browser, served: ServeProcess) -> Iterator[Page]:
    """A logged-in tab. After the test: no request left 127.0.0.1."""
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(10_000)
    requests = Requests(context)
    tab = context.new_page()
    log_in(tab, served)
    yield tab
    context.close()
    assert requests.urls, "the browser made no requests at all"
    assert requests.off_host() == []


def add_device(served: ServeProcess, name: str) -> dict[str, str]:
    """A device made over REST: {"id", "token"}."""
    with api(served) as client:
        device_id = client.post("/api/device", json={"name": name}).json()["id"]["id"]
        token = client.get(f"/api/device/{device_id}/credentials").json()["credentialsId"]
    return {"id": device_id, "token": token}


def shot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def chart_points(page: Page, key: str) -> list[list[float]]:
    points: list[list[float]] = page.evaluate(
        """key => getElement(document.querySelector(`[data-testid=chart-${key}]`))
                 .chart.getOption().series[0].data""",
        key,
    )
    return points


# -- without a browser session ------------------------------------------------------------
def test_root_goes_to_the_dashboard_and_the_api_stays_json(served: ServeProcess) -> None:
    with httpx.Client(base_url=base(served)) as client:
        assert client.get("/").headers["location"] == "/ui/devices"
        to_login = client.get("/ui/devices")
        assert to_login.status_code == 303
        assert to_login.headers["location"] == "/ui/login?next=/ui/devices"
        missing = client.get("/api/no-such-thing")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/json"
        export = client.get("/ui/export/whatever.csv")
        assert export.status_code == 303 and export.headers["location"] == "/ui/login"
        # a forged or stolen REST token is not a session cookie
        with api(served) as rest:
            jwt = rest.headers["X-Authorization"].split()[1]
        client.cookies.set("tinyboard_session", jwt)
        assert client.get("/ui/devices").status_code == 303
        client.cookies.clear()
        # a ticket is used once, and an unknown one leads back to the login page
        assert client.get("/ui/session?ticket=forged").headers["location"] == "/ui/login"


def test_login_refuses_a_wrong_password_then_lets_the_user_in(
    browser: Browser, served: ServeProcess
) -> None:
    context = browser.new_context()
    context.set_default_timeout(10_000)
    tab = context.new_page()
    tab.goto(base(served) + "/ui/devices")
    tab.wait_for_url("**/ui/login?next=/ui/devices")
    shot(tab, "login")
    tab.get_by_label("E-mail").fill(ADMIN)
    tab.get_by_label("Password").fill("not the password")
    tab.get_by_role("button", name="Log in").click()
    expect(tab.get_by_text("wrong e-mail or password")).to_be_visible()
    assert "/ui/login" in tab.url
    tab.get_by_label("Password").fill(served.admin_password)
    tab.get_by_label("Password").press("Enter")
    tab.wait_for_url("**/ui/devices")
    expect(tab.get_by_text(ADMIN)).to_be_visible()
    tab.get_by_role("button", name="Log out").click()
    tab.wait_for_url("**/ui/login")
    tab.goto(base(served) + "/ui/devices")
    tab.wait_for_url("**/ui/login?next=/ui/devices")
    context.close()


def test_a_new_server_explains_how_to_add_a_device(browser: Browser, tmp_path: Path) -> None:
    fresh = ServeProcess(tmp_path / "data")
    try:
        context = browser.new_context()
        tab = context.new_page()
        log_in(tab, fresh)
        expect(tab.get_by_text("No devices yet — here is how to add one")).to_be_visible()
        expect(tab.get_by_text("tinyboard device add NAME")).to_be_visible()
        shot(tab, "devices-empty")
        tab.get_by_role("link", name="Connections").click()
        expect(tab.get_by_text("Nobody is connected.")).to_be_visible()
        # a password change ends every dashboard session of that user
        changed = tinyboard(
            "user", "passwd", ADMIN, "--password", "a-new-long-password",
            "--data-dir", str(tmp_path / "data"),
        )  # fmt: skip
        assert changed.returncode == 0, changed.stderr
        tab.goto(base(fresh) + "/ui/devices")
        tab.wait_for_url("**/ui/login?next=/ui/devices")
        context.close()
    finally:
        fresh.signal(15)
        fresh.wait()


# -- the course's milestone 3: a device's values, live -------------------------------------
def test_add_a_device_then_watch_its_mqtt_telemetry_live(page: Page, served: ServeProcess) -> None:
    page.get_by_role("button", name="Add device").click()
    page.get_by_label("Name").fill("greenhouse")
    page.get_by_role("button", name="Create").click()
    token = page.get_by_label("Access token").input_value()
    assert len(token) >= 16
    sketch = page.locator(".q-tab-panel .nicegui-code")  # the rest: test_dashboard_first_hour
    expect(sketch).to_contain_text(f'TOKEN[] = "{token}"')
    expect(sketch).to_contain_text(f"THINGSBOARD_PORT = {served.mqtt_port}U")
    shot(page, "add-device")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base(served))
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.get_by_text("Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == token
    page.get_by_role("button", name="Done").click()
    page.get_by_role("link", name="greenhouse").click()
    page.wait_for_url("**/ui/device/**")
    expect(page.get_by_text("No telemetry yet.")).to_be_visible()
    page.evaluate("window.sameDocument = true")

    board = Device(served.mqtt_port, token)
    try:
        board.publish("v1/devices/me/telemetry", json.dumps({"temperature": 21.5}))
        expect(page.get_by_test_id("value-temperature")).to_have_text("21.5")
        expect(page.get_by_test_id("chart-temperature")).to_be_visible()
        page.wait_for_function(
            """() => getElement(document.querySelector('[data-testid=chart-temperature]'))
                     ?.chart?.getOption().series[0].data.length >= 1"""
        )
        for value in (22.0, 22.5, 23.25):
            board.publish("v1/devices/me/telemetry", json.dumps({"temperature": value}))
            expect(page.get_by_test_id("value-temperature")).to_have_text(str(value))
            time.sleep(0.2)  # values in different chart buckets (1 h range: 1.8 s each) or not
        page.wait_for_function(
            """() => { const d = getElement(document.querySelector(
                         '[data-testid=chart-temperature]')).chart.getOption().series[0].data;
                       return d[d.length - 1][1] !== 21.5; }"""
        )
        points = chart_points(page, "temperature")
        times = [ts for ts, _ in points]
        assert times == sorted(set(times))  # no point twice, none drawn backwards
        values = [v for _, v in points]
        assert min(values) >= 21.5 and max(values) <= 23.25
        assert page.evaluate("window.sameDocument") is True  # live: the page never reloaded
        expect(page.get_by_test_id("status")).to_contain_text("online · mqtt")
        shot(page, "device")
    finally:
        board.close()


def test_device_input_is_shown_never_run(page: Page, served: ServeProcess) -> None:
    """Telemetry keys and names come from devices: NiceGUI must never see them as props."""
    device = add_device(served, "Grüße <b>board</b>")
    hostile = 'x :title="window.pwned = 1" onmouseover="window.pwned = 2"'
    board = Device(served.mqtt_port, device["token"])
    try:
        board.publish("v1/devices/me/telemetry", json.dumps({hostile: 7, "ok": 1.5}))
        page.goto(f"{base(served)}/ui/device/{device['id']}")
        expect(page.get_by_test_id(f"value-{hostile}")).to_have_text("7")
        expect(page.get_by_text("Grüße <b>board</b>").first).to_be_visible()  # text, not HTML
        page.get_by_test_id(f"value-{hostile}").hover()
        assert page.evaluate("window.pwned") is None
        with page.expect_download() as download:
            page.get_by_role("button", name="CSV").click()
        name = download.value.suggested_filename  # Chromium swaps < and > for _ on disk
        assert name.startswith("Grüße ") and name.endswith("board__b_.csv")
        rows = list(csv.reader(Path(download.value.path()).read_text().splitlines()))
        assert [hostile, "7"] in [row[1:3] for row in rows]
    finally:
        board.close()


def test_long_ranges_are_averaged_to_at_most_2000_points(page: Page, served: ServeProcess) -> None:
    device = add_device(served, "weather-station")
    now = int(time.time() * 1000)
    minute = 60_000
    points = [
        {"ts": now - i * minute, "values": {"temperature": 20 + (i % 60) / 10}}
        for i in range(7 * 24 * 60)
    ]
    with httpx.Client(base_url=base(served), timeout=60) as client:
        for start in range(0, len(points), 500):
            posted = client.post(
                f"/api/v1/{device['token']}/telemetry", json=points[start : start + 500]
            )
            assert posted.status_code == 200, posted.text
    page.goto(f"{base(served)}/ui/device/{device['id']}?range=7d")  # bookmarkable range
    expect(page.get_by_test_id("chart-temperature")).to_be_visible()
    page.wait_for_function(
        """() => getElement(document.querySelector('[data-testid=chart-temperature]'))
                 .chart.getOption().series[0].data.length > 1000"""
    )
    week = chart_points(page, "temperature")
    assert 1000 < len(week) <= 2000  # 10,080 stored points, averaged by the database
    assert all(20 <= v <= 26 for _, v in week)
    page.get_by_text("1 h", exact=True).click()
    page.wait_for_function(
        """() => getElement(document.querySelector('[data-testid=chart-temperature]'))
                 .chart.getOption().series[0].data.length <= 61"""
    )
    assert 59 <= len(chart_points(page, "temperature")) <= 61  # one per minute: unaveraged

    with page.expect_download() as download:
        page.get_by_role("button", name="CSV").click()
    rows = Path(download.value.path()).read_text().splitlines()
    assert rows[0] == "ts,key,value,time"
    assert 59 <= len(rows) - 1 <= 61  # the shown hour, not the week
    assert all(row.split(",")[1] == "temperature" for row in rows[1:])


def test_a_shared_attribute_edited_in_the_page_reaches_the_device(
    page: Page, served: ServeProcess
) -> None:
    device = add_device(served, "thermostat")
    board = Device(served.mqtt_port, device["token"])
    try:
        board.subscribe("v1/devices/me/attributes")
        page.goto(f"{base(served)}/ui/device/{device['id']}")
        page.get_by_label("Key").fill("targetTemperature")
        page.get_by_label("Value (JSON or text)").fill("23.5")
        page.get_by_role("button", name="Save and push to the device").click()
        pushed = board.next_message()
        assert pushed.topic == "v1/devices/me/attributes"
        assert json.loads(pushed.payload) == {"targetTemperature": 23.5}
        shared = page.get_by_test_id("attributes-shared")
        expect(shared).to_contain_text("targetTemperature")
        expect(shared).to_contain_text("23.5")
        # a client attribute sent by the device appears in its tab without reloading
        board.publish("v1/devices/me/attributes", json.dumps({"firmware": "1.2.0"}))
        page.get_by_role("tab", name="Client").click()
        expect(page.get_by_test_id("attributes-client")).to_contain_text("1.2.0")
    finally:
        board.close()


def test_the_rpc_console_shows_replies_deliveries_and_failures(
    page: Page, served: ServeProcess
) -> None:
    device = add_device(served, "relay")
    board = Device(served.mqtt_port, device["token"])

    def answer(client: Any, userdata: Any, message: Any) -> None:
        request_id = message.topic.rsplit("/", 1)[1]
        request = json.loads(message.payload)
        board.messages.put(message)
        reply = {"echo": request["params"], "method": request["method"]}
        client.publish(f"v1/devices/me/rpc/response/{request_id}", json.dumps(reply), qos=1)

    board.client.on_message = answer
    try:
        board.subscribe("v1/devices/me/rpc/request/+")
        page.goto(f"{base(served)}/ui/device/{device['id']}")
        page.get_by_label("Method").fill("setRelay")
        page.get_by_label("Params (JSON)").fill('{"on": true}')
        page.get_by_role("button", name="Send").click()
        reply = page.get_by_test_id("rpc-reply")
        expect(reply).to_contain_text('"method": "setRelay"')
        expect(reply).to_contain_text('"on": true')
        shot(page, "device-rpc")

        page.get_by_text("one-way", exact=True).click()
        page.get_by_role("button", name="Send").click()
        expect(reply).to_contain_text("delivered to the device")

        page.get_by_label("Params (JSON)").fill("{not json")
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_text("params must be JSON")).to_be_visible()
    finally:
        board.close()
    page.get_by_label("Params (JSON)").fill("{}")
    page.get_by_text("two-way", exact=True).click()
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_test_id("rpc-reply")).to_contain_text("error:")


def test_the_connections_page_shows_the_live_registry(page: Page, served: ServeProcess) -> None:
    device = add_device(served, "chatty-board")
    board = Device(served.mqtt_port, device["token"])
    chat = LineClient(served.line_port)
    try:
        assert chat.ask("hello") == "HELLO"
        page.get_by_role("link", name="Connections").click()
        page.wait_for_url("**/ui/connections")
        table = page.locator(".q-table")
        expect(table).to_contain_text("chatty-board")
        expect(table).to_contain_text("mqtt")
        expect(table).to_contain_text("line")
        expect(table).to_contain_text("anonymous")
        shot(page, "connections")
        chat.close()
        expect(table).not_to_contain_text("anonymous")  # updates live, no reload
        page.get_by_role("link", name="chatty-board").click()
        page.wait_for_url(f"**/ui/device/{device['id']}")
    finally:
        board.close()


def test_search_and_delete_with_confirmation(page: Page, served: ServeProcess) -> None:
    doomed = add_device(served, "to-delete-1")
    add_device(served, "to-keep-1")
    board = Device(served.mqtt_port, doomed["token"])
    try:
        page.get_by_placeholder("Search by name").fill("to-")
        table = page.locator(".q-table")
        expect(table).to_contain_text("to-delete-1")
        expect(table).not_to_contain_text("greenhouse")
        shot(page, "devices")
        page.get_by_role("button", name="Delete to-delete-1").click()
        page.get_by_role("button", name="Cancel").click()
        expect(table).to_contain_text("to-delete-1")
        page.get_by_role("button", name="Delete to-delete-1").click()
        expect(page.get_by_text("Delete to-delete-1 and all its data?")).to_be_visible()
        page.get_by_role("button", name="Delete", exact=True).click()
        expect(table).not_to_contain_text("to-delete-1")
        expect(table).to_contain_text("to-keep-1")
        board.disconnected.get(timeout=10)  # its connection was closed
        page.get_by_role("button", name="Add device").click()
        page.get_by_label("Name").fill("to-keep-1")
        page.get_by_role("button", name="Create").click()
        expect(page.get_by_text("a device with this name already exists")).to_be_visible()
    finally:
        board.close()
    with api(served) as client:
        assert client.get(f"/api/device/{doomed['id']}").status_code == 404


def test_the_api_docs_need_no_internet(browser: Browser, served: ServeProcess) -> None:
    context = browser.new_context()
    requests = Requests(context)
    tab = context.new_page()
    tab.goto(base(served) + "/docs")
    expect(tab.locator(".swagger-ui .info").first).to_contain_text("tinyboard")
    expect(tab.locator(".opblock").first).to_be_visible()  # the operations rendered
    context.close()
    assert requests.off_host() == []
    assert httpx.get(base(served) + "/redoc").status_code == 404  # ReDoc would fetch a CDN logo


def test_rules_raise_alarms_that_people_see_acknowledge_and_clear(
    page: Page, served: ServeProcess
) -> None:
    device = add_device(served, "alarm-board")
    page.get_by_role("link", name="Rules").click()
    page.wait_for_url("**/ui/rules")
    expect(page.get_by_text("No rules yet.")).to_be_visible()
    page.get_by_label("Applies to").click()
    page.get_by_role("option", name="one device").click()
    page.get_by_label("Device", exact=True).click()
    page.get_by_role("option", name="alarm-board").click()
    page.get_by_label("Telemetry key").fill("temperature")
    page.get_by_label("Value", exact=True).fill("30")
    page.get_by_label("Clear when (optional)").click()
    page.get_by_role("option", name="<", exact=True).click()
    page.get_by_label("Clear value").fill("28")
    page.get_by_label("Alarm type").fill("Too hot")
    page.get_by_role("button", name="Add rule").click()
    rules = page.locator(".q-table")
    expect(rules).to_contain_text('temperature > 30, clear when temperature < 28 → MAJOR "Too hot"')
    expect(rules).to_contain_text("device alarm-board")
    shot(page, "rules")

    page.get_by_role("link", name="Alarms").click()
    page.wait_for_url("**/ui/alarms")
    board = Device(served.mqtt_port, device["token"])
    try:
        board.publish("v1/devices/me/telemetry", json.dumps({"temperature": 35.5}))
        table = page.locator(".q-table")
        expect(table).to_contain_text("alarm-board")  # appears live, no reload
        expect(table).to_contain_text("temperature = 35.5")
        expect(table).to_contain_text("active unack")
        expect(page.get_by_test_id("webhook-failing")).to_contain_text(DEAD_WEBHOOK)
        shot(page, "alarms")
        page.get_by_role("button", name="Acknowledge Too hot on alarm-board").click()
        expect(table).to_contain_text("active ack")

        page.goto(base(served) + "/ui/devices")
        page.get_by_placeholder("Search by name").fill("alarm-")
        expect(page.locator(".q-table")).to_contain_text("MAJOR")
        page.goto(f"{base(served)}/ui/device/{device['id']}")
        device_alarms = page.locator(".q-table").last
        expect(device_alarms).to_contain_text("Too hot")
        page.get_by_role("button", name="Clear Too hot on alarm-board").click()
        expect(device_alarms).to_contain_text("cleared ack")

        board.publish("v1/devices/me/telemetry", json.dumps({"temperature": 20}))
        board.publish("v1/devices/me/telemetry", json.dumps({"temperature": 40}))
        expect(device_alarms).to_contain_text("active unack")  # a new episode, live
    finally:
        board.close()
    page.goto(base(served) + "/ui/rules")
    page.get_by_role("button", name="Delete Too hot").click()
    expect(page.get_by_text("No rules yet.")).to_be_visible()


def test_pages_fit_a_phone_screen(browser: Browser, served: ServeProcess) -> None:
    device = add_device(served, "phone-check")
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    tab = context.new_page()
    log_in(tab, served)
    pages = ("/ui/connections", "/ui/alarms", "/ui/rules", "/ui/devices")
    for path in (*pages, f"/ui/device/{device['id']}"):
        tab.goto(base(served) + path)
        tab.wait_for_load_state("networkidle")
        overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than the phone"
    shot(tab, "phone-device")
    tab.get_by_role("button", name="Menu").click()
    tab.get_by_role("link", name="Devices").click()
    tab.wait_for_url("**/ui/devices")
    context.close()
