"""Issue 13, points 9-11: tokens end with their password or user, /metrics needs a token and
keeps webhook secrets to itself, and failed logins slow an attacker down without locking the
real user out (docs/architecture.md, "Login limits")."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import IN_CI
from tests.helpers import ServeProcess, ServerThread, tinyboard
from tests.test_dashboard import CHROMIUM, CHROMIUM_FLAGS
from tinyboard.core.login_limits import LoginPolicy, LoginThrottled, MemoryLoginLimiter
from tinyboard.core.users import MAX_HASHING, ROLE_ADMIN, hash_password

SCRAPE = "scrape-token-for-prometheus-0123"
NEW_PASSWORD = "a-new-long-password"
ANA = hash_password("ana-password")


@contextmanager
def serving(tmp_path: Path, **settings: Any) -> Iterator[ServerThread]:
    running = ServerThread(tmp_path / "data", **settings).start()
    try:
        yield running
    finally:
        running.stop()


def log_in(server: ServerThread, password: str | None = None) -> dict[str, str]:
    """The token pair of the admin created on first start."""
    email, first = server.admin
    response = httpx.post(
        f"{server.base_url}/api/auth/login",
        json={"username": email, "password": password or first},
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"X-Authorization": f"Bearer {token}"}


def from_address(server: ServerThread, address: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z is this machine)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.base_url, transport=transport, timeout=30)


def login_status(client: httpx.Client, email: str, password: str) -> httpx.Response:
    return client.post("/api/auth/login", json={"username": email, "password": password})


def scrape(server: ServerThread) -> str:
    return httpx.get(f"{server.base_url}/metrics", headers=bearer(SCRAPE)).text


def counter(server: ServerThread, name: str) -> float:
    text = scrape(server)
    match = re.search(rf"^{name}_total (\S+)$", text, re.MULTILINE)
    assert match, f"{name} is not in /metrics"
    return float(match.group(1))


def assert_revoked(server: ServerThread, tokens: dict[str, str]) -> None:
    """Access and refresh tokens refused over REST, the access token over the WebSocket."""
    for path in ("/api/auth/user", "/api/tenant/devices?pageSize=10&page=0"):
        old = httpx.get(server.base_url + path, headers=bearer(tokens["token"]))
        assert old.status_code == 401, (path, old.text)
    refreshed = httpx.post(
        f"{server.base_url}/api/auth/token", json={"refreshToken": tokens["refreshToken"]}
    )
    assert refreshed.status_code == 401, refreshed.text
    assert "log in" in refreshed.json()["message"]
    ws = f"ws://127.0.0.1:{server.http_port}/api/ws/plugins/telemetry?token={tokens['token']}"

    async def open_socket() -> None:
        async with connect(ws):
            pass

    with pytest.raises(InvalidStatus):
        asyncio.run(open_socket())


# -- 9: tokens end with the password or the user --------------------------------------------
def test_a_password_change_ends_old_access_and_refresh_tokens(
    server_on_each_store: ServerThread,
) -> None:
    server = server_on_each_store
    email, _ = server.admin
    before = log_in(server)
    assert httpx.get(f"{server.base_url}/api/auth/user", headers=bearer(before["token"])).is_success
    server.call(server.server.store.set_password_hash(email, hash_password(NEW_PASSWORD)))
    assert_revoked(server, before)
    after = log_in(server, NEW_PASSWORD)
    me = httpx.get(f"{server.base_url}/api/auth/user", headers=bearer(after["token"]))
    assert me.status_code == 200 and me.json()["email"] == email
    renewed = httpx.post(
        f"{server.base_url}/api/auth/token", json={"refreshToken": after["refreshToken"]}
    )
    assert renewed.status_code == 200


def test_removing_the_user_ends_their_tokens(server_on_each_store: ServerThread) -> None:
    server = server_on_each_store
    store = server.server.store
    server.call(store.create_user("ana@example.org", ANA, role=ROLE_ADMIN))
    tokens = log_in(server)
    ana = httpx.post(
        f"{server.base_url}/api/auth/login",
        json={"username": "ana@example.org", "password": "ana-password"},
    ).json()
    server.call(store.delete_user(server.admin[0]))
    assert_revoked(server, tokens)
    # the same e-mail again is another user: the old tokens stay dead
    server.call(store.create_user(server.admin[0], hash_password(server.admin[1]), role=ROLE_ADMIN))
    assert_revoked(server, tokens)
    still = httpx.get(f"{server.base_url}/api/auth/user", headers=bearer(ana["token"]))
    assert still.status_code == 200  # other users are not touched


@pytest.mark.slow
def test_the_cli_revokes_tokens_of_a_running_server(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        email, _ = server.admin
        data = str(tmp_path / "data")
        tokens = log_in(server)
        changed = tinyboard("user", "passwd", email, "--password", NEW_PASSWORD, "--data-dir", data)
        assert changed.returncode == 0, changed.stderr
        assert_revoked(server, tokens)
        tokens = log_in(server, NEW_PASSWORD)
        removed = tinyboard("user", "rm", email, "--data-dir", data)
        assert removed.returncode == 0, removed.stderr
        assert_revoked(server, tokens)
        again = tinyboard("user", "rm", email, "--data-dir", data)
        assert again.returncode == 1 and "tinyboard user list" in again.stderr


# -- 10: /metrics needs a token and hides webhook secrets -----------------------------------
class Receiver:
    """A webhook receiver that records what arrives (path with query, Authorization)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.requests.append((self.path, self.headers.get("Authorization", "")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.http.server_address[1]
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def wait_for(probe: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_metrics_needs_the_scrape_token_or_an_admin_jwt(tmp_path: Path) -> None:
    with serving(tmp_path, metrics_token=SCRAPE) as server:
        url = f"{server.base_url}/metrics"
        refused = httpx.get(url)
        assert refused.status_code == 401
        assert "--metrics-token" in refused.json()["message"]
        assert httpx.get(url, headers={"Authorization": "Bearer not-the-token"}).status_code == 401
        scraped = httpx.get(url, headers={"Authorization": f"Bearer {SCRAPE}"})
        assert scraped.status_code == 200 and "tinyboard_commits_total" in scraped.text
        tokens = log_in(server)
        assert httpx.get(url, headers={"Authorization": f"Bearer {tokens['token']}"}).is_success
        assert httpx.get(url, headers=bearer(tokens["token"])).is_success
        # a refresh token is not an access token
        assert httpx.get(url, headers=bearer(tokens["refreshToken"])).status_code == 401


def test_without_a_scrape_token_only_an_admin_jwt_reads_metrics(server: ServerThread) -> None:
    url = f"{server.base_url}/metrics"
    refused = httpx.get(url)
    assert refused.status_code == 401
    message = refused.json()["message"]
    assert "admin's JWT" in message and "--metrics-token" in message
    # with no token configured, no guess matches
    assert httpx.get(url, headers={"Authorization": "Bearer guess"}).status_code == 401
    assert httpx.get(url, headers=bearer(log_in(server)["token"])).status_code == 200


def test_webhook_credentials_stay_out_of_metrics_logs_and_the_api(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    receiver = Receiver()
    hook = f"http://hookuser:hookpass@127.0.0.1:{receiver.port}/hook?token=querysecret"
    shown = f"http://***@127.0.0.1:{receiver.port}/hook?***"
    try:
        with serving(tmp_path, metrics_token=SCRAPE, alarm_webhook=hook) as server:
            rest = httpx.Client(base_url=server.base_url, headers=bearer(log_in(server)["token"]))
            device = server.add_device("hooked")
            rest.post(
                "/api/alarmRule",
                json={"deviceId": device.id, "key": "t", "condition": {"op": ">", "value": 5}},
            ).raise_for_status()
            sent = httpx.post(f"{server.base_url}/api/v1/{device.token}/telemetry", json={"t": 9})
            assert sent.status_code == 200
            wait_for(lambda: receiver.requests)
            # the real URL was used to send: query and credentials arrived
            path, authorization = receiver.requests[0]
            assert path == "/hook?token=querysecret" and authorization.startswith("Basic ")
            delivered = f'tinyboard_webhook_delivered_total{{url="{shown}"}} 1.0'
            wait_for(lambda: delivered in scrape(server))
            metrics = scrape(server)
            (state,) = rest.get("/api/webhooks").json()
            assert state["url"] == shown
            rest.close()
    finally:
        receiver.close()
    assert f"HTTP Request: POST {shown}" in caplog.text  # the delivery was logged, redacted
    for secret in ("hookuser", "hookpass", "querysecret"):
        assert secret not in metrics and secret not in caplog.text and secret not in str(state)


# -- 11: failed logins ----------------------------------------------------------------------
def test_an_attacker_cannot_lock_the_admin_out(tmp_path: Path) -> None:
    """Failures count per account *and* address: hammering the admin from one address slows
    that address for that account only (the stated wait), not the admin's own address, nor
    another account's user behind the attacker's (shared, NAT) address."""
    settings = {"login_tries": 3, "login_delay": 30.0, "metrics_token": SCRAPE}
    with serving(tmp_path, **settings) as server:
        email, password = server.admin
        server.call(server.server.store.create_user("ana@example.org", ANA, role=ROLE_ADMIN))
        with from_address(server, "127.0.0.2") as attacker, from_address(server, "127.0.0.3") as me:
            codes = [login_status(attacker, email, "guess").status_code for _ in range(20)]
            assert codes == [401] * 3 + [429] * 17
            assert counter(server, "tinyboard_password_checks") == 3  # refused ones cost nothing
            assert login_status(me, email, password).status_code == 200
            assert login_status(attacker, "ana@example.org", "ana-password").status_code == 200
            # the attacker's address waits what it is told, the right password included
            blocked = login_status(attacker, email, password)
            assert blocked.status_code == 429
            wait = re.fullmatch(
                r"too many failed logins; try again in (\d+) s", blocked.json()["message"]
            )
            assert wait and 1 <= int(wait.group(1)) <= 30
            assert counter(server, "tinyboard_logins_throttled") == 18


def test_concurrent_guesses_reach_the_password_check_only_for_the_free_tries(
    tmp_path: Path,
) -> None:
    """Each attempt is counted before its (slow) argon2 check: 30 guesses at once get 5
    checks, not 30 (which would also be 30 x 64 MiB of argon2 memory)."""
    with serving(tmp_path, login_delay=60.0, metrics_token=SCRAPE) as server:
        email, _ = server.admin

        async def storm() -> list[int]:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
                answers = await asyncio.gather(*(login_async(client, email) for _ in range(30)))
            return [a.status_code for a in answers]

        codes = asyncio.run(storm())
        assert sorted(codes) == [401] * 5 + [429] * 25
        assert counter(server, "tinyboard_password_checks") == 5


async def login_async(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post("/api/auth/login", json={"username": email, "password": "no"})


@pytest.mark.slow
def test_the_dashboard_login_shares_the_rest_limit(tmp_path: Path) -> None:
    """One `Logins` for both doors: a failure over REST makes the dashboard wait too."""
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail("Chromium is missing at /usr/bin/chromium; .ci/run installs it")
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    served = ServeProcess(tmp_path / "data", "--login-tries", "1", "--login-delay", "60")
    try:
        email, password = "admin@tinyboard.local", served.admin_password
        base = f"http://127.0.0.1:{served.http_port}"
        wrong = httpx.post(f"{base}/api/auth/login", json={"username": email, "password": "no"})
        assert wrong.status_code == 401
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
            )
            tab = browser.new_page()
            tab.goto(base + "/ui/login")
            tab.get_by_label("E-mail").fill(email)
            tab.get_by_label("Password").fill(password)
            tab.get_by_role("button", name="Log in").click()
            expect(tab.get_by_text("too many failed logins; try again in")).to_be_visible()
            assert "/ui/login" in tab.url
            browser.close()
    finally:
        served.signal(15)
        served.wait()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def outcome(limiter: MemoryLoginLimiter, account: str, address: str) -> str:
    """ "wait N" when throttled, else "tried" (the attempt counted as failed)."""
    try:
        await limiter.attempt(account, address)
    except LoginThrottled as exc:
        return f"wait {exc.retry_after}"
    return "tried"


async def test_the_wait_doubles_up_to_the_maximum_and_a_success_clears_it() -> None:
    """The rule's arithmetic, on a clock the test turns (the end-to-end tests above cannot
    wait minutes)."""
    clock = Clock()
    policy = LoginPolicy(free_failures=2, first_delay=1.0, max_delay=5.0, address_failures=100)
    limiter = MemoryLoginLimiter(policy, clock=clock)
    seen = [await outcome(limiter, "Admin@x", "10.0.0.1") for _ in range(2)]
    for _ in range(4):
        seen.append(await outcome(limiter, "admin@x", "10.0.0.1"))  # at once: must wait
        clock.now += int(seen[-1].removeprefix("wait "))  # exactly as long as it was told
        seen.append(await outcome(limiter, "admin@x", "10.0.0.1"))
    assert seen == [
        *("tried", "tried"), *("wait 1", "tried"), *("wait 2", "tried"),
        *("wait 4", "tried"), *("wait 5", "tried"),
    ]  # fmt: skip
    assert await outcome(limiter, "admin@x", "10.0.0.2") == "tried"  # other addresses: free
    clock.now += 5
    assert await outcome(limiter, "admin@x", "10.0.0.1") == "tried"
    await limiter.succeeded("admin@x", "10.0.0.1")
    assert await outcome(limiter, "admin@x", "10.0.0.1") == "tried"
    assert await outcome(limiter, "admin@x", "10.0.0.1") == "tried"  # free again


async def test_an_address_budget_refills_after_an_hour() -> None:
    clock = Clock()
    policy = LoginPolicy(free_failures=100, address_failures=3)
    limiter = MemoryLoginLimiter(policy, clock=clock)
    for i in range(3):
        assert await outcome(limiter, f"user{i}@x", "10.0.0.1") == "tried"
        clock.now += 600
    assert await outcome(limiter, "another@x", "10.0.0.1") == "wait 1800"
    assert await outcome(limiter, "another@x", "10.0.0.2") == "tried"
    clock.now += 1800
    assert await outcome(limiter, "another@x", "10.0.0.1") == "tried"


def test_an_address_has_a_budget_over_every_account(tmp_path: Path) -> None:
    """Made-up or other accounts do not dodge the limit: an address gets a number of
    failures per hour over all of them."""
    with serving(tmp_path, login_budget=5) as server:
        email, password = server.admin
        with from_address(server, "127.0.0.2") as sprayer, from_address(server, "127.0.0.3") as me:
            codes = [
                login_status(sprayer, f"user{i}@example.org", "guess").status_code for i in range(8)
            ]
            assert codes == [401] * 5 + [429] * 3
            assert "try again in" in login_status(sprayer, email, password).json()["message"]
            assert login_status(me, email, password).status_code == 200


def test_a_rotating_forwarded_for_header_does_not_reset_the_address_budget(
    tmp_path: Path,
) -> None:
    """X-Forwarded-For is only trusted from a configured proxy (`--trusted-proxies`): from
    127.0.0.1 every attempt counts against 127.0.0.1, whatever the header says."""
    with serving(tmp_path, login_budget=5) as server:
        codes = [
            httpx.post(
                f"{server.base_url}/api/auth/login",
                json={"username": f"user{i}@example.org", "password": "guess"},
                headers={"X-Forwarded-For": f"10.0.0.{i + 1}"},
            ).status_code
            for i in range(8)
        ]
    assert codes == [401] * 5 + [429] * 3


def test_a_login_flood_hashes_at_most_two_passwords_at_once(tmp_path: Path) -> None:
    """argon2 takes 64 MiB a check: 30 logins at once (distinct accounts, so no limit stops
    them) wait in line, not all in memory together."""
    with serving(tmp_path) as server:

        async def flood() -> list[int]:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
                emails = [f"user{i}@example.org" for i in range(30)]
                answers = await asyncio.gather(*(login_async(client, e) for e in emails))
            return [a.status_code for a in answers]

        assert asyncio.run(flood()) == [401] * 30
        assert 1 <= server.on_loop(lambda: server.server.logins.most_hashing) <= MAX_HASHING


def test_unknown_and_known_emails_cost_the_same(tmp_path: Path) -> None:
    """Both run one argon2 verification (against a dummy hash for the unknown one) and get
    the same answer, so neither the time nor the text tells which e-mails exist."""
    with serving(tmp_path, metrics_token=SCRAPE) as server:
        email, _ = server.admin
        with httpx.Client(base_url=server.base_url) as client:
            unknown = login_status(client, "nobody@example.org", "guess")
            assert counter(server, "tinyboard_password_checks") == 1
            known = login_status(client, email, "guess")
            assert counter(server, "tinyboard_password_checks") == 2
        assert unknown.status_code == known.status_code == 401
        assert unknown.json()["message"] == known.json()["message"]
        assert counter(server, "tinyboard_logins_failed") == 2
