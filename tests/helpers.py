"""Test helpers: a real server in a background thread, and a blocking line client."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tinyboard.config import Config
from tinyboard.core.models import Device
from tinyboard.server import Server, new_loop

T = TypeVar("T")


class ServerThread:
    """A real tinyboard `Server` on 127.0.0.1 (ports chosen by the OS), on its own loop."""

    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        # NiceGUI allows one dashboard per process; the browser tests start their own server.
        ports = {"line_port": 0, "mqtt_port": 0, "http_port": 0, "dashboard": False}
        self.config = Config(data_dir=data_dir, bind="127.0.0.1", **{**ports, **overrides})
        self.server = Server(self.config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="tinyboard-test-server")

    def _main(self) -> None:
        async def run() -> None:
            self.loop = asyncio.get_running_loop()
            task = asyncio.create_task(self.server.serve(handle_signals=False))
            ready = asyncio.create_task(self.server.ready.wait())
            done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:  # start-up failed: say why at once, not after start() returned
                ready.cancel()
                self._error = task.exception() or RuntimeError("the server stopped at start")
            self._started.set()
            await task

        try:
            new_loop()(run())
        except BaseException as exc:
            self._error = exc
            self._started.set()

    def start(self) -> ServerThread:
        self._thread.start()
        self._started.wait(10)
        if self._error:
            raise self._error
        return self

    def stop(self) -> None:
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.request_shutdown)
        self._thread.join(15)
        assert not self._thread.is_alive(), "server did not shut down"
        if self._error:
            raise self._error

    @property
    def line_port(self) -> int:
        return self.server.ports["line_port"]

    @property
    def mqtt_port(self) -> int:
        return self.server.ports["mqtt_port"]

    @property
    def http_port(self) -> int:
        return self.server.ports["http_port"]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def admin(self) -> tuple[str, str]:
        """(e-mail, password) of the admin created on first start."""
        assert self.server.created_admin is not None
        user, password = self.server.created_admin
        return user.email, password

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop (e.g. a store query) and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def add_device(self, name: str, **kwargs: Any) -> Device:
        return self.call(self.server.store.create_device(name, **kwargs))

    def on_loop(self, fn: Any) -> Any:
        """Evaluate `fn()` on the server's loop (to read loop-owned state safely)."""

        async def wrapper() -> Any:
            return fn()

        return self.call(wrapper())


@contextmanager
def running(data_dir: Path, **overrides: Any) -> Iterator[ServerThread]:
    """A started ServerThread with these settings, stopped afterwards (for fixtures)."""
    server = ServerThread(data_dir, **overrides).start()
    try:
        yield server
    finally:
        server.stop()


class FixedClock:
    """Stamps every message with one time, so parser examples can name the stamp
    (core/clock.py has tests of its own in tests/test_clock.py)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def stamp(self, device: int) -> int:
        return self.ms

    def saw(self, device: int, ts: int) -> None:
        pass


class LineClient:
    """A blocking line-protocol client, like the course's Java client."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def send(self, data: str | bytes) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def recv(self) -> str:
        line = self.reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        return line.decode().rstrip("\n")

    def ask(self, line: str) -> str:
        self.send(line + "\n")
        return self.recv()

    def at_eof(self) -> bool:
        return self.reader.readline() == b""

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


TINYBOARD = [sys.executable, "-m", "tinyboard"]
READY = re.compile(r"line protocol on [^:]+:(\d+), MQTT on [^:]+:(\d+), HTTP on [^:]+:(\d+)")


def tinyboard(
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Any:
    """Run a `tinyboard` CLI command to completion."""
    return subprocess.run(
        [*TINYBOARD, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


class ServeProcess:
    """`tinyboard serve` as a real child process, as a user would start it."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [
                *TINYBOARD,
                "serve",
                "--bind",
                "127.0.0.1",
                "--line-port",
                "0",
                "--mqtt-port",
                "0",
                "--http-port",
                "0",
                "--data-dir",
                str(data_dir),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # as a user runs it: NiceGUI changes behaviour when it sees it is under pytest
            env={k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"},
        )
        self.output: list[str] = []
        self.line_port, self.mqtt_port, self.http_port = self._wait_ready()

    def _wait_ready(self) -> tuple[int, int, int]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if match := READY.search(line):
                return int(match.group(1)), int(match.group(2)), int(match.group(3))
        self.proc.kill()
        _, err = self.proc.communicate()
        raise RuntimeError(f"server did not start: {''.join(self.output)}{err}")

    @property
    def admin_password(self) -> str:
        """The password printed for the admin created on first start (read on demand: it is
        printed after the ready line)."""
        pattern = re.compile(r"created the admin user \S+ with password (\S+)")
        assert self.proc.stdout is not None
        for line in self.output:
            if match := pattern.search(line):
                return match.group(1)
        while line := self.proc.stdout.readline():
            self.output.append(line)
            if match := pattern.search(line):
                return match.group(1)
        raise AssertionError(f"no admin password in {self.output}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 20) -> tuple[int, str, str]:
        """Exit code, all of stdout and stderr. (Not `communicate`: it reads the raw pipe and
        would miss what `readline` already buffered.)"""
        code = self.proc.wait(timeout)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        out, err = self.proc.stdout.read(), self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code, "".join(self.output) + out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()
