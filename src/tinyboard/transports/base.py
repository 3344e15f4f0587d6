"""What every transport server shares: its live connections and its background tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol


class Closable(Protocol):
    def pause(self, reason: str) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class TransportServer:
    """Tracks connections and tasks so the lifecycle owner can stop them in order."""

    name = "transport"

    def __init__(self) -> None:
        self.connections: set[Closable] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def pause_all(self) -> None:
        """Stop taking input (shutdown): nothing new is read after the pipeline drains."""
        for conn in list(self.connections):
            conn.pause("shutdown")

    def close_all(self) -> None:
        for conn in list(self.connections):
            conn.close()

    def abort_all(self) -> None:
        for conn in list(self.connections):
            conn.abort()

    async def cancel_tasks(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
