"""uvicorn serving the FastAPI app inside tinyboard's own event loop and lifecycle.

uvicorn's `serve()` normally installs its own SIGINT/SIGTERM handlers and re-raises the
signal after it returns; with default handlers the process would then die before the other
transports shut down (see docs/architecture.md). Here `server.py` owns signals, so uvicorn's
capture is turned off and shutdown is requested through `should_exit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

GRACEFUL_SECONDS = 5


class _EmbeddedUvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    def __init__(self, app: FastAPI, sock: socket.socket, *, backlog: int = 2048) -> None:
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
            backlog=backlog,  # uvicorn calls listen() on the socket again
        )
        self._server = _EmbeddedUvicorn(config)
        self._sock = sock
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what went wrong
                raise RuntimeError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._task = None
