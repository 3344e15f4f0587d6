"""The device page's charts, times, units and RPC suggestions in a real browser (Debian's
Chromium via Playwright) against a real `tinyboard serve`, in a time zone that is not the
server's: Asia/Kolkata, UTC+05:30, so a time shown in UTC is off by a visible 5 h 30 min."""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests import test_dashboard as dash
from tests.mqtt_clients import Device
from tinyboard.dashboard.charts import RANGES
from tinyboard.sim.board import Board
from tinyboard.sim.sensors import Sensors

pytestmark = pytest.mark.slow

browser = dash.browser
served = dash.served
ZONE = "Asia/Kolkata"
KOLKATA = ZoneInfo(ZONE)
MINUTE = 60_000
ZONE_LABEL = r"Times in Asia/(Kolkata|Calcutta) \(UTC\+05:30\)"  # Chromium says Calcutta


@pytest.fixture
def tab(browser: Browser, served: dash.ServeProcess) -> Iterator[Page]:
    """A logged-in tab whose browser lives in Asia/Kolkata."""
    context = browser.new_context(accept_downloads=True, timezone_id=ZONE)
    context.set_default_timeout(10_000)
    page = context.new_page()
    dash.log_in(page, served)
    yield page
    context.close()


def post(served: dash.ServeProcess, token: str, points: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=dash.base(served), timeout=60) as client:
        for start in range(0, len(points), 500):
            sent = client.post(f"/api/v1/{token}/telemetry", json=points[start : start + 500])
            assert sent.status_code == 200, sent.text


def open_device(page: Page, served: dash.ServeProcess, device_id: str, query: str = "") -> None:
    page.goto(f"{dash.base(served)}/ui/device/{device_id}{query}")
    expect(page.get_by_test_id("time-zone")).to_be_visible()


def chart(page: Page, key: str) -> dict[str, Any]:
    """The options the browser's ECharts instance holds for `key`'s chart."""
    option: dict[str, Any] = page.evaluate(
        """key => { const o = getElement(document.querySelector(`[data-testid=chart-${key}]`))
                      .chart.getOption();
                    return {min: o.xAxis[0].min, max: o.xAxis[0].max, title: o.title[0].text,
                            showSymbol: o.series[0].showSymbol, points: o.series[0].data}; }""",
        key,
    )
    return option


def painted(page: Page) -> None:
    """Wait for ECharts to paint what it was given (it draws on the next animation frame)."""
    page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def shown_time(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, KOLKATA).strftime("%Y-%m-%d %H:%M:%S")


