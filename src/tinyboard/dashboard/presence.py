"""Online/offline, transport and last-seen of a device, from the client registry and the
device's newest stored value."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tinyboard.core.models import Device, TsValue
from tinyboard.registry import Registry
from tinyboard.web.context import WebContext

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
    registry: Registry,
    device: Device,
    newest_ts: int | None,
    now: float | None = None,
    *,
    inactive: bool | None = None,
) -> Presence:
    """`inactive`: None when no inactivity rule watches the device; else whether one has
    fired, which then decides online/offline (the rule's timeout replaces the default)."""
    now = time.time() if now is None else now
    connected = registry.for_device(device.id)
    last = registry.last_seen(device.id)
    if connected:
        transport = ", ".join(sorted({c.transport for c in connected}))
        seen: int | None = int(now * 1000)
    else:
        transport = last[0] if last else ""
        seen = max(int(last[1] * 1000) if last else 0, newest_ts or 0) or None
    if inactive is not None:
        online = not inactive
    else:
        recent = seen is not None and now * 1000 - seen < INACTIVITY_SECONDS * 1000
        online = bool(connected) or recent
    return Presence(online, transport, seen)


async def presence_now(ctx: WebContext, device: Device) -> tuple[Presence, dict[str, TsValue]]:
    """The device's presence, and its latest values (read for it anyway)."""
    latest = await ctx.store.latest(device.key)
    newest = max((ts for ts, _ in latest.values()), default=None)
    state = presence_of(ctx.registry, device, newest, inactive=ctx.alarms.inactive(device))
    return state, latest
