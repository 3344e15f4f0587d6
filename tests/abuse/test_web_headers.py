"""Security headers (issue 13, point 13): no other site may frame the dashboard or the API
docs (clickjacking), and the Content-Security-Policy must not break NiceGUI or Swagger UI —
shown in a real Chromium against a real `tinyboard serve`."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.helpers import ServeProcess
from tests.mqtt_clients import Device
from tests.test_dashboard import add_device, api, base, browser, log_in

__all__ = ["browser"]  # the fixture, shared with the dashboard's own browser tests

pytestmark = pytest.mark.slow

PROTECTIVE = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
WATCH_CSP = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', e => window.cspViolations.push(
    `${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`));
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    process = ServeProcess(tmp_path_factory.mktemp("headers") / "data")
    process.admin_password  # noqa: B018 - read it now, before anyone else reads stdout
    yield process
    process.signal(15)
    code, _, err = process.wait()
    assert code == 0, err


def csp_of(response: httpx.Response) -> dict[str, str]:
    """The policy's directives by name."""
    directives = (
        d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";")
    )
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives if d[0]}


def assert_protected(response: httpx.Response) -> dict[str, str]:
    for name, value in PROTECTIVE.items():
        assert response.headers.get(name) == value, (response.url, name)
    policy = csp_of(response)
    assert policy["frame-ancestors"] == "'none'", response.url
    return policy


def test_every_kind_of_response_carries_the_headers(served: ServeProcess) -> None:
    with api(served) as client:
        device_id = add_device(served, "headers-board")["id"]
        static = client.get("/ui/login").text.split("/_nicegui/", 1)[1].split("/", 1)[0]
        answers = [
            client.get("/"),  # a redirect
            client.get("/ui/login"),  # a NiceGUI page
            client.get("/ui/devices"),  # a redirect to the login page
            client.get(f"/ui/_nicegui/{static}/static/nicegui.js"),  # NiceGUI's scripts
            client.get("/ui/export/x.csv"),
            client.get("/api/tenant/devices", params={"pageSize": 10, "page": 0}),
            client.get(f"/api/plugins/telemetry/DEVICE/{device_id}/export.csv"),
            client.get("/api/no-such-thing"),  # a JSON 404
            httpx.get(base(served) + "/api/auth/user"),  # a 401
            client.get("/docs"),
            client.get("/openapi.json"),
            client.get("/metrics"),
        ]
    for answer in answers:
        assert_protected(answer)
    pages = [a for a in answers if a.headers.get("content-type", "").startswith("text/html")]
    assert {str(a.url.path) for a in pages} >= {"/ui/login", "/docs"}
    for page in pages:  # what NiceGUI and Swagger UI need, and no more
        policy = csp_of(page)
        assert policy["default-src"] == "'self'"
        assert policy["script-src-attr"] == "'none'"
        assert policy["object-src"] == "'none'"
    for answer in answers:
        if answer not in pages:  # JSON, CSV, scripts, redirects: inert as documents
            assert csp_of(answer)["default-src"] == "'none'", answer.url


def test_the_dashboard_and_the_docs_run_under_the_policy(
    browser: Browser, served: ServeProcess
) -> None:
    """Every page of the dashboard, a live chart and Swagger UI: not one CSP violation."""
    device = add_device(served, "csp-board")
    board = Device(served.mqtt_port, device["token"])
    context = browser.new_context()
    context.set_default_timeout(10_000)
    context.add_init_script(WATCH_CSP)
    tab = context.new_page()
    console: list[str] = []
    tab.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: console.append(str(e)))
    try:
        board.publish("v1/devices/me/telemetry", json.dumps({"temperature": 20.5}))
        log_in(tab, served)
        seen = [violations(tab)]
        for path in ("/ui/connections", "/ui/alarms", "/ui/rules", "/ui/devices"):
            response = tab.goto(base(served) + path)
            assert response is not None and "frame-ancestors 'none'" in csp_header(response)
            tab.wait_for_load_state("networkidle")
            seen.append(violations(tab))
        tab.get_by_role("link", name="csp-board").click()
        tab.wait_for_url("**/ui/device/**")
        expect(tab.get_by_test_id("chart-temperature")).to_be_visible()
        board.publish("v1/devices/me/telemetry", json.dumps({"temperature": 21.5}))
        expect(tab.get_by_test_id("value-temperature")).to_have_text("21.5")
        tab.wait_for_function(  # the live point went through run_javascript (eval)
            """() => getElement(document.querySelector('[data-testid=chart-temperature]'))
                     .chart.getOption().series[0].data.some(p => p[1] !== 20.5)"""
        )
        seen.append(violations(tab))
        swagger(tab, served)
        seen.append(violations(tab))
    finally:
        board.close()
        context.close()
    assert seen == [[]] * len(seen)
    assert not [c for c in console if "Content Security Policy" in c], console


