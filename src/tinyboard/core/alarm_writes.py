"""Write-behind for the alarm engine: its decisions reach the store from one task, in the
order they were made.

The engine decides on the event loop at once and queues the store write here, so ingestion
never waits for an alarm write. A reader that must see every decision so far waits for
`settled()` (read-your-writes); `stop()` writes what is still queued before the store closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

Write = Callable[[], Coroutine[Any, Any, Any]]


class WriteBehind:
    def __init__(self) -> None:
        self.failed = 0
        """Writes the store refused (logged, then skipped: later writes still go in)."""
        self._queue: asyncio.Queue[tuple[Write, asyncio.Future[None] | None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def put(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Queue `fn(*args)`; it runs after everything queued before it."""
        self._queue.put_nowait((lambda: fn(*args), None))

    async def settled(self) -> None:
        """Return once every write queued so far is done."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((_nothing, done))
        await done

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tinyboard-alarm-writer")

    async def stop(self) -> None:
        if self._task is not None:
            await self.settled()  # the writer finishes what was decided, nothing cut in half
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while not self._queue.empty():  # what was decided is written before the store closes
            write, done = self._queue.get_nowait()
            await self._write(write, done)

    async def _run(self) -> None:
        while True:
            write, done = await self._queue.get()
            await self._write(write, done)

    async def _write(self, write: Write, done: asyncio.Future[None] | None) -> None:
        try:
            await write()
        except Exception:
            self.failed += 1
            log.exception("could not store an alarm change")
        if done is not None and not done.done():
            done.set_result(None)


async def _nothing() -> None:
    return None