# -- 1. a chart shows exactly the chosen range ------------------------------------------------
def test_a_chart_spans_the_chosen_range_and_a_lone_reading_shows(
    tab: Page, served: dash.ServeProcess
) -> None:
    device = dash.add_device(served, "range-board")
    now = int(time.time() * 1000)
    lone = now - 10 * MINUTE
    post(served, device["token"], [
        {"ts": lone, "values": {"temperature": 21.5}},
        {"ts": now - 2 * 3_600_000, "values": {"humidity": 40}},  # outside the last hour
        *({"ts": now - i * 30_000, "values": {"pressure": 1000 + i}} for i in range(100)),
    ])  # fmt: skip
    open_device(tab, served, device["id"])
    expect(tab.get_by_test_id("chart-temperature")).to_be_visible()
    temperature = chart(tab, "temperature")
    assert temperature["max"] - temperature["min"] == RANGES["1 h"] + 1  # the hour, ...
    assert temperature["max"] >= now  # ... ending now, not at the newest reading
    [(bucket, value)] = temperature["points"]  # reported at its bucket's middle
    assert value == 21.5 and temperature["min"] < bucket < temperature["max"]
    assert temperature["showSymbol"] is True  # one reading: a marker, or nothing would show
    assert chart(tab, "pressure")["showSymbol"] is False  # 100 points: the line alone
    expect(tab.get_by_test_id("no-readings-humidity")).to_have_text(
        "No readings of humidity in the last 1 h."
    )
    expect(tab.get_by_test_id("chart-humidity")).to_be_hidden()

    # a live range moves on with the clock, with no new reading
    tab.wait_for_function(
        """max => getElement(document.querySelector('[data-testid=chart-temperature]'))
                  .chart.getOption().xAxis[0].max > max""",
        arg=temperature["max"],
    )
    tab.get_by_text("5 min", exact=True).click()
    expect(tab.get_by_test_id("no-readings-temperature")).to_have_text(
        "No readings of temperature in the last 5 min."
    )
    expect(tab.get_by_test_id("chart-temperature")).to_be_hidden()
    five = chart(tab, "pressure")
    assert five["max"] - five["min"] == RANGES["5 min"] + 1
    assert five["showSymbol"] is True  # 10 points in view

    # a custom range is read in the browser's zone and shown exactly
    start = datetime.fromtimestamp((lone - 5 * MINUTE) / 1000, KOLKATA).replace(second=0)
    start = start.replace(microsecond=0)
    end = datetime.fromtimestamp((lone + 3 * MINUTE) / 1000, KOLKATA).replace(second=0)
    end = end.replace(microsecond=0)
    tab.get_by_text("custom", exact=True).click()
    tab.get_by_label("From").fill(start.strftime("%Y-%m-%dT%H:%M"))
    tab.get_by_label("To").fill(end.strftime("%Y-%m-%dT%H:%M"))
    tab.get_by_role("button", name="Show").click()
    expect(tab.get_by_test_id("chart-temperature")).to_be_visible()
    custom = chart(tab, "temperature")
    assert (custom["min"], custom["max"]) == (start.timestamp() * 1000, end.timestamp() * 1000)
    assert [value for _, value in custom["points"]] == [21.5]
    expect(tab.get_by_test_id("no-readings-humidity")).to_have_text(
        f"No readings of humidity between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M}."
    )


# -- 2. one time zone on a page: the browser's, named ----------------------------------------
def test_cards_charts_tables_and_csv_use_the_browser_s_zone(
    tab: Page, served: dash.ServeProcess
) -> None:
    device = dash.add_device(served, "zone-board")
    ts = int(time.time() * 1000) - 5 * MINUTE + 123
    post(served, device["token"], [{"ts": ts, "values": {"temperature": 20.25}}])
    with dash.api(served) as client:
        path = f"/api/plugins/telemetry/DEVICE/{device['id']}"
        client.post(f"{path}/attributes/SHARED_SCOPE", json={"targetTemperature": 22})
        updated = client.get(f"{path}/values/attributes/SHARED_SCOPE").json()[0]["lastUpdateTs"]
    open_device(tab, served, device["id"])
    expect(tab.get_by_test_id("time-zone")).to_have_text(re.compile(ZONE_LABEL))
    expect(tab.get_by_test_id("time-temperature")).to_have_text(shown_time(ts))
    expect(tab.get_by_test_id("attributes-shared")).to_contain_text(shown_time(updated))

    # the chart's tooltip, at the reading
    element = tab.get_by_test_id("chart-temperature")
    expect(element).to_be_visible()
    painted(tab)
    x, y = tab.evaluate(
        """ts => getElement(document.querySelector('[data-testid=chart-temperature]'))
                 .chart.convertToPixel({seriesIndex: 0}, [ts, 20.25])""",
        ts,
    )
    box = element.bounding_box()
    assert box is not None
    tab.mouse.move(box["x"] + x, box["y"] + y)
    [(bucket, _)] = chart(tab, "temperature")["points"]  # the bucket's middle, near ts
    expect(element).to_contain_text(f"{shown_time(bucket)}temperature20.25")

    with tab.expect_download() as download:
        tab.get_by_role("button", name="CSV").click()
    rows = list(csv.reader(Path(download.value.path()).read_text().splitlines()))
    iso = datetime.fromtimestamp(ts / 1000, KOLKATA).isoformat(timespec="milliseconds")
    assert rows[1:] == [[str(ts), "temperature", "20.25", iso]]
    assert iso.endswith("+05:30")


