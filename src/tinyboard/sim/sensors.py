"""Sensor models of the simulated boards, as plain functions of time (no I/O, seeded).

Temperature follows a daily cycle (coolest around 03:00, warmest around 15:00) with noise,
humidity moves the other way, light is daylight on an LDR (0 at night). An optional step
fault adds a fixed jump after a given time, to make alarm rules fire.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

BoardKind = Literal["temperature", "light"]
DAY = 86_400.0


@dataclass(slots=True)
class Sensors:
    kind: BoardKind
    seed: int = 0
    fault_after: float | None = None
    """Seconds after `started` when the step fault begins (None: never)."""
    fault_step: float = 15.0
    started: float = 0.0
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def read(self, now: float) -> dict[str, float]:
        """One reading at Unix time `now` (local solar time is taken as UTC)."""
        phase = 2 * math.pi * ((now % DAY) / DAY)
        noise = self._random.gauss
        fault = self.fault_step if self.faulty(now) else 0.0
        if self.kind == "temperature":
            cycle = -math.cos(phase - 2 * math.pi * 3 / 24)  # -1 at 03:00, +1 at 15:00
            temperature = 21.0 + 4.0 * cycle + noise(0, 0.2) + fault
            humidity = min(100.0, max(0.0, 55.0 - 10.0 * cycle + noise(0, 1.0)))
            return {"temperature": round(temperature, 2), "humidity": round(humidity, 1)}
        daylight = max(0.0, math.sin(phase - math.pi / 2))  # 06:00 → 18:00
        light = max(0.0, 800.0 * daylight + noise(0, 5.0) + fault * 40)
        return {"light": round(light, 1)}

    def faulty(self, now: float) -> bool:
        return self.fault_after is not None and now - self.started >= self.fault_after
