"""Secrets in URLs are never shown: a store's password, a webhook's credentials."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from tests.helpers import ServeProcess, tinyboard
from tinyboard.redact import hide_password, redact_url


def test_redact_url_keeps_where_not_how() -> None:
    assert redact_url("https://bob:s3cret@hooks.example.org:8443/alarm?token=abc") == (
        "https://***@hooks.example.org:8443/alarm?***"
    )
    assert redact_url("http://127.0.0.1:9000/hook") == "http://127.0.0.1:9000/hook"


def test_hide_password_keeps_the_user_database_and_schema() -> None:
    assert hide_password("postgresql://tb:s3cret@db:5432/tinyboard?schema=a") == (
        "postgresql://tb:***@db:5432/tinyboard?schema=a"
    )
    assert hide_password("postgresql://tb@db/tinyboard") == "postgresql://tb@db/tinyboard"
    assert hide_password("sqlite:/var/lib/tb.db") == "sqlite:/var/lib/tb.db"


def test_the_start_up_line_hides_the_store_password(
    tmp_path: Path, postgres_url: Callable[[], str]
) -> None:
    url = postgres_url().replace("postgresql://postgres@", "postgresql://postgres:s3cret-pw@")
    served = ServeProcess(tmp_path / "data", "--no-dashboard", "--store", url)
    served.signal(signal.SIGTERM)
    code, out, err = served.wait()
    assert code == 0
    assert "postgres:***@" in out
    assert "s3cret-pw" not in out + err


def test_a_malformed_webhook_url_is_refused_without_echoing_its_secrets(tmp_path: Path) -> None:
    result = tinyboard(
        "serve", "--data-dir", str(tmp_path), "--alarm-webhook", "ftp://bob:s3cret@host/x?k=v"
    )
    assert result.returncode != 0
    assert "give an http:// or https:// URL" in result.stderr
    assert "s3cret" not in result.stderr and "k=v" not in result.stderr
