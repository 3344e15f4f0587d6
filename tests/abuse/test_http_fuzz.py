"""HTTP fuzz target (issue 13): arbitrary and mutated request bytes sent to a real server.

The invariant, as h11's fuzzing states it for a parser: whatever arrives, the server answers
with a well-formed HTTP response or closes the connection, within a bound; it never hangs,
never logs a crash, and answers a normal request afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator

import h11
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import ServerThread

BOUND = 10.0  # seconds; the server's own timeouts are 1 s

SEEDS = (
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/auth/user HTTP/1.1\r\nHost: x\r\nX-Authorization: Bearer abc\r\n\r\n",
    b"HEAD /openapi.json HTTP/1.0\r\n\r\n",
    b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b'Content-Length: 37\r\n\r\n{"username":"a@b.c","password":"pw"}\n',
    b"POST /api/v1/not-a-token/telemetry HTTP/1.1\r\nHost: x\r\n"
    b'Transfer-Encoding: chunked\r\n\r\n7\r\n{"t":1}\r\n0\r\n\r\n',
    b"GET /api/ws/plugins/telemetry?token=x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    b"GET /api/v1/x/rpc?timeout=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /api/device HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
)
TOKENS = (b"\r\n", b"\r\n\r\n", b"\x00", b":", b" ", b"%", b"\xff", b"\t", b"0\r\n\r\n")
TOKENS += (b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed request with a few insertions, deletions, repeats or a truncation."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        end = draw(st.integers(at, min(len(data), at + 40)))
        match draw(st.sampled_from(["insert", "token", "delete", "repeat", "truncate"])):
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=20))
            case "token":
                data[at:at] = draw(st.sampled_from(TOKENS))
            case "delete":
                del data[at:end]
            case "repeat":
                data[at:at] = data[at:end] * draw(st.integers(2, 50))
            case _:
                del data[at:]
    return bytes(data)


REQUESTS = st.one_of(st.binary(max_size=600), mutated(), mutated())


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    running = ServerThread(
        tmp_path_factory.mktemp("fuzz") / "data",
        http_header_timeout=1,
        http_body_timeout=1,
        http_idle_timeout=1,
    ).start()
    try:
        yield running
    finally:
        running.stop()


def answer(sock: socket.socket, request: bytes) -> int | None:
    """The status of the first response, read with h11 as a client would (it raises on
    anything malformed); None if the server closed without answering."""
    method = b"HEAD" if request.startswith(b"HEAD ") else b"GET"
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    first: int | None = None
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            data = receive(sock)
            if not data and client.their_state is h11.SEND_RESPONSE:
                return None  # closed without a word: allowed
            client.receive_data(data)
        elif isinstance(event, h11.InformationalResponse | h11.Response):
            first = first or event.status_code
            if event.status_code == 101:  # a WebSocket handshake went through
                return first
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return first


def receive(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=REQUESTS)
def test_any_request_bytes_get_an_answer_or_a_close(
    fuzzed: ServerThread, caplog: pytest.LogCaptureFixture, request: bytes
) -> None:
    caplog.set_level(logging.WARNING)
    with socket.create_connection(("127.0.0.1", fuzzed.http_port), BOUND) as sock:
        # refused part-way: what was answered is still checked
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        status = answer(sock, request)
    assert status is None or 100 <= status < 600
    assert status != 500, "the app failed on this request"
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not crashes, [r.getMessage() for r in crashes]
    normal = httpx.get(f"{fuzzed.base_url}/api/auth/user", timeout=BOUND)
    assert normal.status_code == 401
