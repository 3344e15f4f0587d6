"""Running a fleet: for a duration or until Ctrl+C, with a live progress display and a
summary at the end."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table

from tinyboard.sim.board import Board

PROGRESS_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Summary:
    boards: int
    seconds: float
    taken: int
    acked: int
    dropped: int
    buffered: int
    reconnects: int
    failures: int
    last_error: str

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0

    def lines(self) -> list[str]:
        out = [
            f"{self.boards} boards, {self.seconds:.1f} s: {self.taken} readings taken, "
            f"{self.acked} acknowledged by the server ({self.rate:,.1f}/s)",
        ]
        if self.buffered or self.dropped:
            out.append(
                f"{self.buffered} still waiting in the boards' buffers, {self.dropped} dropped "
                "from full buffers"
            )
        if self.failures:
            out.append(
                f"{self.failures} send/connect failures, {self.reconnects} reconnect attempts; "
                f"last: {self.last_error}"
            )
        return out


def summarize(boards: list[Board], seconds: float) -> Summary:
    errors = [b.stats.last_error for b in boards if b.stats.last_error]
    return Summary(
        boards=len(boards),
        seconds=seconds,
        taken=sum(b.stats.taken for b in boards),
        acked=sum(b.stats.acked for b in boards),
        dropped=sum(b.stats.dropped for b in boards),
        buffered=sum(len(b.buffer) for b in boards),
        reconnects=sum(b.stats.reconnects for b in boards),
        failures=sum(b.stats.failures for b in boards),
        last_error=errors[-1] if errors else "",
    )


def _table(summary: Summary) -> Table:
    table = Table(title="tinyboard simulate", show_header=True)
    for column in ("boards", "elapsed", "taken", "acked", "acked/s", "buffered", "failures"):
        table.add_column(column, justify="right")
    table.add_row(
        str(summary.boards),
        f"{summary.seconds:.0f} s",
        str(summary.taken),
        str(summary.acked),
        f"{summary.rate:,.1f}",
        str(summary.buffered),
        str(summary.failures),
    )
    return table


async def run_fleet(
    boards: list[Board], duration: float | None, console: Console | None = None
) -> Summary:
    """Run every board until `duration` seconds pass (or the task is cancelled); show
    progress on `console` when it is a terminal."""
    started = time.monotonic()
    until = time.time() + duration if duration is not None else None
    tasks = [asyncio.create_task(b.run(until), name=f"board {b.name}") for b in boards]
    live = Live(console=console, auto_refresh=False) if console and console.is_terminal else None
    try:
        if live is not None:
            live.start()
        while not all(t.done() for t in tasks):
            await asyncio.wait(tasks, timeout=PROGRESS_SECONDS)
            if live is not None:
                live.update(_table(summarize(boards, time.monotonic() - started)), refresh=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if live is not None:
            live.stop()
    return summarize(boards, time.monotonic() - started)