def test_injected_markup_cannot_run_an_inline_handler(
    browser: Browser, served: ServeProcess
) -> None:
    """What the policy buys despite NiceGUI's 'unsafe-inline': no onerror="..." runs."""
    context = browser.new_context()
    context.add_init_script(WATCH_CSP)
    tab = context.new_page()
    log_in(tab, served)
    tab.evaluate(
        """document.body.insertAdjacentHTML('beforeend',
               '<img src="/nothing-here.png" onerror="window.pwned = 1">')"""
    )
    tab.wait_for_function("window.cspViolations.length > 0")
    assert tab.evaluate("window.pwned") is None
    assert violations(tab)[0].startswith("script-src-attr")
    context.close()


def test_another_site_cannot_frame_the_dashboard_or_the_docs(
    browser: Browser, served: ServeProcess, attacker: str
) -> None:
    context = browser.new_context()
    context.set_default_timeout(10_000)
    tab = context.new_page()
    log_in(tab, served)  # a signed-in victim: the frames would show the real dashboard
    refused: list[str] = []
    tab.on("console", lambda m: refused.append(m.text) if "frame-ancestors" in m.text else None)
    tab.goto(f"{attacker}/?target={base(served)}")
    tab.wait_for_function("window.framesLoaded === 3")
    framed = [f for f in tab.frames if f != tab.main_frame]
    assert len(framed) == 3
    for frame in framed:
        assert not frame.url.startswith(base(served)), frame.url
    assert tab.frame_locator("#devices").get_by_role("button", name="Add device").count() == 0
    assert len(refused) == 3, refused
    context.close()


ATTACKER_PAGE = """<!doctype html><title>win a prize</title><body>
<script>
  window.framesLoaded = 0;
  const target = new URLSearchParams(location.search).get("target");
  for (const [id, path] of [["devices", "/ui/devices"], ["login", "/ui/login"],
                            ["docs", "/docs"]]) {
    const frame = document.createElement("iframe");
    frame.id = id;
    frame.onload = () => window.framesLoaded++;
    frame.src = target + path;
    document.body.append(frame);
  }
</script>"""


@pytest.fixture(scope="module")
def attacker() -> Iterator[str]:
    """A page on another origin (another port) that frames the dashboard."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = ATTACKER_PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def violations(tab: Page) -> list[str]:
    found: list[str] = tab.evaluate("window.cspViolations")
    return found


def csp_header(response: Any) -> str:
    value: str = response.header_value("content-security-policy") or ""
    return value


def swagger(tab: Page, served: ServeProcess) -> None:
    """Swagger UI, with an operation opened and tried (its select arrows are data: SVGs)."""
    response = tab.goto(base(served) + "/docs")
    assert response is not None and "frame-ancestors 'none'" in csp_header(response)
    expect(tab.locator(".opblock").first).to_be_visible()
    tab.locator(".opblock-summary").first.click()
    tab.get_by_role("button", name="Try it out").first.click()
    tab.get_by_role("button", name="Execute").first.click()
    expect(tab.locator(".live-responses-table").first).to_be_visible()
