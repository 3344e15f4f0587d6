"""Access tokens → devices, cached, and kept honest about changes made by other processes.

Strategy: positive lookups are cached (an HTTP device request then costs no database round
trip); a miss always asks the store, so a token added a moment ago by `tinyboard device add`
works at once. A watcher polls the store's device generation (a counter bumped by triggers on
every device change, from any process) and, when it moves, drops the cache and reports the
devices that no longer exist so their connections can be closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from tinyboard.core.models import Device
from tinyboard.errors import NotFoundError
from tinyboard.storage.base import Store

log = logging.getLogger(__name__)

WATCH_INTERVAL = 0.5
MAX_CACHED = 100_000


class DeviceDirectory:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_token: dict[str, Device] = {}
        self._generation: int | None = None

    async def by_token(self, token: str) -> Device | None:
        device = self._by_token.get(token)
        if device is None:
            device = await self.store.device_by_token(token)
            if device is not None:
                if len(self._by_token) >= MAX_CACHED:
                    self._by_token.clear()
                self._by_token[token] = device
        return device

    def forget(self, device: Device) -> None:
        """Drop a device this process deleted or changed."""
        self._by_token.pop(device.token, None)

    async def changed(self) -> bool:
        """True (and the cache dropped) if any process changed a device since the last call."""
        generation = await self.store.device_generation()
        moved = self._generation is not None and generation != self._generation
        self._generation = generation
        if moved:
            self._by_token.clear()
        return moved

    async def gone(self, device_ids: Iterable[str]) -> list[str]:
        """Which of these devices no longer exist."""
        missing = []
        for device_id in device_ids:
            try:
                await self.store.get_device(device_id)
            except NotFoundError:
                missing.append(device_id)
        return missing

    async def watch(
        self,
        connected: Callable[[], Iterable[str]],
        close: Callable[[str], None],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        """Poll for device changes forever; close the connections of deleted devices, and
        tell `on_change` (which reloads what it keeps about devices)."""
        await self.changed()
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                if await self.changed():
                    on_change()
                    for device_id in await self.gone(set(connected())):
                        log.info("device %s was deleted; closing its connections", device_id)
                        close(device_id)
            except Exception:
                log.exception("device watch failed; retrying")
