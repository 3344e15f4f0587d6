"""Helpers for tests of the HTTP side."""

from __future__ import annotations

import httpx

from tests.helpers import ServerThread


def login(server: ServerThread, admin: tuple[str, str] | None = None) -> dict[str, str]:
    """Headers with a fresh JWT of the admin created on first start (or of `admin`)."""
    email, password = admin or server.admin
    response = httpx.post(
        f"{server.base_url}/api/auth/login", json={"username": email, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"X-Authorization": f"Bearer {response.json()['token']}"}


def api(server: ServerThread, admin: tuple[str, str] | None = None) -> httpx.Client:
    """An httpx client logged in as the admin."""
    return httpx.Client(base_url=server.base_url, headers=login(server, admin), timeout=30)
