"""The line protocol on arbitrary bytes: every line gets exactly one reply, in order, and the
server keeps serving (the line parser's fuzz target, like the MQTT codec's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import LineClient, ServerThread

END = "END-OF-FUZZ"

pieces = st.lists(
    st.binary(max_size=40)
    | st.sampled_from(
        [
            b"\n",
            b"\r\n",
            b"\xff\xfe",
            b"=",
            b"a=1 b=2",
            b"{",
            b'{"t": 1}',
            b"[1]",
            b"\x00",
            b"1e999",
        ]
    ),
    max_size=30,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    running = ServerThread(tmp_path_factory.mktemp("fuzz") / "data").start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def token(server: ServerThread) -> str:
    return server.add_device("fuzzed", type="fuzz").token


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chunks=pieces, identified=st.booleans())
def test_any_bytes_get_one_reply_per_line(
    server: ServerThread, token: str, chunks: list[bytes], identified: bool
) -> None:
    data = b"".join(chunks).replace(b"CLOSE SOCKET", b"")
    lines = (data + b"\n" + END.encode() + b"\n").count(b"\n")
    with LineClient(server.line_port) as client:
        if identified:
            assert client.ask(f"TOKEN {token}") == "OK fuzzed"
        for chunk in chunks:
            client.send(chunk.replace(b"CLOSE SOCKET", b""))
        client.send("\n" + END + "\n")
        replies = [client.recv() for _ in range(lines)]
    assert replies[-1] == END
    # every line was answered: an echo, or an ERROR that says what to do
    assert all(r.startswith("ERROR ") or r == r.upper() for r in replies)
    with LineClient(server.line_port) as after:
        assert after.ask("still there") == "STILL THERE"
