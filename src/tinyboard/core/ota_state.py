"""What each device is told to run: ThingsBoard's DefaultOtaPackageStateService.

Strategy: a device runs its own package of a type (firmware, software), else its profile's.
Whenever that changes (a device saved: created, given or cleared a package, moved to
another profile; a profile given, changed or cleared a package) the device gets what
ThingsBoard gives it:

- a package: telemetry `target_fw_title`, `target_fw_version`, `target_fw_tag` (with a
  tag), `target_fw_ts` and `fw_state` QUEUED, then `fw_state` INITIATED; the shared
  attributes the package has no value for are deleted (`fw_tag` without a tag, `fw_url`
  for a package with bytes; for a URL package the size and checksum it lacks), then
  `fw_title`, `fw_version`, `fw_tag`, `fw_url` or `fw_size`, `fw_checksum_algorithm` and
  `fw_checksum` are set;
- no package any more: every `fw_*` shared attribute is deleted.

(`sw_` for software.) Attributes go through `AttributeService`, so a connected device is
pushed each change like any shared-attribute update. A profile's change reaches its devices
100 at a time, in key order (one telemetry and one attribute commit per page, never the
whole fleet in memory). Changes are made one at a time (`lock`, held by the caller around
reading the old state, saving and `*_saved`), so a device sees them in the order they
were made.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from tinyboard.core.attributes import AttributeService
from tinyboard.core.clock import DeviceClocks, caught_up
from tinyboard.core.models import (
    OTA_TYPES,
    Device,
    DeviceProfile,
    OtaPackage,
    OtaType,
    Reading,
    Value,
)
from tinyboard.core.pipeline import Pipeline
from tinyboard.storage.base import Store

PAGE = 100
"""Devices per page when a profile's package changes (ThingsBoard's page size too)."""
KEYS = ("title", "version", "ts", "state", "size", "checksum", "checksum_algorithm", "url", "tag")
"""ThingsBoard's OtaPackageKey values, in its order: what an unassignment deletes."""
PREFIX: dict[OtaType, str] = {"FIRMWARE": "fw", "SOFTWARE": "sw"}


def attribute_keys(type: OtaType) -> list[str]:
    return [f"{PREFIX[type]}_{key}" for key in KEYS]


def shared_attributes(package: OtaPackage) -> tuple[dict[str, Value], list[str]]:
    """(the shared attributes a device running `package` gets, those it must not have),
    as ThingsBoard's `updateAttributes`."""
    p = PREFIX[package.type]
    values: dict[str, Value] = {f"{p}_title": package.title, f"{p}_version": package.version}
    gone: list[str] = []
    if package.tag:
        values[f"{p}_tag"] = package.tag
    else:
        gone.append(f"{p}_tag")
    data: dict[str, Value | None] = {
        f"{p}_size": package.data_size,
        f"{p}_checksum_algorithm": package.checksum_algorithm,
        f"{p}_checksum": package.checksum or None,
    }
    if package.has_url:
        values[f"{p}_url"] = package.url or ""
    for key, value in data.items():
        if value is None:
            gone.append(key)
        else:
            values[key] = value
    if not package.has_url:
        gone.append(f"{p}_url")
    return values, gone


def target_telemetry(package: OtaPackage, ts: int) -> dict[str, Value]:
    """The telemetry of an assignment before the device starts (`fw_state` QUEUED)."""
    p = PREFIX[package.type]
    values: dict[str, Value] = {
        f"target_{p}_title": package.title,
        f"target_{p}_version": package.version,
    }
    if package.tag:
        values[f"target_{p}_tag"] = package.tag
    values[f"target_{p}_ts"] = ts
    values[f"{p}_state"] = "QUEUED"
    return values


class OtaStateService:
    """Tells devices what to run when profiles and devices change (see the module)."""

    def __init__(
        self,
        store: Store,
        pipeline: Pipeline,
        attributes: AttributeService,
        clocks: DeviceClocks,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.attributes = attributes
        self.clocks = clocks
        self.lock = asyncio.Lock()
        """Held around read-old, save, `*_saved`: one change at a time, in order."""

    async def device_saved(self, old: Device | None, new: Device) -> None:
        """A device was created (`old` None) or saved: tell it if what it runs changed."""
        for type in OTA_TYPES:
            target = await self._runs(new, type)
            before = None if old is None else await self._runs(old, type)
            if target is not None and (old is None or target != before):
                await self._send([new], await self.store.get_ota_package(target))
            elif target is None and before is not None:
                await self._remove([new], type)

    async def profile_saved(self, old: DeviceProfile | None, new: DeviceProfile) -> None:
        """A profile was saved: its devices without a package of their own of a type whose
        package changed are told, a page at a time."""
        if old is None:
            return  # a new profile has no devices
        for type in OTA_TYPES:
            target = new.package_id(type)
            if target == old.package_id(type):
                continue
            package = None if target is None else await self.store.get_ota_package(target)
            after = 0
            while page := await self.store.devices_following_profile(
                new.id, type, after_key=after, limit=PAGE
            ):
                await (self._remove(page, type) if package is None else self._send(page, package))
                after = page[-1].key

    async def _runs(self, device: Device, type: OtaType) -> str | None:
        own = device.package_id(type)
        if own is not None:
            return own
        return (await self.store.get_profile(device.profile_id)).package_id(type)

    async def _send(self, devices: Sequence[Device], package: OtaPackage) -> None:
        ts = int(time.time() * 1000)
        queued = target_telemetry(package, ts)
        state = f"{PREFIX[package.type]}_state"
        readings: list[Reading] = []
        for device in devices:
            await caught_up(self.clocks, device.key)
            stamp = self.clocks.stamp(device.key)
            readings += [(device.key, key, stamp, value) for key, value in queued.items()]
            readings.append((device.key, state, self.clocks.stamp(device.key), "INITIATED"))
        await self.pipeline.commit(readings, [])
        values, gone = shared_attributes(package)
        for device in devices:
            await self.attributes.delete(device, "SHARED", gone)
        await self.attributes.update_shared_of([(device, values) for device in devices])

    async def _remove(self, devices: Sequence[Device], type: OtaType) -> None:
        keys = attribute_keys(type)
        for device in devices:
            await self.attributes.delete(device, "SHARED", keys)
