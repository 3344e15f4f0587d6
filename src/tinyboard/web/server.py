"""uvicorn serving the FastAPI app inside tinyboard's own event loop and lifecycle.

uvicorn's `serve()` normally installs its own SIGINT/SIGTERM handlers and re-raises the
signal after it returns; with default handlers the process would then die before the other
transports shut down (see docs/architecture.md). Here `server.py` owns signals, so uvicorn's
capture is turned off and shutdown is requested through `should_exit`.

Requests go through tinyboard's HTTP limits (`limits.py`: a subclass of uvicorn's httptools
protocol) and `X-Forwarded-For` is believed only from `--trusted-proxies` (uvicorn's own
default trusts 127.0.0.1, which would let anyone on the machine pick their address).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from tinyboard.web.disconnects import QuietDisconnects
from tinyboard.web.limits import HttpGuard, HttpLimits, protocol_class

GRACEFUL_SECONDS = 5


class _EmbeddedUvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    def __init__(
        self, app: FastAPI, sock: socket.socket, limits: HttpLimits, *, backlog: int = 2048
    ) -> None:
        self._guard = HttpGuard(limits)
        proxies = [str(network) for network in limits.trusted_proxies]
        config = uvicorn.Config(
            QuietDisconnects(app),
            http=protocol_class(self._guard),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
            backlog=backlog,  # uvicorn calls listen() on the socket again
            timeout_keep_alive=limits.idle_timeout,
            ws_max_size=limits.max_body,
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies,
        )
        self._server = _EmbeddedUvicorn(config)
        self._sock = sock
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what went wrong
                raise RuntimeError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.005)
        self._sweeper = asyncio.create_task(self._guard.sweep_forever(), name="http-sweep")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._task = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