# -- 3. units -------------------------------------------------------------------------------
def test_units_from_the_server_attribute_show_in_cards_charts_and_alarms(
    tab: Page, served: dash.ServeProcess
) -> None:
    device = dash.add_device(served, "unit-board")
    post(served, device["token"], [{"temperature": 23.456, "humidity": 40, "note": "ok"}])
    path = f"/api/plugins/telemetry/DEVICE/{device['id']}/attributes/SERVER_SCOPE"
    units = {"temperature": {"units": "°C", "decimals": 1}, "humidity": "%", "note": "x"}
    rule = {"deviceId": device["id"], "key": "temperature", "condition": {"op": ">", "value": 20},
            "severity": "MINOR", "alarmType": "Warm"}  # fmt: skip
    with dash.api(served) as client:
        assert client.post(path, json={"units": units}).status_code == 200
        assert client.post("/api/alarmRule", json=rule).status_code == 200
    post(served, device["token"], [{"temperature": 23.456}])
    open_device(tab, served, device["id"])
    expect(tab.get_by_test_id("value-temperature")).to_have_text("23.5 °C")
    expect(tab.locator(".q-table").last).to_contain_text("temperature = 23.5 °C")
    expect(tab.get_by_test_id("value-humidity")).to_have_text("40 %")
    expect(tab.get_by_test_id("value-note")).to_have_text("ok")  # text has no unit
    expect(tab.get_by_test_id("chart-temperature")).to_be_visible()
    assert chart(tab, "temperature")["title"] == "temperature (°C)"
    formatted = tab.evaluate(
        """() => getElement(document.querySelector('[data-testid=chart-temperature]'))
                 .chart.getOption().tooltip[0].valueFormatter(23.456)"""
    )
    assert formatted == "23.5 °C"
    tab.goto(f"{dash.base(served)}/ui/devices")  # the devices list shows them too
    expect(tab.get_by_text("humidity: 40 %, note: ok, temperature: 23.5 °C")).to_be_visible()
    open_device(tab, served, device["id"])

    # changed over REST while the page is open: the page follows
    with dash.api(served) as client:
        units["temperature"] = {"units": "K", "decimals": 2}
        assert client.post(path, json={"units": units}).status_code == 200
    expect(tab.get_by_test_id("value-temperature")).to_have_text("23.46 K")


# -- 4. the RPC console suggests what the board answers --------------------------------------
def test_the_rpc_console_suggests_the_firmware_s_methods_then_the_answered_ones(
    tab: Page, served: dash.ServeProcess
) -> None:
    device = dash.add_device(served, "rpc-board")
    mqtt = Device(served.mqtt_port, device["token"])
    board = Board("rpc-board", Sensors("temperature"))  # answers as the firmware does

    def answer(client: Any, _: Any, message: Any) -> None:
        request = json.loads(message.payload)
        reply = board.on_rpc(request["method"], request.get("params"))
        response = message.topic.replace("request", "response")
        client.publish(response, json.dumps(reply), qos=1)

    mqtt.client.on_message = answer
    try:
        mqtt.subscribe("v1/devices/me/rpc/request/+")
        open_device(tab, served, device["id"])
        method = tab.get_by_label("Method")
        expect(method).to_have_value("getReading")
        assert suggested(tab) == ["getReading", "getLed", "setLed"]
        method.fill("setLed")
        tab.get_by_label("Params (JSON)").fill('{"enabled": true}')
        tab.get_by_role("button", name="Send").click()
        reply = tab.get_by_test_id("rpc-reply")
        expect(reply).to_contain_text('"led": true')
        method.fill("blink")  # the board answers {"error": ...}: not a method to suggest
        tab.get_by_role("button", name="Send").click()
        expect(reply).to_contain_text("try setLed, getLed or getReading")
        tab.reload()
        expect(tab.get_by_label("Method")).to_have_value("setLed")
        assert suggested(tab) == ["setLed", "getReading", "getLed"]
    finally:
        mqtt.close()


def suggested(page: Page) -> list[str]:
    """The drop-down's choices of the Method input (its datalist)."""
    choices: list[str] = page.get_by_label("Method").evaluate(
        "input => [...input.list.options].map(option => option.value)"
    )
    return choices


