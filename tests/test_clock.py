"""Server timestamps (core/clock.py): never reused for a device, bounded ahead of real time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyboard.core.clock import IDLE_MS, DeviceClocks


class Wall:
    """A wall clock the test moves by hand; `clocks` read it when they `tick`, as the
    transports make them once per network read."""

    def __init__(self, ms: int) -> None:
        self.ms = ms
        self.clocks: list[DeviceClocks] = []

    def __call__(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms
        for clocks in self.clocks:
            clocks.tick()

    def make(self, max_lead_ms: int = 1000, **kwargs: int) -> DeviceClocks:
        clocks = DeviceClocks(max_lead_ms, now=self, **kwargs)
        self.clocks.append(clocks)
        return clocks


def test_stamps_of_one_device_strictly_increase_within_one_ms() -> None:
    wall = Wall(1_000_000)
    clocks = wall.make(1000)
    stamps = [clocks.stamp(1) for _ in range(5)]
    assert stamps == sorted(set(stamps))
    assert len(set(stamps)) == 5


def test_devices_have_their_own_clocks() -> None:
    wall = Wall(1_000_000)
    clocks = wall.make(1000)
    wall.advance(2000)  # past the start-up floor
    assert clocks.stamp(1) == clocks.stamp(2) == wall.ms


def test_the_lead_is_bounded_and_wait_says_for_how_long() -> None:
    wall = Wall(1_000_000)
    clocks = wall.make(100)
    wall.advance(200)
    stamps = []
    while not clocks.wait_ms(1):
        stamps.append(clocks.stamp(1))
    assert max(stamps) <= wall.ms + 100
    assert len(stamps) == 101  # now .. now + 100
    assert clocks.wait_ms(1) == 1
    wall.advance(30)
    assert clocks.wait_ms(1) == 0
    assert clocks.stamp(1) == max(stamps) + 1


@given(st.integers(1, 3), st.integers(0, 200), st.integers(0, 400), st.integers(0, 400))
def test_room_never_promises_a_stamp_past_the_bound(
    nodes: int, extra: int, burst: int, later: int
) -> None:
    lead = nodes + extra
    wall = Wall(1_000_000)
    clocks = wall.make(lead, nodes=nodes)
    for _ in range(burst):  # an earlier burst, perhaps as far ahead as allowed
        if clocks.wait_ms(1):
            break
        clocks.stamp(1)
    wall.advance(later)
    room = clocks.room(1)
    taken = 0
    while not clocks.wait_ms(1):
        assert clocks.stamp(1) <= wall.ms + lead
        taken += 1
    assert room <= taken
    if nodes == 1:
        assert room == taken


def test_a_restarted_process_never_reuses_a_stamp_of_the_previous_one() -> None:
    wall = Wall(5_000_000)
    before = wall.make(1000)
    used = set()
    while not before.wait_ms(1):  # run as far ahead as allowed
        used.add(before.stamp(1))
    wall.advance(1)  # the new process starts a moment later
    after = wall.make(1000)
    after.resume({1: max(used), 2: wall.ms + 10**9})  # what the store holds
    fresh = {after.stamp(1) for _ in range(2000)}
    assert not used & fresh
    assert after.stamp(2) == wall.ms  # a device stamp far ahead is not followed
    assert after.stamp(3) == wall.ms  # a device with nothing stored starts at now


def test_a_device_stamp_near_now_moves_the_clock_past_it() -> None:
    wall = Wall(1_000_000)
    clocks = wall.make(1000)
    wall.advance(5000)
    clocks.saw(1, wall.ms + 10)
    assert clocks.stamp(1) == wall.ms + 11
    clocks.saw(1, wall.ms + 10**9)  # far in the future: not followed
    assert clocks.stamp(1) == wall.ms + 12


@given(st.integers(2, 5), st.lists(st.integers(0, 3), min_size=1, max_size=200))
def test_nodes_never_hand_out_the_same_stamp(nodes: int, ticks: list[int]) -> None:
    wall = Wall(1_000_000)
    clocks = [wall.make(1000, node=i, nodes=nodes) for i in range(nodes)]
    seen: dict[int, int] = {}
    for step, tick in enumerate(ticks):
        wall.advance(tick)
        node = step % nodes
        ts = clocks[node].stamp(9)
        assert ts % nodes == node
        assert seen.setdefault(ts, node) == node


def test_a_deleted_device_is_forgotten() -> None:
    wall = Wall(1_000_000)
    clocks = wall.make(1000)
    clocks.stamp(1)
    clocks.stamp(2)
    clocks.forget(1)
    assert len(clocks) == 1
    assert clocks.stamp(1) == wall.ms  # a new start: nothing of it was kept


def test_idle_clocks_are_forgotten_and_memory_follows_the_active_devices() -> None:
    wall = Wall(1_000_000)
    clocks = wall.make(1000)
    for device in range(1000):
        clocks.stamp(device)
    assert len(clocks) == 1000
    for _ in range(3):  # device 0 keeps talking; the others go quiet
        wall.advance(IDLE_MS // 2)
        clocks.stamp(0)
    wall.advance(IDLE_MS // 2)
    assert len(clocks) == 1
    # what a forgotten device gets is what its clock would have given: the wall clock
    assert clocks.stamp(5) == wall.ms and clocks.wait_ms(5) == 0


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3 * IDLE_MS)), max_size=60))
def test_forgetting_idle_clocks_changes_no_stamp(steps: list[tuple[int, int]]) -> None:
    """A clock that forgets idle devices hands out exactly the stamps of one that does not
    (the wall clock only moves forward)."""
    wall = Wall(1_000_000)
    forgetting = wall.make(1000)
    keeping = wall.make(1000, idle_ms=2**62)
    for device, later in steps:
        wall.advance(later)
        assert forgetting.room(device) == keeping.room(device)
        assert forgetting.wait_ms(device) == keeping.wait_ms(device)
        assert forgetting.stamp(device) == keeping.stamp(device)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DeviceClocks(0)
    with pytest.raises(ValueError, match="not one of"):
        DeviceClocks(10, node=2, nodes=2)
    with pytest.raises(ValueError, match="number of nodes"):
        DeviceClocks(2, node=0, nodes=3)
