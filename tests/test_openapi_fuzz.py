"""Schemathesis against `/openapi.json` of a running server: no 500s, and every response
matches the documented status codes, content types and schemas."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import ServerThread
from tests.web_helpers import login

EXAMPLES = 25
"""Per operation; CI's time budget, not completeness, sets it."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    server = ServerThread(tmp_path_factory.mktemp("openapi") / "data").start()
    device = server.add_device("fuzzed")
    server.call(server.server.store.write([(device.key, "t", 1000, 1.5)], []))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def headers(running: ServerThread) -> dict[str, str]:
    return login(running)


def test_every_operation_matches_its_schema(running: ServerThread, headers: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_url(f"{running.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()
