"""The write pipeline: bounded queue → group-commit writer → store → acknowledgements.

Strategy: transports `submit` a job (the readings of one network read plus a callback) and
keep going. One writer task takes everything queued, up to `batch_limit` readings, writes it
in one transaction and then calls every job's callback — the only place where a reading
becomes acknowledged. While a transaction is in flight new jobs pile up and go into the next
one, so throughput grows with concurrency. When more than `queue_limit` readings wait,
`submit` returns False and the transport pauses reading its socket until `when_space` calls
it back.

A batch the store refuses for one job's data (`RejectedDataError`) is written again in
halves, in order, down to single jobs, so only the jobs holding the bad data fail: a few
transactions per bad job instead of one per job. Errors that are not the data's fault
(`StoreFullError`, a lost database) fail the whole batch at once: retrying its jobs one by
one could not succeed and would only keep the writer busy. Failures are logged once per
kind and then summarised, so a full disk does not also flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tinyboard.core.models import AttributeRow, Reading
from tinyboard.errors import RejectedDataError
from tinyboard.storage.base import Store

log = logging.getLogger(__name__)

Done = Callable[[BaseException | None], None]
"""Called on the event loop after the job's transaction: None on commit, else the error."""

Committed = Callable[[Sequence[Reading], Sequence[AttributeRow]], None]
"""After-commit listener: live subscribers, alarm rules (later issues)."""

NO_ATTRIBUTES: Sequence[AttributeRow] = ()
QUIET_SECONDS = 10.0
"""After logging a storage failure, the same failure is only counted for this long."""


@dataclass(slots=True)
class PipelineStats:
    """Counters only; formatted by whoever reports them."""

    jobs: int = 0
    readings: int = 0
    commits: int = 0
    errors: int = 0
    """Batches that were not committed whole."""
    retries: int = 0
    """Transactions spent finding the jobs whose data the store refused."""
    rejected: int = 0
    """Jobs failed for their own data while the rest of their batch was stored."""
    largest_batch: int = 0
    deepest_queue: int = 0
    pauses: int = 0


@dataclass(slots=True)
class _Job:
    readings: Sequence[Reading]
    attributes: Sequence[AttributeRow]
    done: Done
    error: BaseException | None = None

    @property
    def size(self) -> int:
        return len(self.readings) + len(self.attributes)


@dataclass(slots=True)
class _Batch:
    jobs: list[_Job]
    readings: list[Reading]
    attributes: list[AttributeRow]
    stored: bool = True
    """Every job committed (False: see each job's `error`)."""


@dataclass(slots=True)
class _FailureLog:
    """Logs a storage failure once, then counts repeats of it for `QUIET_SECONDS`."""

    last: str = ""
    logged_at: float = 0.0
    repeats: int = 0

    def failed(self, readings: int, error: BaseException) -> None:
        now, text = time.monotonic(), str(error)
        if text == self.last and now - self.logged_at < QUIET_SECONDS:
            self.repeats += 1
            return
        since = (
            f" ({self.repeats} more failed batches since the last report)" if self.repeats else ""
        )
        log.error("could not store %d readings: %s%s", readings, error, since)
        self.last, self.logged_at, self.repeats = text, now, 0

    def stored(self) -> None:
        if self.last:
            log.warning("storing again (%d more failed batches since the report)", self.repeats)
            self.last, self.repeats = "", 0


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
    _failures: _FailureLog = field(default_factory=_FailureLog)

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
                await self._outcome(batch, write)
                # Start the next transaction before acknowledging this one, so the writer
                # works while the loop sends the acknowledgements.
                writing = self._start(self._take()) if self._jobs else None
                self._finish(batch)
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

    async def _outcome(self, batch: _Batch, write: asyncio.Future[None]) -> None:
        """Wait for the batch's transaction; on failure, mark which jobs failed."""
        try:
            await write
        except RejectedDataError as exc:
            if len(batch.jobs) == 1:
                self._reject(batch.jobs[0], exc)
            else:
                await self._isolate(batch.jobs)
        except Exception as exc:
            self._fail(batch.jobs, exc)
        else:
            self._failures.stored()
            return
        self.stats.errors += 1
        batch.stored = False

    async def _isolate(self, jobs: list[_Job]) -> None:
        """Write the halves of a refused batch, in submission order, down to single jobs:
        the jobs the store still refuses alone fail, every other job is committed."""
        half = len(jobs) // 2
        groups = [jobs[half:], jobs[:half]]  # a stack: the earlier half is written first
        while groups:
            group = groups.pop()
            self.stats.retries += 1
            try:
                await self.store.write(
                    [r for job in group for r in job.readings],
                    [a for job in group for a in job.attributes],
                )
            except RejectedDataError as exc:
                if len(group) == 1:
                    self._reject(group[0], exc)
                else:
                    half = len(group) // 2
                    groups += (group[half:], group[:half])
            except Exception as exc:  # not the data's fault: the rest cannot do better
                self._fail([job for g in (group, *groups) for job in g], exc)
                return

    def _reject(self, job: _Job, error: RejectedDataError) -> None:
        self.stats.rejected += 1
        job.error = error
        log.error("the store refused a job of %d readings (not acknowledged): %s", job.size, error)

    def _fail(self, jobs: list[_Job], error: BaseException) -> None:
        for job in jobs:
            job.error = error
        self._failures.failed(sum(job.size for job in jobs), error)

    def _finish(self, batch: _Batch) -> None:
        """Acknowledge (or fail) every job of a batch, in submission order."""
        self._queued -= len(batch.readings) + len(batch.attributes)
        self._account(len(batch.jobs), len(batch.readings))
        for job in batch.jobs:
            try:
                job.done(job.error)
            except Exception:
                log.exception("acknowledgement callback failed")
        if batch.stored:
            self._notify(batch.readings, batch.attributes)
        else:
            stored = [job for job in batch.jobs if job.error is None]
            if stored:
                self._notify(
                    [r for job in stored for r in job.readings],
                    [a for job in stored for a in job.attributes],
                )
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
