"""Online/offline, transport and last-seen of a device, from the client registry and the
device's newest stored value."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tinyboard.core.models import Device
from tinyboard.registry import Registry

INACTIVITY_SECONDS = 600.0
"""A device without a live connection counts as online this long after it was last heard
(ThingsBoard's default inactivity timeout; HTTP devices never hold a connection)."""


@dataclass(frozen=True, slots=True)
class Presence:
    online: bool
    transport: str
    """The live connection's transport, else the last one used, else ''."""
    last_seen_ms: int | None


def presence_of(
    registry: Registry, device: Device, newest_ts: int | None, now: float | None = None
) -> Presence:
    now = time.time() if now is None else now
    connected = registry.for_device(device.id)
    if connected:
        transports = ", ".join(sorted({c.transport for c in connected}))
        return Presence(True, transports, int(now * 1000))
    last = registry.last_seen(device.id)
    heard_ms = max(int(last[1] * 1000) if last else 0, newest_ts or 0) or None
    online = heard_ms is not None and now * 1000 - heard_ms < INACTIVITY_SECONDS * 1000
    return Presence(online, last[0] if last else "", heard_ms)
