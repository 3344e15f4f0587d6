"""Replies that must leave a connection in the order their requests arrived.

Some replies can go at once (a chat echo, a SUBACK); others wait for the pipeline to commit
(a reading's echo, a PUBACK). Each reply is a slot; slots are written strictly in order, and
a slot that waits holds back everything behind it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class Slot:
    data: bytes
    ready: bool
    count: int = 1
    """Messages in `data`, for the registry's counters."""
    close_after: bool = False
    queued_size: int = 0
    """Bytes counted in `Outbox.queued` while the slot waits."""


class Outbox:
    __slots__ = ("_slots", "_write", "queued")

    def __init__(self, write: Callable[[Slot], None]) -> None:
        self._write = write
        self._slots: deque[Slot] = deque()
        self.queued = 0
        """Bytes of replies waiting behind a slot that is not ready (for backpressure)."""

    def put(self, slot: Slot) -> None:
        if slot.ready and not self._slots:
            self._write(slot)
        else:
            slot.queued_size = len(slot.data)
            self.queued += slot.queued_size
            self._slots.append(slot)

    def ready(self, slot: Slot) -> None:
        """Mark a waiting slot writable and write everything now unblocked."""
        slot.ready = True
        slots = self._slots
        while slots and slots[0].ready:
            done = slots.popleft()
            self.queued -= done.queued_size
            self._write(done)

    def __bool__(self) -> bool:
        return bool(self._slots)
