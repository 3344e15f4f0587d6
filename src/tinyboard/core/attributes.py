"""Device attributes: shared and server attributes saved by people (REST, the dashboard),
shared ones pushed to the device, and the reads behind a device's attribute request (what
the device's own messages mean is core/device_api.py's)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from functools import partial

from tinyboard.core.models import AttributeRow, Device, Scope, Value
from tinyboard.core.pipeline import Pipeline
from tinyboard.core.sessions import SessionHub
from tinyboard.storage.base import Store

log = logging.getLogger(__name__)

Keys = Sequence[str] | None
"""Attribute keys to read; None means every key of that scope."""


def _consume(delivery: asyncio.Future[None] | None, device: Device) -> None:
    """Pushes are fire-and-forget (the value is stored; a device that reconnects asks for
    it), so a device that leaves before acknowledging one is normal: one debug line, never
    an unretrieved future's error."""
    if delivery is not None:
        delivery.add_done_callback(partial(_delivered, device.name))


def _delivered(device_name: str, delivery: asyncio.Future[None]) -> None:
    if not delivery.cancelled() and (exc := delivery.exception()) is not None:
        log.debug("shared attributes not delivered to %s: %s", device_name, exc)


class AttributeService:
    def __init__(self, store: Store, pipeline: Pipeline, hub: SessionHub) -> None:
        self.store = store
        self.pipeline = pipeline
        self.hub = hub

    async def update_shared(self, device: Device, values: dict[str, Value]) -> None:
        """Store shared attributes (durably), then push them to the device's sessions."""
        await self.update_shared_of([(device, values)])

    async def update_shared_of(self, updates: Sequence[tuple[Device, dict[str, Value]]]) -> None:
        """Shared attributes of several devices in one commit, then each device's pushed to
        its sessions (a profile's change reaching a page of its devices)."""
        ts = int(time.time() * 1000)
        rows: list[AttributeRow] = [
            (device.key, "SHARED", k, ts, v)
            for device, values in updates
            for k, v in values.items()
        ]
        await self.pipeline.commit([], rows)
        for device, values in updates:
            self._push(device, values)

    def _push(self, device: Device, update: dict[str, Value]) -> None:
        for session in self.hub.for_device(device.id):
            if session.wants_attributes:
                _consume(session.push_attributes(update), device)

    async def update_server(self, device: Device, values: dict[str, Value]) -> None:
        """Store server attributes (never sent to the device)."""
        ts = int(time.time() * 1000)
        rows: list[AttributeRow] = [(device.key, "SERVER", k, ts, v) for k, v in values.items()]
        await self.pipeline.commit([], rows)

    async def delete(self, device: Device, scope: Scope, keys: Sequence[str]) -> None:
        """Delete attributes of one scope; deleted shared ones are announced to the device's
        sessions as ThingsBoard does: `{"deleted": [keys]}` on the attribute-update feed."""
        await self.store.delete_attributes(device.key, scope, keys)
        if scope == "SHARED":
            self._push(device, {"deleted": list(keys)})

    async def read_for_device(
        self, device: Device, client_keys: Keys, shared_keys: Keys
    ) -> dict[str, dict[str, Value]]:
        """ThingsBoard's attribute response: `{"client": {...}, "shared": {...}}`, empty
        sections left out."""
        out: dict[str, dict[str, Value]] = {}
        sections: tuple[tuple[str, Scope, Keys], ...] = (
            ("client", "CLIENT", client_keys),
            ("shared", "SHARED", shared_keys),
        )
        for section, scope, keys in sections:
            if keys is not None and not keys:
                continue
            values = await self.store.attributes(device.key, scope, keys)
            if values:
                out[section] = {k: v for k, (_, v) in values.items()}
        return out