# -- 5. a phone, and dark mode --------------------------------------------------------------
LABEL_BOXES = """key => {
  const chart = document.querySelector(`[data-testid=chart-${key}]`);
  const outer = chart.getBoundingClientRect();
  const texts = [...chart.querySelectorAll('svg text')].map(t => {
    const b = t.getBoundingClientRect();
    return {text: t.textContent, left: b.left, right: b.right, top: b.top, bottom: b.bottom,
            fill: t.getAttribute('fill')};
  });
  return {left: outer.left, right: outer.right, texts: texts};
}"""


def overlapping(texts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (a["text"], b["text"])
        for i, a in enumerate(texts)
        for b in texts[i + 1 :]
        if a["left"] < b["right"] and b["left"] < a["right"]
        and a["top"] < b["bottom"] and b["top"] < a["bottom"]
    ]  # fmt: skip


def test_charts_fit_a_phone_and_follow_dark_mode(
    browser: Browser, served: dash.ServeProcess
) -> None:
    device = dash.add_device(served, "phone-chart")
    now = int(time.time() * 1000)
    # a barometer in Pa: wide labels on the value axis, a day of readings on the time axis
    points = [{"ts": now - i * MINUTE, "values": {"pressure": 101_325 + (i % 90) * 7.5}}
              for i in range(7 * 24 * 60 // 7)]  # fmt: skip
    post(served, device["token"], points)
    context = browser.new_context(viewport=dash.PHONE, is_mobile=True, timezone_id=ZONE)
    context.set_default_timeout(10_000)
    page = context.new_page()
    dash.log_in(page, served)
    open_device(page, served, device["id"])
    width = page.evaluate("window.innerWidth")
    end = datetime.fromtimestamp(now / 1000, KOLKATA).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=55)  # an odd span: ECharts would tick every 5 min
    for name, span in [*((n, RANGES[n] + 1) for n in RANGES), ("custom", 55 * MINUTE)]:
        page.get_by_text(name, exact=True).click()
        if name == "custom":
            page.get_by_label("From").fill(start.strftime("%Y-%m-%dT%H:%M"))
            page.get_by_label("To").fill(end.strftime("%Y-%m-%dT%H:%M"))
            page.get_by_role("button", name="Show").click()
        page.wait_for_function(
            """span => { const o = getElement(document.querySelector(
                           '[data-testid=chart-pressure]'))?.chart?.getOption();
                         return o && o.xAxis[0].max - o.xAxis[0].min === span; }""",
            arg=span,
        )
        painted(page)
        drawn = page.evaluate(LABEL_BOXES, "pressure")
        assert len(drawn["texts"]) >= 5, drawn  # the title and some labels on both axes
        assert drawn["left"] >= 0 and drawn["right"] <= width
        outside = [t["text"] for t in drawn["texts"]
                   if t["left"] < drawn["left"] or t["right"] > drawn["right"]]  # fmt: skip
        assert outside == [], f"{name}: labels cut off: {outside}"
        assert overlapping(drawn["texts"]) == [], f"{name}: labels overlap"

    # the header's toggle (light to start with: the context prefers light): light text
    toggle = page.get_by_role("button", name="Dark or light mode")
    toggle.click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid=chart-pressure] svg text')]
                 .every(t => t.getAttribute('fill') === '#e5e7eb')"""
    )
    page.get_by_text("1 h", exact=True).click()  # live again: a new key gets a chart
    page.wait_for_function(
        """() => getElement(document.querySelector('[data-testid=chart-pressure]'))
                 .chart.getOption().xAxis[0].max - Date.now() > -60000"""
    )
    post(served, device["token"], [{"humidity": 40}])  # a chart that starts in dark mode
    expect(page.get_by_test_id("chart-humidity")).to_be_visible()
    painted(page)
    fills = {t["fill"] for t in page.evaluate(LABEL_BOXES, "humidity")["texts"]}
    assert fills == {"#e5e7eb"}
    toggle.click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid=chart-pressure] svg text')]
                 .every(t => t.getAttribute('fill') === '#374151')"""
    )
    context.close()
