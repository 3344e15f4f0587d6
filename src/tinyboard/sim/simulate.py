"""`tinyboard simulate`: build the fleet, run it, return the summary."""

from __future__ import annotations

import time

import httpx
from rich.console import Console

from tinyboard.sim.board import JITTER
from tinyboard.sim.fleet import DEFAULT_PORTS, Identity, Protocol, build_boards
from tinyboard.sim.run import Summary, run_fleet


async def simulate(
    identities: list[Identity],
    *,
    protocol: Protocol,
    host: str,
    port: int | None,
    interval: float,
    jitter: float | None = None,
    duration: float | None = None,
    fault_after: float | None = None,
    seed: int = 0,
    console: Console | None = None,
) -> Summary:
    async with httpx.AsyncClient(timeout=10) as http:
        boards = build_boards(
            identities,
            protocol=protocol,
            host=host,
            port=port or DEFAULT_PORTS[protocol],
            interval=interval,
            fault_after=fault_after,
            started=time.time(),
            seed=seed,
            http=http,
        )
        for board in boards:
            board.jitter = JITTER if jitter is None else jitter
        return await run_fleet(boards, duration, console or Console(stderr=True))
