"""Retention: time-series points older than `--retention-days` are deleted, in bounded
batches so the writer is never held up for long; the latest value of every key stays."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from tinyboard.storage.base import Store

log = logging.getLogger(__name__)

BATCH = 10_000
PAUSE_SECONDS = 0.05
"""Between batches: ingestion gets the writer back in between."""
EVERY_SECONDS = 3600.0


class Retention:
    def __init__(
        self, store: Store, days: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.days = days
        self.clock = clock
        self.deleted = 0

    async def sweep(self) -> int:
        """Delete everything older than the retention period now; returns how many points."""
        cutoff = int((self.clock() - self.days * 86400) * 1000)
        total = 0
        while True:
            gone = await self.store.delete_history_before(cutoff, BATCH)
            total += gone
            if gone < BATCH:
                break
            await asyncio.sleep(PAUSE_SECONDS)
        self.deleted += total
        return total

    async def run(self) -> None:
        """Sweep a minute after start, then every hour, until cancelled."""
        await asyncio.sleep(60)
        while True:
            try:
                gone = await self.sweep()
                if gone:
                    log.info("retention: deleted %d points older than %g days", gone, self.days)
            except Exception:
                log.exception("retention sweep failed; trying again in an hour")
            await asyncio.sleep(EVERY_SECONDS)
