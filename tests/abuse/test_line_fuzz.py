"""The line protocol on arbitrary bytes: every line gets exactly one reply, in order, the
reply docs/protocols.md's table gives it, and the server keeps serving (the line parser's
fuzz target, like the MQTT codec's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.helpers import LineClient, ServerThread
from tinyboard.core.ingest import is_reading
from tinyboard.transports.line import NOT_STORED

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
            b"23.5",
            b" = ",
            b"t = 1",
            b"a = 1, b = 2",
            b"TOKEN ",
            b"door opened",
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
    sent = [chunk.replace(b"CLOSE SOCKET", b"") for chunk in chunks]
    data = b"".join(sent) + b"\n" + END.encode() + b"\n"
    assume(b"CLOSE SOCKET" not in data)  # one made of two chunks would end the session
    lines = data.split(b"\n")[:-1]
    with LineClient(server.line_port) as client:
        if identified:
            assert client.ask(f"TOKEN {token}") == "OK fuzzed"
        for chunk in sent:
            client.send(chunk)
        client.send("\n" + END + "\n")
        replies = [client.recv() for _ in lines]
    assert replies[-1] == END
    for line, reply in zip(lines, replies, strict=True):
        assert reply_fits(line, reply, identified), (line, reply)
    with LineClient(server.line_port) as after:
        assert after.ask("still there") == "STILL THERE"


def reply_fits(line: bytes, reply: str, identified: bool) -> bool:
    """The reply table of docs/protocols.md, for lines without CLOSE SOCKET."""
    try:
        text = line.removesuffix(b"\r").decode()
    except UnicodeDecodeError:
        return reply == "ERROR invalid UTF-8; send text encoded as UTF-8"
    if text[:6].upper() in ("TOKEN ", "TOKEN"):  # no token but the fixture's is known
        return reply.startswith("ERROR unknown token: ")
    stripped = text.strip()
    if not identified:  # chat: CAPITALS, and a reading's shape says it was not stored
        marked = bool(stripped) and is_reading(stripped)
        return reply == text.upper() + (NOT_STORED if marked else "")
    if not stripped:
        return reply == text.upper()
    return reply == text.upper() or reply.startswith("ERROR ")  # stored, or why not
