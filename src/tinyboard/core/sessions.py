"""Connected device sessions, as seen by the services that push to devices.

A transport registers a `DeviceSession` for each identified device connection; the RPC and
attribute services find a device's sessions here without knowing which transport holds them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

from tinyboard.core.models import Device, Value


class DeviceSession(Protocol):
    @property
    def wants_attributes(self) -> bool:
        """The device subscribed to shared-attribute updates."""

    @property
    def wants_rpc(self) -> bool:
        """The device subscribed to server-side RPC requests."""

    def push_attributes(self, values: dict[str, Value]) -> asyncio.Future[None] | None:
        """Send a shared-attribute update (ThingsBoard: `{"key": value, ...}`). May return a
        future that completes when the device has it (QoS 1: its PUBACK) or fails when it
        leaves first; the caller consumes it, so no failure goes unretrieved."""

    def push_rpc(self, request_id: int, method: str, params: Any) -> Awaitable[None]:
        """Send an RPC request; the awaitable completes when the device has it."""

    def close(self) -> None:
        """End the session (e.g. the device was deleted)."""


class SessionHub:
    """Sessions by device id, newest last. Used only from the event loop thread."""

    def __init__(self) -> None:
        self._by_device: dict[str, list[DeviceSession]] = {}

    def add(self, device: Device, session: DeviceSession) -> None:
        self._by_device.setdefault(device.id, []).append(session)

    def remove(self, device: Device, session: DeviceSession) -> None:
        sessions = self._by_device.get(device.id)
        if sessions and session in sessions:
            sessions.remove(session)
            if not sessions:
                del self._by_device[device.id]

    def for_device(self, device_id: str) -> list[DeviceSession]:
        return list(self._by_device.get(device_id, ()))

    def is_connected(self, device_id: str) -> bool:
        return device_id in self._by_device
