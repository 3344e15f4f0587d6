"""The line protocol server on real sockets (course milestones 0–2)."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path

import orjson
import pytest

from tests.helpers import LineClient, ServerThread
from tinyboard.transports.line import MAX_JOB, NOT_STORED


def test_each_line_is_answered_in_capitals(server: ServerThread) -> None:
    with LineClient(server.line_port) as client:
        assert client.ask("hello, world") == "HELLO, WORLD"
        assert client.ask("ünïcode ß") == "ÜNÏCODE SS"
        assert client.ask("") == ""
        client.send("crlf line\r\n")
        assert client.recv() == "CRLF LINE"


def test_close_socket_is_answered_then_closed(server: ServerThread) -> None:
    with LineClient(server.line_port) as client:
        client.send("please close socket\nbye CLOSE SOCKET now\nnever answered\n")
        assert client.recv() == "PLEASE CLOSE SOCKET"
        assert client.recv() == "BYE CLOSE SOCKET NOW"
        assert client.at_eof()
    with LineClient(server.line_port) as again:
        assert again.ask("still serving") == "STILL SERVING"


def test_two_clients_interleaved_get_only_their_own_replies(server: ServerThread) -> None:
    with LineClient(server.line_port) as a, LineClient(server.line_port) as b:
        for i in range(50):
            a.send(f"a{i}\n")
            b.send(f"b{i}\n")
        assert [a.recv() for _ in range(50)] == [f"A{i}" for i in range(50)]
        assert [b.recv() for _ in range(50)] == [f"B{i}" for i in range(50)]


def test_pipelined_lines_split_across_packets(server: ServerThread) -> None:
    with LineClient(server.line_port) as client:
        client.send("fir")
        time.sleep(0.05)
        client.send("st\nsec")
        time.sleep(0.05)
        client.send("ond\nthird\n")
        assert [client.recv() for _ in range(3)] == ["FIRST", "SECOND", "THIRD"]


async def _chat_session(port: int, n: int) -> list[str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = []
    for i in range(3):
        writer.write(f"client {n} line {i}\n".encode())
        replies.append((await reader.readline()).decode().strip())
    writer.write(b"CLOSE SOCKET\n")
    replies.append((await reader.readline()).decode().strip())
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    return replies


def test_500_concurrent_clients(server: ServerThread) -> None:
    async def run() -> list[list[str]]:
        return await asyncio.gather(*(_chat_session(server.line_port, n) for n in range(500)))

    results = asyncio.run(run())
    for n, replies in enumerate(results):
        assert replies == [f"CLIENT {n} LINE {i}" for i in range(3)] + ["CLOSE SOCKET"]
    assert server.on_loop(lambda: len(server.server.registry)) == 0


def test_registry_holds_each_connection(server: ServerThread) -> None:
    device = server.add_device("esp-registry")
    with LineClient(server.line_port) as anon, LineClient(server.line_port) as dev:
        assert anon.ask("hi") == "HI"
        assert dev.ask(f"TOKEN {device.token}") == "OK esp-registry"
        assert dev.ask("21.5") == "21.5"
        clients = server.on_loop(lambda: [c.as_dict() for c in server.server.registry])
        assert len(clients) == 2
        by_who = {c["who"]: c for c in clients}
        assert set(by_who) == {"anonymous", "esp-registry"}
        mine = by_who["esp-registry"]
        assert mine["transport"] == "line"
        assert mine["deviceId"] == device.id
        assert mine["peer"] == f"127.0.0.1:{dev.sock.getsockname()[1]}"
        assert mine["messagesIn"] == 2
        assert mine["messagesOut"] == 2
        assert mine["bytesIn"] == len(f"TOKEN {device.token}\n21.5\n")
        assert abs(mine["since"] / 1000 - time.time()) < 30
        assert server.on_loop(
            lambda: [c.peer for c in server.server.registry.for_device(device.id)]
        ) == [mine["peer"]]
    deadline = time.time() + 5
    while server.on_loop(lambda: len(server.server.registry)) and time.time() < deadline:
        time.sleep(0.01)
    assert server.on_loop(lambda: len(server.server.registry)) == 0


def test_abrupt_disconnects_do_not_hurt_the_server(server: ServerThread) -> None:
    device = server.add_device("esp-abrupt")
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", server.line_port))
        sock.sendall(f"TOKEN {device.token}\n1\n2\nhalf a li".encode())
        # RST instead of FIN: the peer vanishes mid-line.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    with LineClient(server.line_port) as client:
        assert client.ask("alive") == "ALIVE"


def test_invalid_utf8_and_binary_garbage(server: ServerThread) -> None:
    with LineClient(server.line_port) as client:
        client.send(b"\xff\xfe\xfd\n")
        assert client.recv().startswith("ERROR invalid UTF-8")
        client.send(bytes(b for b in range(256) if b != 10) + b"\n")
        assert client.recv().startswith("ERROR invalid UTF-8")
        client.send(b"\x00\x01\x02 ok\n")
        assert client.recv() == "\x00\x01\x02 OK"
        assert client.ask("after garbage") == "AFTER GARBAGE"


def test_line_length_limit(server: ServerThread) -> None:
    limit = server.config.max_line
    with LineClient(server.line_port) as client:
        assert client.ask("a" * limit) == "A" * limit
        assert client.ask("b" * (limit + 1)).startswith("ERROR line too long")
        assert client.ask("after") == "AFTER"


def test_endless_line_gets_one_error_and_the_connection_recovers(server: ServerThread) -> None:
    with LineClient(server.line_port) as client:
        chunk = b"x" * 65536
        for _ in range(64):  # 4 MiB without a newline
            client.send(chunk)
        client.send(b"\nnext\n")
        assert client.recv().startswith("ERROR line too long")
        assert client.recv() == "NEXT"


def test_client_that_never_reads_is_disconnected(server: ServerThread) -> None:
    sock = socket.create_connection(("127.0.0.1", server.line_port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(20)
    line = b"y" * 1000 + b"\n"
    sent = 0
    with pytest.raises(OSError):  # reset or broken pipe once the server gives up on us
        while sent < 200_000_000:
            sock.sendall(line * 100)
            sent += len(line) * 100
    sock.close()
    assert sent < 200_000_000
    with LineClient(server.line_port) as other:
        assert other.ask("unaffected") == "UNAFFECTED"


def test_unterminated_last_line_is_answered_at_eof(server: ServerThread) -> None:
    with LineClient(server.line_port) as client:
        client.send("no newline at the end")
        client.sock.shutdown(socket.SHUT_WR)
        assert client.recv() == "NO NEWLINE AT THE END"
        assert client.at_eof()


def test_device_readings_are_stored_with_their_types(server: ServerThread) -> None:
    device = server.add_device("esp-types")
    telemetry = {"ts": 1_700_000_000_000, "values": {"ok": True, "cfg": {"a": [1, 2]}}}
    with LineClient(server.line_port) as client:
        client.send(
            f"TOKEN {device.token}\n"
            "23.5\n"
            "42\n"
            "temperature=21.5 humidity=40 door=open led=true\n"
            f"{orjson.dumps(telemetry).decode()}\n"
            "some free text\n"
        )
        replies = [client.recv() for _ in range(6)]
    assert replies[0] == "OK esp-types"
    assert replies[1:3] == ["23.5", "42"]
    assert replies[3] == "TEMPERATURE=21.5 HUMIDITY=40 DOOR=OPEN LED=TRUE"
    assert replies[5] == "SOME FREE TEXT"
    latest = server.call(server.server.store.latest(device.key))
    values = {k: v for k, (_, v) in latest.items()}
    assert values == {
        "value": 42,
        "temperature": 21.5,
        "humidity": 40,
        "door": "open",
        "led": True,
        "ok": True,
        "cfg": {"a": [1, 2]},
        "message": "some free text",
    }
    assert isinstance(values["humidity"], int) and isinstance(values["led"], bool)
    assert latest["ok"][0] == 1_700_000_000_000
    history = server.call(
        server.server.store.history(device.key, "value", start_ts=0, end_ts=2**62, limit=10)
    )
    assert [v for _, v in history] == [42, 23.5]
    assert history[0][0] > history[1][0]  # fast senders never overwrite themselves


def test_bad_readings_get_an_error_and_nothing_is_stored(server: ServerThread) -> None:
    device = server.add_device("esp-bad")
    with LineClient(server.line_port) as client:
        assert client.ask(f"TOKEN {device.token}") == "OK esp-bad"
        assert client.ask("{not json").startswith("ERROR invalid JSON")
        assert client.ask('{"k": null}').startswith("ERROR key 'k' has a null value")
        assert client.ask('{"ts": "yesterday", "values": {"a": 1}}').startswith('ERROR "ts"')
        assert client.ask("1e999").startswith("ERROR the number")
        assert client.ask("7") == "7"
    latest = server.call(server.server.store.latest(device.key))
    assert {k: v for k, (_, v) in latest.items()} == {"value": 7}


def test_unknown_token(server: ServerThread) -> None:
    with LineClient(server.line_port) as client:
        assert client.ask("TOKEN nope").startswith("ERROR unknown token")
        assert client.ask("TOKEN").startswith("ERROR unknown token")
        assert client.ask("5") == "5" + NOT_STORED  # still a chat client: nothing stored
        assert client.ask("TOKEN <abc>").endswith("send the token itself, without < and >")
    assert server.call(server.server.store.list_devices()) == []


def test_a_reading_before_token_says_it_was_not_stored(server: ServerThread) -> None:
    device = server.add_device("esp-forgetful")
    with LineClient(server.line_port) as client:
        for line in ["23.5", "temperature = 23", "a=1, b=2", '{"t": 1}', "{oops"]:
            assert (
                client.ask(line) == line.upper() + " (NOT STORED: SEND TOKEN <ACCESS-TOKEN> FIRST)"
            )
        for chat in ["hello", "door opened", "note = hello world", ""]:
            assert client.ask(chat) == chat.upper()  # the course's chat: CAPITALS, nothing more
        assert client.ask(f"TOKEN {device.token}") == "OK esp-forgetful"
        assert client.ask("23.5") == "23.5"  # stored: the echo and nothing else
    latest = server.call(server.server.store.latest(device.key))
    assert {k: v for k, (_, v) in latest.items()} == {"value": 23.5}


def test_spaces_around_equals_make_a_typed_reading(server: ServerThread) -> None:
    device = server.add_device("esp-spaced")
    with LineClient(server.line_port) as client:
        assert client.ask(f"TOKEN {device.token}") == "OK esp-spaced"
        assert client.ask("temperature = 23") == "TEMPERATURE = 23"
        assert client.ask("humidity = 40.5, led = true") == "HUMIDITY = 40.5, LED = TRUE"
    latest = server.call(server.server.store.latest(device.key))
    values = {k: v for k, (_, v) in latest.items()}
    assert values == {"temperature": 23, "humidity": 40.5, "led": True}
    assert "message" not in values


def test_lines_pipelined_behind_a_token_are_readings_in_order(server: ServerThread) -> None:
    device = server.add_device("esp-pipelined")
    with LineClient(server.line_port) as client:
        client.send(
            "before\nTOKEN " + device.token + "\n" + "".join(f"n={i}\n" for i in range(200))
        )
        replies = [client.recv() for _ in range(202)]
    assert replies[:2] == ["BEFORE", "OK esp-pipelined"]
    assert replies[2:] == [f"N={i}" for i in range(200)]
    history = server.call(
        server.server.store.history(device.key, "n", start_ts=0, end_ts=2**62, limit=1000)
    )
    assert sorted(v for _, v in history) == list(range(200))  # type: ignore[type-var]


def test_backpressure_pauses_reading_and_loses_nothing(tmp_path: Path) -> None:
    # each device sends 2,000 readings at once, over the default rate limit: switch it off
    running = ServerThread(
        tmp_path / "bp", queue_limit=50, batch_limit=10, device_rate_limit="off"
    ).start()
    try:
        devices = [running.add_device(f"esp-bp-{n}") for n in range(5)]
        clients = [LineClient(running.line_port) for _ in devices]
        for client, device in zip(clients, devices, strict=True):
            client.send(f"TOKEN {device.token}\n" + "".join(f"{i}\n" for i in range(2000)))
        for client in clients:
            replies = [client.recv() for _ in range(2001)]
            assert replies[1:] == [str(i) for i in range(2000)]
            client.close()
        stats = running.on_loop(lambda: running.server.pipeline.stats)
        assert stats.pauses > 0
        # Without backpressure the queue would hold ~10,000 readings; with it, at most the
        # limit plus one job per client.
        assert stats.deepest_queue <= 50 + 5 * MAX_JOB
        assert stats.readings == 10_000
        for device in devices:
            history = running.call(
                running.server.store.history(
                    device.key, "value", start_ts=0, end_ts=2**62, limit=5000
                )
            )
            assert len(history) == 2000
    finally:
        running.stop()
