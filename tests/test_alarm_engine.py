"""The alarm engine on its own (a real SQLite store, a clock the test moves): the cases
that depend on timing and restarts, decided without waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tinyboard.core.alarm_engine import AlarmEngine
from tinyboard.core.models import Device
from tinyboard.storage.sqlite import SQLiteStore

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "engine.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def started(store: SQLiteStore, clock: Clock) -> AlarmEngine:
    engine = AlarmEngine(store, clock=clock)
    await engine.start()
    return engine


async def reading(engine: AlarmEngine, store: SQLiteStore, device: Device, **values: Any) -> None:
    """What the pipeline does: store, then tell the engine after the commit."""
    rows = [(device.key, k, int(engine.clock() * 1000), v) for k, v in values.items()]
    await store.write(rows, ())
    engine.on_commit(rows, ())
    await engine.settled()


async def statuses(store: SQLiteStore) -> list[str]:
    alarms, _ = await store.list_alarms()
    return [a.status for a in alarms]


HOT = {"key": "t", "condition": {"op": ">", "value": 30}, "alarmType": "Hot"}


async def test_a_pending_duration_whose_value_fell_meanwhile_is_dropped_at_start(
    store: SQLiteStore,
) -> None:
    clock = Clock()
    device = await store.create_device("d")
    engine = await started(store, clock)
    await engine.save_rule({**HOT, "forSeconds": 5})
    await reading(engine, store, device, t=40)  # pending from T0
    assert await store.alarm_pending() != []
    await engine.stop()
    # the reading that ended it was committed, but its pending-row delete was lost
    await store.write([(device.key, "t", int((T0 + 1) * 1000), 10)], ())
    again = await started(store, clock)
    clock.now = T0 + 10
    again.sweep()
    await again.settled()
    assert await statuses(store) == []
    assert await store.alarm_pending() == []
    await again.stop()


async def test_the_first_inactivity_rule_knows_who_was_just_heard_from(
    store: SQLiteStore,
) -> None:
    clock = Clock()
    device = await store.create_device("d")
    engine = await started(store, clock)
    clock.now = T0 + 100
    await reading(engine, store, device, t=1)  # heard from while no rule existed
    await engine.save_rule({"kind": "inactivity", "inactivitySeconds": 60})
    clock.now = T0 + 130  # 30 s of silence: not yet
    engine.sweep()
    await engine.settled()
    assert await statuses(store) == []
    clock.now = T0 + 161
    engine.sweep()
    await engine.settled()
    assert await statuses(store) == ["ACTIVE_UNACK"]
    await engine.stop()


async def test_clearing_an_inactivity_alarm_by_hand_keeps_watching(store: SQLiteStore) -> None:
    clock = Clock()
    device = await store.create_device("d")
    engine = await started(store, clock)
    await engine.save_rule({"kind": "inactivity", "inactivitySeconds": 10})
    await reading(engine, store, device, t=1)
    clock.now = T0 + 11
    engine.sweep()
    await engine.settled()
    (alarm,) = (await store.list_alarms())[0]
    await engine.clear(alarm.id)
    assert engine.inactive(device) is False
    clock.now = T0 + 22  # still silent, ten more seconds
    engine.sweep()
    await engine.settled()
    assert await statuses(store) == ["ACTIVE_UNACK", "CLEARED_UNACK"]
    assert engine.inactive(device) is True
    await engine.stop()


async def test_an_edited_rule_still_clears_the_alarm_it_raised(store: SQLiteStore) -> None:
    clock = Clock()
    device = await store.create_device("d")
    engine = await started(store, clock)
    rule = await engine.save_rule(HOT)
    await reading(engine, store, device, t=40)
    assert await statuses(store) == ["ACTIVE_UNACK"]
    await engine.save_rule({**HOT, "condition": {"op": ">", "value": 35}}, rule_id=rule.id)
    await reading(engine, store, device, t=10)
    assert await statuses(store) == ["CLEARED_UNACK"]
    await engine.stop()


async def test_acknowledging_right_after_a_clear_keeps_the_clear(store: SQLiteStore) -> None:
    clock = Clock()
    device = await store.create_device("d")
    engine = await started(store, clock)
    await engine.save_rule(HOT)
    await reading(engine, store, device, t=40)
    (alarm,) = (await store.list_alarms())[0]
    rows = [(device.key, "t", int(T0 * 1000) + 1, 10)]
    await store.write(rows, ())
    engine.on_commit(rows, ())  # cleared in memory; its write may still be queued
    acked = await engine.acknowledge(alarm.id)
    assert acked.cleared and acked.acknowledged
    assert await statuses(store) == ["CLEARED_ACK"]
    await engine.stop()


async def test_a_failing_listener_fails_no_change_not_even_a_delete(store: SQLiteStore) -> None:
    clock = Clock()
    device = await store.create_device("d")
    engine = await started(store, clock)
    heard: list[str] = []

    def broken(event: str, alarm: object) -> None:
        raise RuntimeError("a listener's bug")

    engine.listeners += [broken, lambda event, alarm: heard.append(event)]
    await engine.save_rule(HOT)
    await reading(engine, store, device, t=40)
    (alarm,) = (await store.list_alarms())[0]
    deleted = await engine.delete(alarm.id)
    assert deleted.id == alarm.id and (await store.list_alarms())[0] == []
    assert heard == ["ALARM_CREATED", "ALARM_DELETED"]  # the next listener still heard both
    await engine.stop()
