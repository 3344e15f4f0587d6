"""Which telemetry keys a device page shows: those matching a filter, one page at a time.

A device may send thousands of keys; a card and a chart for each made its page take most of
a minute to open. The page draws only `PAGE_SIZE` keys and offers a filter and a pager for the
rest. No NiceGUI here, so it is tested without a browser.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

PAGE_SIZE = 24
"""Cards (and charts of the numeric ones) drawn at once: a device page opens as fast with
2,000 keys as with 20."""


@dataclass(slots=True)
class KeyPage:
    size: int = PAGE_SIZE
    query: str = ""
    page: int = 1
    shown: list[str] = field(default_factory=list)
    """The keys drawn now, in order; a live new key joins it while the page has room."""
    _keys: list[str] = field(default_factory=list)
    _known: set[str] = field(default_factory=set)

    def reset(self, keys: Iterable[str]) -> None:
        self._keys = sorted(set(keys))
        self._known = set(self._keys)
        self.turn(self.page)

    def add(self, key: str) -> bool:
        """Learn a key that arrived live; True if it is drawn now."""
        if key in self._known:
            return False
        self._known.add(key)
        bisect.insort(self._keys, key)
        if self._matches(key) and len(self.shown) < self.size:
            self.shown.append(key)
            return True
        return False

    def filter(self, query: str) -> None:
        self.query = query.strip()
        self.page = 1
        self._select()

    def turn(self, page: int) -> None:
        self.page = min(max(1, page), self.pages)
        self._select()

    @property
    def total(self) -> int:
        return len(self._keys)

    @property
    def matching(self) -> int:
        return len(self._matching())

    @property
    def pages(self) -> int:
        return max(1, -(-self.matching // self.size))

    @property
    def first(self) -> int:
        """1-based position of the first drawn key among the matching ones."""
        return (self.page - 1) * self.size + 1

    def _matches(self, key: str) -> bool:
        return self.query.casefold() in key.casefold()

    def _matching(self) -> list[str]:
        if not self.query:
            return self._keys
        return [k for k in self._keys if self._matches(k)]

    def _select(self) -> None:
        start = (self.page - 1) * self.size
        self.shown = self._matching()[start : start + self.size]
