"""Units and display precision of a device's keys, read from its server attribute `units`,
over the defaults of its device profile.

ThingsBoard keeps these per widget data key (`units`, `decimals`); tinyboard has no widget
editor, so they live on the device, where the REST API already writes server attributes:

    {"temperature": {"units": "°C", "decimals": 1}, "humidity": "%"}

A device profile holds the same object in `profileData.configuration.units` for all its
devices; a key the device's own attribute names replaces the profile's entry for that key.

A key maps to its unit text, or to an object with `units` and/or `decimals` (0-10). Entries
that are neither are ignored, so one typo does not hide the others. No NiceGUI here.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyboard.core.models import Device, Value
from tinyboard.errors import NotFoundError
from tinyboard.storage.base import Store
from tinyboard.web.models import as_text

ATTRIBUTE = "units"
"""The server-scope attribute that holds the units of a device's keys."""
MAX_DECIMALS = 10


@dataclass(frozen=True, slots=True)
class KeyUnit:
    units: str = ""
    decimals: int | None = None
    """Digits after the point for numbers; None shows the value as it arrived."""

    def number(self, value: float) -> str:
        """`value` rounded to `decimals`, without the unit."""
        if self.decimals is None:
            return str(value)
        return f"{value:.{self.decimals}f}"

    def show(self, value: Value) -> str:
        """A value as a card or table shows it: numbers rounded and followed by the unit."""
        if not isinstance(value, int | float) or isinstance(value, bool):
            return str(as_text(value))
        text = self.number(value)
        return f"{text} {self.units}" if self.units else text


PLAIN = KeyUnit()


async def read_units(
    store: Store, device: Device, profile: dict[str, KeyUnit] | None = None
) -> dict[str, KeyUnit]:
    """The device's units: its server attribute over its profile's (`profile`, when the
    caller read them already for several devices of one profile)."""
    values = await store.attributes(device.key, "SERVER", [ATTRIBUTE])
    own = parse_units(values[ATTRIBUTE][1]) if ATTRIBUTE in values else {}
    if profile is None:
        profile = await profile_units(store, device.profile_id)
    return {**profile, **own}


async def units_by_id(store: Store, device_id: str) -> dict[str, KeyUnit]:
    """`read_units` of a device known by id (none if it was deleted meanwhile)."""
    try:
        return await read_units(store, await store.get_device(device_id))
    except NotFoundError:
        return {}


async def profile_units(store: Store, profile_id: str) -> dict[str, KeyUnit]:
    """The units a device profile gives its devices (none if it was deleted meanwhile)."""
    try:
        profile = await store.get_profile(profile_id)
    except NotFoundError:
        return {}
    configuration = profile.profile_data.get("configuration")
    return parse_units(configuration.get(ATTRIBUTE)) if isinstance(configuration, dict) else {}


def parse_units(value: Value | None) -> dict[str, KeyUnit]:
    """The `units` attribute's value as a KeyUnit per key (empty when it is not an object)."""
    if not isinstance(value, dict):
        return {}
    parsed = {}
    for key, entry in value.items():
        unit = _entry(entry)
        if unit is not None:
            parsed[key] = unit
    return parsed


def _entry(entry: object) -> KeyUnit | None:
    if isinstance(entry, str):
        return KeyUnit(entry)
    if not isinstance(entry, dict):
        return None
    units = entry.get("units", "")
    decimals = entry.get("decimals")
    if not isinstance(units, str):
        return None
    if decimals is not None and not (
        isinstance(decimals, int)
        and not isinstance(decimals, bool)
        and 0 <= decimals <= MAX_DECIMALS
    ):
        return None
    return KeyUnit(units, decimals)
