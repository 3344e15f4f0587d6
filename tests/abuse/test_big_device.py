"""A device with thousands of keys (issue 13, point 15): its page draws one page of cards and
charts and offers a filter and a pager for the rest, instead of a card and a chart for every
key (2,000 keys took 52 s to open). Also the dashboard's CSV button: it quotes formulas like
the REST export (point 12)."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.helpers import ServeProcess
from tests.mqtt_clients import Device
from tests.test_dashboard import PHONE, add_device, base, browser, log_in
from tinyboard.dashboard.key_page import PAGE_SIZE, KeyPage

__all__ = ["browser"]  # the fixture, shared with the dashboard's own browser tests

KEYS = 2000
NAMES = [f"sensor{i:04d}" for i in range(KEYS)]


# -- which keys a page shows (no browser) ----------------------------------------------------
def test_a_page_shows_at_most_one_page_of_keys_in_order() -> None:
    keys = KeyPage(size=3)
    keys.reset(["d", "b", "a", "c", "e"])
    assert keys.shown == ["a", "b", "c"] and keys.pages == 2
    keys.turn(2)
    assert keys.shown == ["d", "e"] and keys.first == 4
    keys.turn(99)  # past the end: the last page
    assert keys.page == 2


def test_the_filter_finds_a_key_anywhere_and_starts_at_page_one() -> None:
    keys = KeyPage()
    keys.reset(NAMES)
    keys.turn(5)
    keys.filter(" SENSOR1234 ")
    assert keys.shown == ["sensor1234"] and keys.page == 1 and keys.matching == 1
    keys.filter("nothing")
    assert keys.shown == [] and keys.pages == 1
    keys.filter("")
    assert len(keys.shown) == PAGE_SIZE and keys.total == KEYS


def test_a_live_new_key_joins_the_page_only_while_it_has_room() -> None:
    keys = KeyPage(size=2)
    keys.reset([])
    assert keys.add("b") and keys.add("a")
    assert not keys.add("a")  # known already
    assert not keys.add("c")  # the page is full: reachable on page 2
    assert keys.shown == ["b", "a"] and keys.total == 3
    keys.turn(2)
    assert keys.shown == ["c"]
    keys.filter("z")
    assert not keys.add("y")  # not matching the filter


# -- in a real browser -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    process = ServeProcess(tmp_path_factory.mktemp("big-device") / "data")
    process.admin_password  # noqa: B018 - read it now, before anyone else reads stdout
    yield process
    process.signal(15)
    code, _, err = process.wait()
    assert code == 0, err
    assert "Traceback" not in err and "ERROR" not in err, err


@pytest.fixture
def page(browser: Browser, served: ServeProcess) -> Iterator[Page]:
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(30_000)
    tab = context.new_page()
    log_in(tab, served)
    yield tab
    context.close()


def cards(page: Page) -> int:
    return page.locator("[data-testid^=value-]").count()


def charts(page: Page) -> int:
    return page.locator("[data-testid^=chart-]").count()


@pytest.mark.slow
def test_a_device_with_2000_keys_opens_on_one_page_of_them(
    page: Page, served: ServeProcess
) -> None:
    device = add_device(served, "big-board")
    now = int(time.time() * 1000)
    with httpx.Client(base_url=base(served), timeout=60) as client:
        for minute in (2, 1):
            values = {name: i + minute for i, name in enumerate(NAMES)}
            posted = client.post(
                f"/api/v1/{device['token']}/telemetry",
                json={"ts": now - minute * 60_000, "values": values},
            )
            assert posted.status_code == 200, posted.text
    page.goto(f"{base(served)}/ui/device/{device['id']}")
    # a generous wait, not a timing: the old page drew 2,000 cards and charts in ~50 s
    expect(page.get_by_test_id("value-sensor0000")).to_have_text("1", timeout=30_000)
    expect(page.get_by_test_id(f"value-sensor{PAGE_SIZE - 1:04d}")).to_be_visible()
    expect(page.get_by_test_id("key-count")).to_have_text(f"keys 1–{PAGE_SIZE} of 2,000")
    assert cards(page) == PAGE_SIZE and charts(page) == PAGE_SIZE  # not 2,000 of each
    expect(page.get_by_test_id("chart-sensor0000")).to_be_visible()

    page.get_by_placeholder("Filter keys").fill("sensor1234")  # a key far away
    expect(page.get_by_test_id("value-sensor1234")).to_have_text("1235")
    expect(page.get_by_test_id("chart-sensor1234")).to_be_visible()
    expect(page.get_by_test_id("key-count")).to_contain_text("1 matching “sensor1234”")
    assert cards(page) == 1 and charts(page) == 1

    page.get_by_placeholder("Filter keys").fill("")
    expect(page.get_by_test_id("value-sensor0000")).to_be_visible()
    page.get_by_role("button", name="2", exact=True).click()  # the pager
    expect(page.get_by_test_id(f"value-sensor{PAGE_SIZE:04d}")).to_be_visible()
    expect(page.get_by_test_id("value-sensor0000")).to_have_count(0)
    assert cards(page) == PAGE_SIZE

    board = Device(served.mqtt_port, device["token"])  # live: a shown key and a hidden one
    try:
        board.publish("v1/devices/me/telemetry", json.dumps({"sensor0030": -3.5, "sensor1999": 7}))
        expect(page.get_by_test_id("value-sensor0030")).to_have_text("-3.5")
    finally:
        board.close()
    assert cards(page) == PAGE_SIZE
    expect(page.get_by_test_id("value-sensor1999")).to_have_count(0)

    page.set_viewport_size(PHONE)  # the filter and the pager wrap on a phone
    page.reload()
    expect(page.get_by_test_id("key-count")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0


@pytest.mark.slow
def test_the_csv_button_quotes_formulas_too(page: Page, served: ServeProcess) -> None:
    device = add_device(served, "formula-board")
    board = Device(served.mqtt_port, device["token"])
    try:
        board.publish("v1/devices/me/telemetry", json.dumps({"note": "=1+1", "t": -3.5}))
        page.goto(f"{base(served)}/ui/device/{device['id']}")
        expect(page.get_by_test_id("value-note")).to_have_text("=1+1")  # shown as it came
        expect(page.get_by_test_id("value-t")).to_have_text("-3.5")
    finally:
        board.close()
    with page.expect_download() as download:
        page.get_by_role("button", name="CSV").click()
    rows = list(csv.reader(Path(download.value.path()).read_text().splitlines()))
    assert ["note", "'=1+1"] in [row[1:3] for row in rows]
    assert ["t", "-3.5"] in [row[1:3] for row in rows]
