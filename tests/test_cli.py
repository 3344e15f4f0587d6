"""The command line as a user runs it: real processes, real sockets."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from tests.helpers import LineClient, ServeProcess, tinyboard


def test_device_commands(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    added = tinyboard("device", "add", "kitchen", "--type", "esp8266", "--json", "--data-dir", data)
    assert added.returncode == 0, added.stderr
    created = orjson.loads(added.stdout)
    assert set(created) == {"id", "name", "token"} and created["name"] == "kitchen"
    plain = tinyboard("device", "add", "garage", env={"TINYBOARD_DATA_DIR": data})
    assert plain.returncode == 0 and len(plain.stdout.strip()) == 20

    listed = orjson.loads(tinyboard("device", "list", "--json", "--data-dir", data).stdout)
    assert [d["name"] for d in listed] == ["garage", "kitchen"]
    assert (
        tinyboard("device", "list", "--data-dir", data).stdout.splitlines()[0].startswith("garage")
    )
    shown = orjson.loads(
        tinyboard("device", "show", created["id"], "--json", "--data-dir", data).stdout
    )
    assert (shown["name"], shown["type"], shown["token"]) == (
        "kitchen",
        "esp8266",
        created["token"],
    )
    assert (
        tinyboard("device", "token", "kitchen", "--data-dir", data).stdout.strip()
        == created["token"]
    )

    duplicate = tinyboard("device", "add", "kitchen", "--data-dir", data)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    refused = tinyboard("device", "rm", "kitchen", "--data-dir", data, input="n\n")
    assert refused.returncode != 0
    removed = tinyboard("device", "rm", "kitchen", "--yes", "--data-dir", data)
    assert removed.returncode == 0 and "deleted kitchen" in removed.stdout
    missing = tinyboard("device", "show", "kitchen", "--data-dir", data)
    assert missing.returncode == 1 and "no device" in missing.stderr


def test_empty_device_list_says_what_to_do(tmp_path: Path) -> None:
    out = tinyboard("device", "list", "--data-dir", str(tmp_path)).stdout
    assert "tinyboard device add" in out


def test_serve_exits_cleanly_on_sigterm_and_sigint(tmp_path: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        server = ServeProcess(tmp_path / "data")
        with LineClient(server.line_port) as client:
            assert client.ask("up") == "UP"
            server.signal(sig)
            assert client.at_eof()  # the server closes client connections on the way out
        code, _, err = server.wait()
        assert code == 0, err
        assert "shutting down" in err


def test_device_added_while_serving_is_accepted_at_once(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "data")
    try:
        token = tinyboard("device", "add", "late", "--data-dir", str(tmp_path / "data")).stdout
        with LineClient(server.line_port) as client:
            assert client.ask(f"TOKEN {token.strip()}") == "OK late"
            assert client.ask("temperature=20.5") == "TEMPERATURE=20.5"
        shown = tinyboard("device", "show", "late", "--json", "--data-dir", str(tmp_path / "data"))
        assert orjson.loads(shown.stdout)["latest"]["temperature"]["value"] == 20.5
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait()[0] == 0


def test_busy_port_fails_fast_naming_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        started = time.monotonic()
        result = tinyboard(
            "serve", "--bind", "127.0.0.1", "--line-port", port, "--data-dir", str(tmp_path)
        )
        assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert "already in use" in result.stderr
    assert "--line-port" in result.stderr and "TINYBOARD_LINE_PORT" in result.stderr


def test_a_malformed_webhook_url_is_refused_before_anything_starts(tmp_path: Path) -> None:
    result = tinyboard("serve", "--alarm-webhook", "ftp://x", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "--alarm-webhook 'ftp://x': give an http:// or https:// URL" in result.stderr
    assert not (tmp_path / "tinyboard.db").exists()


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = tinyboard(
            "serve",
            env={
                "TINYBOARD_BIND": "127.0.0.1",
                "TINYBOARD_LINE_PORT": str(taken.getsockname()[1]),
                "TINYBOARD_DATA_DIR": str(tmp_path / "env-data"),
            },
        )
    assert result.returncode == 1 and "--line-port" in result.stderr
    assert (tmp_path / "env-data" / "tinyboard.db").exists()


def test_second_ctrl_c_forces_exit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = tinyboard("device", "add", "locked", "--data-dir", str(data)).stdout.strip()
    server = ServeProcess(data)
    # Another program holds the database's write lock, so the graceful shutdown waits for
    # the pipeline to commit the pending reading.
    blocker = sqlite3.connect(data / "tinyboard.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with LineClient(server.line_port) as client:
            assert client.ask(f"TOKEN {token}") == "OK locked"
            client.send("21.5\n")
            time.sleep(0.3)
            server.signal(signal.SIGINT)
            time.sleep(0.5)
            assert server.proc.poll() is None, "graceful shutdown should still be waiting"
            server.signal(signal.SIGINT)
            code, _, err = server.wait(timeout=5)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert code == 130
    assert "forced exit" in err


def test_chat_with_piped_input(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "data")
    try:
        result = tinyboard(
            "chat",
            "--port",
            str(server.line_port),
            input="hello\nsecond line\nCLOSE SOCKET\nnot sent\n",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["HELLO", "SECOND LINE", "CLOSE SOCKET"]
    finally:
        server.signal(signal.SIGTERM)
        server.wait()


def test_chat_says_when_the_server_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        result = tinyboard("chat", "--port", str(port), input="hi\n")
    assert result.returncode == 2
    assert "cannot reach tinyboard" in result.stderr and "tinyboard serve" in result.stderr


def test_chat_says_when_the_server_goes_away(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        import threading

        def answer_once_then_vanish() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(100)
                conn.sendall(b"FIRST\n")
                conn.recv(100)

        t = threading.Thread(target=answer_once_then_vanish)
        t.start()
        result = tinyboard("chat", "--port", str(port), input="first\nsecond\n")
        t.join()
    assert result.stdout.splitlines() == ["FIRST"]
    assert result.returncode == 1
    assert "server closed the connection" in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["device", "add", "--help"]])
def test_help(args: list[str]) -> None:
    result = tinyboard(*args)
    assert result.returncode == 0 and "Usage:" in result.stdout


def test_graceful_shutdown_acknowledges_everything_it_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = tinyboard("device", "add", "drain", "--data-dir", str(data)).stdout.strip()
    server = ServeProcess(data, "--device-rate-limit", "off")  # 20,000 readings at once
    with LineClient(server.line_port) as client:
        assert client.ask(f"TOKEN {token}") == "OK drain"
        client.send("".join(f"n={i}\n" for i in range(20_000)))
        server.signal(signal.SIGTERM)
        acked = []
        try:
            while True:
                acked.append(int(client.recv().removeprefix("N=")))
        except (ConnectionError, OSError):
            pass
    assert server.wait()[0] == 0
    assert acked == list(range(len(acked)))
    shown = tinyboard("device", "show", "drain", "--json", "--data-dir", str(data))
    latest = orjson.loads(shown.stdout)["latest"]
    # Everything the server read before it stopped reading was committed and echoed: the
    # newest stored reading is exactly the last one acknowledged.
    assert (latest["n"]["value"] if "n" in latest else None) == (acked[-1] if acked else None)


def test_sigterm_works_when_whoever_started_the_server_is_gone(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "data")
    assert server.proc.stdout is not None and server.proc.stderr is not None
    server.proc.stdout.close()  # the parent's pipes are gone: every print now fails
    server.proc.stderr.close()
    server.signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0


def test_device_removed_from_another_process_is_disconnected(tmp_path: Path) -> None:
    import httpx

    data = tmp_path / "data"
    token = tinyboard("device", "add", "doomed", "--data-dir", str(data)).stdout.strip()
    server = ServeProcess(data)
    try:
        url = f"http://127.0.0.1:{server.http_port}/api/v1/{token}/telemetry"
        assert httpx.post(url, json={"a": 1}).status_code == 200  # the token is now cached
        with LineClient(server.line_port) as client:
            assert client.ask(f"TOKEN {token}") == "OK doomed"
            removed = tinyboard("device", "rm", "doomed", "--yes", "--data-dir", str(data))
            assert removed.returncode == 0
            client.sock.settimeout(5)
            assert client.at_eof()  # closed by the server's device watcher
        assert httpx.post(url, json={"a": 2}).status_code == 401
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait()[0] == 0


def test_chat_prompts_on_a_terminal(tmp_path: Path) -> None:
    import os
    import pty
    import select
    import subprocess
    import sys

    server = ServeProcess(tmp_path / "data")
    controller, terminal = pty.openpty()
    chat = subprocess.Popen(
        [sys.executable, "-m", "tinyboard", "chat", "--port", str(server.line_port)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)

    def read_until(text: str) -> str:
        seen = ""
        deadline = time.monotonic() + 10
        while text not in seen:
            assert time.monotonic() < deadline, f"no {text!r} in {seen!r}"
            if select.select([controller], [], [], 0.2)[0]:
                seen += os.read(controller, 1024).decode(errors="replace")
        return seen

    try:
        assert "connected to" in read_until("> ")  # greeting, then the prompt
        os.write(controller, b"hello there\n")
        assert "HELLO THERE" in read_until("> ")
        os.write(controller, b"CLOSE SOCKET\n")
        read_until("CLOSE SOCKET\r\nCLOSE SOCKET")  # the echo of the input, then the reply
        assert chat.wait(10) == 0
    finally:
        os.close(controller)
        if chat.poll() is None:
            chat.kill()
        server.signal(signal.SIGTERM)
        server.wait()
