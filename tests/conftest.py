from __future__ import annotations

import concurrent.futures
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ServerThread
from tinyboard.storage import open_store
from tinyboard.storage.base import Store

IN_CI = os.environ.get("CI") == "true"


def needed_tool(name: str, package: str) -> str:
    """The path of a program a test runs; a skip without it, but a failure under CI=true,
    where `.ci/run` installs `package`."""
    found = shutil.which(name)
    if found is None:
        if IN_CI:
            pytest.fail(f"{name} is missing; .ci/run installs it (apt-get install {package})")
        pytest.skip(f"needs {name} (apt-get install {package})")
    return found


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    running = ServerThread(tmp_path / "data").start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def server_on_each_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    """A server on SQLite, then on PostgreSQL: modules that alias `server` to this run
    their end-to-end tests once per store."""
    extra = {}
    if request.param == "postgres":
        extra["store"] = request.getfixturevalue("postgres_url")()
    running = ServerThread(tmp_path / "data", **extra).start()
    try:
        yield running
    finally:
        running.stop()


POSTGRES = os.environ.get("TINYBOARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
"""The PostgreSQL server for tests (this machine's: trust auth, database `test`)."""


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[list[str]]:
    """Checks that PostgreSQL answers (skip outside CI, fail under CI=true); yields the list of
    schemas the tests made, and drops them at the end."""
    import asyncpg

    async def ping() -> None:
        conn = await asyncpg.connect(POSTGRES, timeout=5)
        await conn.close()

    try:
        _apart(ping())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL at {POSTGRES} is needed under CI=true: {exc}")
        pytest.skip(f"no PostgreSQL at {POSTGRES} ({exc}); set TINYBOARD_TEST_POSTGRES")
    schemas: list[str] = []
    yield schemas

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES)
        try:
            for schema in schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    _apart(drop())


def _apart(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to the end on its own loop in another thread (this thread may be
    inside a test's running loop)."""
    import asyncio

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Makes store URLs, each with a schema of its own (a fresh database per test)."""

    def make() -> str:
        schemas: list[str] = request.getfixturevalue("postgres_server")
        schema = f"tb_{uuid.uuid4().hex[:12]}"
        schemas.append(schema)
        return f"{POSTGRES}?schema={schema}"

    return make


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: Callable[[], str]
) -> AsyncIterator[Store]:
    """An open store, SQLite then a fresh PostgreSQL schema (modules with a `store` of their
    own override it)."""
    url = f"sqlite:{tmp_path / 'store.db'}" if request.param == "sqlite" else postgres_url()
    opened = open_store(url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
