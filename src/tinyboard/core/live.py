"""Live telemetry: committed readings fanned out to subscribers (WebSocket, dashboard).

The pipeline calls `publish` after each commit, on the event loop. Subscribers must not
block: they queue what they get and drop themselves when they fall behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tinyboard.core.models import AttributeRow, Reading


class Subscriber(Protocol):
    def deliver(self, readings: list[Reading], attributes: list[AttributeRow]) -> None:
        """What one commit stored for one device. Must not block."""


class LiveHub:
    def __init__(self) -> None:
        self._by_device: dict[int, set[Subscriber]] = {}

    def subscribe(self, device_key: int, subscriber: Subscriber) -> None:
        self._by_device.setdefault(device_key, set()).add(subscriber)

    def unsubscribe(self, device_key: int, subscriber: Subscriber) -> None:
        subscribers = self._by_device.get(device_key)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._by_device[device_key]

    def subscribers(self, device_key: int) -> tuple[Subscriber, ...]:
        """Who follows a device now (to look at their state, e.g. what waits to be sent)."""
        return tuple(self._by_device.get(device_key, ()))

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._by_device.values())

    def publish(self, readings: Sequence[Reading], attributes: Sequence[AttributeRow]) -> None:
        """The pipeline's after-commit listener."""
        by_device = self._by_device
        if not by_device:
            return
        grouped: dict[int, tuple[list[Reading], list[AttributeRow]]] = {}
        for reading in readings:
            if reading[0] in by_device:
                grouped.setdefault(reading[0], ([], []))[0].append(reading)
        for row in attributes:
            if row[0] in by_device:
                grouped.setdefault(row[0], ([], []))[1].append(row)
        for device_key, (device_readings, device_attributes) in grouped.items():
            for subscriber in list(by_device.get(device_key, ())):
                subscriber.deliver(device_readings, device_attributes)
