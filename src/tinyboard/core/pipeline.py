"""The write pipeline: bounded queue → group-commit writer → store → acknowledgements.

Strategy: transports `submit` a job (the readings of one network read plus a callback) and
keep going. One writer task takes everything queued, up to `batch_limit` readings, writes it
in one transaction and then calls every job's callback — the only place where a reading
becomes acknowledged. While a transaction is in flight new jobs pile up and go into the next
one, so throughput grows with concurrency. When more than `queue_limit` readings wait,
`submit` returns False and the transport pauses reading its socket until `when_space` calls
it back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tinyboard.core.models import AttributeRow, Reading
from tinyboard.storage.base import Store

log = logging.getLogger(__name__)

Done = Callable[[BaseException | None], None]
"""Called on the event loop after the job's transaction: None on commit, else the error."""

Committed = Callable[[Sequence[Reading], Sequence[AttributeRow]], None]
"""After-commit listener: live subscribers, alarm rules (later issues)."""

NO_ATTRIBUTES: Sequence[AttributeRow] = ()


@dataclass(slots=True)
class PipelineStats:
    """Counters only; formatted by whoever reports them."""

    jobs: int = 0
    readings: int = 0
    commits: int = 0
    errors: int = 0
    largest_batch: int = 0
    deepest_queue: int = 0
    pauses: int = 0


@dataclass(slots=True)
class _Job:
    readings: Sequence[Reading]
    attributes: Sequence[AttributeRow]
    done: Done

    @property
    def size(self) -> int:
        return len(self.readings) + len(self.attributes)


@dataclass(slots=True)
class _Batch:
    jobs: list[_Job]
    readings: list[Reading]
    attributes: list[AttributeRow]


@dataclass(slots=True)
class Pipeline:
    store: Store
    queue_limit: int = 100_000
    batch_limit: int = 10_000
    stats: PipelineStats = field(default_factory=PipelineStats)
    _jobs: deque[_Job] = field(default_factory=deque)
    _queued: int = 0
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _waiting_for_space: list[Callable[[], None]] = field(default_factory=list)
    _listeners: list[Committed] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Readings queued and not yet committed."""
        return self._queued

    def start(self) -> None:
        self._idle.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pipeline-writer")

    def submit(
        self,
        readings: Sequence[Reading],
        done: Done,
        attributes: Sequence[AttributeRow] = NO_ATTRIBUTES,
    ) -> bool:
        """Queue a job. False means the queue is over its limit: pause and call `when_space`."""
        self._jobs.append(_Job(readings, attributes, done))
        self._queued += len(readings) + len(attributes)
        self.stats.deepest_queue = max(self.stats.deepest_queue, self._queued)
        self._idle.clear()
        self._wakeup.set()
        return self._queued < self.queue_limit

    async def commit(
        self, readings: Sequence[Reading], attributes: Sequence[AttributeRow] = NO_ATTRIBUTES
    ) -> None:
        """Wait for room in the queue, submit, and wait for the commit (request/response
        callers such as HTTP; socket transports use `submit` and pause reading instead)."""
        while self._queued >= self.queue_limit:
            space = asyncio.Event()
            self.when_space(space.set)
            await space.wait()
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(error: BaseException | None) -> None:
            if committed.done():
                return
            if error is None:
                committed.set_result(None)
            else:
                committed.set_exception(error)

        self.submit(readings, done, attributes)
        await committed

    def when_space(self, resume: Callable[[], None]) -> None:
        """Call `resume` once the queue has drained below half its limit."""
        self._waiting_for_space.append(resume)
        self.stats.pauses += 1

    def on_commit(self, listener: Committed) -> None:
        self._listeners.append(listener)

    async def drain(self) -> None:
        """Wait until everything submitted so far is committed and acknowledged."""
        await self._idle.wait()

    async def stop(self) -> None:
        """Drain, then end the writer task (an in-flight transaction completes first)."""
        await self.drain()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            writing = self._start(self._take()) if self._jobs else None
            while writing is not None:
                batch, write = writing
                error = await self._outcome(write)
                # Start the next transaction before acknowledging this one, so the writer
                # works while the loop sends the acknowledgements.
                writing = self._start(self._take()) if self._jobs else None
                self._finish(batch, error)
            self._idle.set()

    def _take(self) -> _Batch:
        jobs = self._jobs
        batch: list[_Job] = []
        size = 0
        while jobs and (not batch or size + jobs[0].size <= self.batch_limit):
            job = jobs.popleft()
            batch.append(job)
            size += job.size
        readings = [r for job in batch for r in job.readings]
        attributes = [a for job in batch for a in job.attributes]
        return _Batch(batch, readings, attributes)

    def _start(self, batch: _Batch) -> tuple[_Batch, asyncio.Future[None]]:
        write = asyncio.ensure_future(self.store.write(batch.readings, batch.attributes))
        return batch, write

    async def _outcome(self, write: asyncio.Future[None]) -> BaseException | None:
        try:
            await write
        except Exception as exc:
            self.stats.errors += 1
            log.error("could not store a batch: %s", exc)
            return exc
        return None

    def _finish(self, batch: _Batch, error: BaseException | None) -> None:
        """Acknowledge (or fail) every job of a batch, in submission order."""
        self._queued -= len(batch.readings) + len(batch.attributes)
        self._account(len(batch.jobs), len(batch.readings))
        for job in batch.jobs:
            try:
                job.done(error)
            except Exception:
                log.exception("acknowledgement callback failed")
        if error is None:
            self._notify(batch.readings, batch.attributes)
        self._release_waiters()

    def _account(self, jobs: int, readings: int) -> None:
        stats = self.stats
        stats.jobs += jobs
        stats.readings += readings
        stats.commits += 1
        stats.largest_batch = max(stats.largest_batch, readings)

    def _notify(self, readings: Sequence[Reading], attributes: Sequence[AttributeRow]) -> None:
        for listener in self._listeners:
            try:
                listener(readings, attributes)
            except Exception:
                log.exception("after-commit listener failed")

    def _release_waiters(self) -> None:
        if self._waiting_for_space and self._queued < self.queue_limit // 2:
            waiting, self._waiting_for_space = self._waiting_for_space, []
            for resume in waiting:
                resume()
