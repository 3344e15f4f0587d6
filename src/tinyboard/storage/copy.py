"""`tinyboard copy`: move an installation from one store to another (e.g. SQLite to
PostgreSQL) without loss, and prove it.

Everything goes through the `Store` protocol, so any pair of backends works. Devices keep
their ids and tokens (boards need no change) but get the target's compact keys; time
series are read and written in pages. Afterwards both sides are read again and compared:
for every device and key, the number of points and a SHA-256 over (ts, value) in time
order; each device's record (name, type, label, token, `additionalInfo`, packages) and
attributes as they are; each OTA package's info and a SHA-256 of its file; users, rules and
alarms by count. The target must be empty. Package files are streamed chunk by chunk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import orjson

from tinyboard.core.models import SCOPES, AttributeRow, Device, OtaPackage, Reading
from tinyboard.errors import TinyboardError
from tinyboard.storage.base import Store

PAGE = 10_000
SKIPPED_SETTINGS = {"device_generation"}


class CopyError(TinyboardError):
    """The copy cannot start, or its check found a difference."""


@dataclass(slots=True)
class CopyReport:
    devices: int = 0
    points: int = 0
    attributes: int = 0
    users: int = 0
    rules: int = 0
    alarms: int = 0
    packages: int = 0
    checked_series: int = 0
    differences: list[str] = field(default_factory=list)


async def copy_store(
    source: Store, target: Store, progress: Callable[[str], None] = lambda _: None
) -> CopyReport:
    if await target.count_devices() or await target.list_users():
        raise CopyError("the target store is not empty; copy into a new database")
    report = CopyReport()
    for name, setting in (await source.settings()).items():
        if name not in SKIPPED_SETTINGS:
            await target.setting(name, setting)
    for user in await source.list_users():
        await target.import_user(user)
        report.users += 1
    profile_ids = await _copy_profiles(source, target)
    report.packages = await _copy_packages(source, target, profile_ids)
    await _assign_profile_packages(source, target, profile_ids)
    keys: dict[int, Device] = {}
    for device in await _all_devices(source):
        copied = await target.import_device(device)
        keys[device.key] = copied
        report.devices += 1
        report.points += await _copy_series(source, target, device, copied)
        report.attributes += await _copy_attributes(source, target, device, copied)
        progress(f"{device.name}: copied")
    await _copy_alarms(source, target, keys, report)
    await _verify(source, target, keys, report)
    return report


async def _copy_profiles(source: Store, target: Store) -> dict[str, str]:
    """Profiles by name: the target's own `default` takes the source's settings (and id
    stays), so the devices imported next find their profile by their type. Without their
    packages yet (those need the profile first). Returns source id → target id."""
    target_ids = {p.name: p.id for p in await target.profiles()}
    moved = {}
    for profile in await source.profiles():
        copied = await target.save_profile(
            replace(
                profile,
                id=target_ids.get(profile.name, profile.id),
                firmware_id=None,
                software_id=None,
            )
        )
        moved[profile.id] = copied.id
        if profile.default:
            await target.set_default_profile(copied.id)
    return moved


async def _copy_packages(source: Store, target: Store, profile_ids: dict[str, str]) -> int:
    """Every OTA package with its id, its file streamed chunk by chunk."""
    packages = await source.ota_packages()
    for package in packages:
        profile = None if package.profile_id is None else profile_ids.get(package.profile_id)
        info = replace(package, profile_id=profile, data_upload=None)
        if package.data_upload is not None:
            info = replace(info, file_name=None, content_type=None, checksum_algorithm=None,
                           checksum=None, data_size=None)  # fmt: skip
        saved = await target.save_ota_package(info)
        if package.data_upload is not None:
            await target.save_ota_data(package.id, source.ota_data(package), _as_in(package, saved))
    return len(packages)


def _as_in(source: OtaPackage, saved: OtaPackage) -> Callable[[int], OtaPackage]:
    def complete(size: int) -> OtaPackage:
        if size != source.data_size:
            raise CopyError(f"OTA package {source.id}: {size} bytes read, {source.data_size} kept")
        return replace(
            saved,
            file_name=source.file_name,
            content_type=source.content_type,
            checksum_algorithm=source.checksum_algorithm,
            checksum=source.checksum,
            data_size=size,
        )

    return complete


async def _assign_profile_packages(
    source: Store, target: Store, profile_ids: dict[str, str]
) -> None:
    for profile in await source.profiles():
        if profile.firmware_id is not None or profile.software_id is not None:
            copied = await target.get_profile(profile_ids[profile.id])
            await target.save_profile(
                replace(copied, firmware_id=profile.firmware_id, software_id=profile.software_id)
            )


async def _copy_attributes(source: Store, target: Store, device: Device, copied: Device) -> int:
    rows: list[AttributeRow] = []
    for scope in SCOPES:
        for key, (ts, value) in (await source.attributes(device.key, scope)).items():
            rows.append((copied.key, scope, key, ts, value))
    if rows:
        await target.write((), rows)
    return len(rows)


async def _copy_alarms(
    source: Store, target: Store, keys: dict[int, Device], report: CopyReport
) -> None:
    for rule in await source.alarm_rules():
        await target.save_alarm_rule(str(rule["id"]), rule)
        report.rules += 1
    alarms, _ = await source.list_alarms(limit=2**62)
    for alarm in alarms:
        moved = keys.get(alarm.device_key)
        if moved is not None:
            await target.save_alarm(replace(alarm, device_key=moved.key))
            report.alarms += 1
    for rule_id, device_key, since in await source.alarm_pending():
        if device_key in keys:
            await target.set_alarm_pending(rule_id, keys[device_key].key, since)


async def _all_devices(store: Store) -> list[Device]:
    return await store.list_devices(limit=2**62)


async def _copy_series(source: Store, target: Store, device: Device, copied: Device) -> int:
    total = 0
    for key in await source.ts_keys(device.key):
        start = 0
        while True:
            points = await source.history(
                device.key, key, start_ts=start, end_ts=2**62, limit=PAGE, descending=False
            )
            if not points:
                break
            readings: list[Reading] = [(copied.key, key, ts, value) for ts, value in points]
            await target.write(readings, ())
            total += len(points)
            if len(points) < PAGE:
                break
            start = points[-1][0] + 1
    return total


async def series_digest(store: Store, device: int, key: str) -> tuple[int, str]:
    """(points, SHA-256 of every (ts, value) in time order) of one series."""
    digest = hashlib.sha256()
    count, start = 0, 0
    while True:
        points = await store.history(
            device, key, start_ts=start, end_ts=2**62, limit=PAGE, descending=False
        )
        for ts, value in points:
            digest.update(orjson.dumps([ts, value]))
        count += len(points)
        if len(points) < PAGE:
            return count, digest.hexdigest()
        start = points[-1][0] + 1


def _record(device: Device) -> tuple[object, ...]:
    """What a copy keeps of a device (its key and profile id are the target's)."""
    d = device
    return (d.name, d.type, d.label, d.token, d.created_ts, d.additional_info, d.firmware_id,
            d.software_id)  # fmt: skip


async def _verify(
    source: Store, target: Store, keys: dict[int, Device], report: CopyReport
) -> None:
    for old_key, new in keys.items():
        if _record(await source.get_device(new.id)) != _record(await target.get_device(new.id)):
            report.differences.append(f"{new.name}: the device record differs")
        for key in await source.ts_keys(old_key):
            before = await series_digest(source, old_key, key)
            after = await series_digest(target, new.key, key)
            report.checked_series += 1
            if before != after:
                report.differences.append(
                    f"{new.name}/{key}: {before[0]} points, {after[0]} after the copy"
                )
        for scope in SCOPES:
            if await source.attributes(old_key, scope) != await target.attributes(new.key, scope):
                report.differences.append(f"{new.name}: {scope} attributes differ")
    await _verify_packages(source, target, report)
    if len(await target.list_users()) != report.users:
        report.differences.append("users differ")
    if len(await target.alarm_rules()) != report.rules:
        report.differences.append("alarm rules differ")
    if report.differences:
        raise CopyError("the copy differs from the source: " + "; ".join(report.differences))


async def package_digest(store: Store, package: OtaPackage) -> str:
    """SHA-256 of a package's file, read chunk by chunk."""
    digest = hashlib.sha256()
    async for chunk in store.ota_data(package):
        digest.update(chunk)
    return digest.hexdigest()


def _package_record(package: OtaPackage) -> tuple[object, ...]:
    p = package
    return (p.id, p.type, p.title, p.version, p.tag, p.url, p.file_name, p.content_type,
            p.checksum_algorithm, p.checksum, p.data_size, p.additional_info,
            p.created_ts)  # fmt: skip


async def _verify_packages(source: Store, target: Store, report: CopyReport) -> None:
    copied = {p.id: p for p in await target.ota_packages()}
    for package in await source.ota_packages():
        there = copied.get(package.id)
        if there is None or _package_record(there) != _package_record(package):
            report.differences.append(f"OTA package {package.title} {package.version} differs")
        elif await package_digest(source, package) != await package_digest(target, there):
            report.differences.append(
                f"OTA package {package.title} {package.version}: file differs"
            )
