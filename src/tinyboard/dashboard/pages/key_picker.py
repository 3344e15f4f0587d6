"""The filter box and pager of a device page, over `KeyPage`: what a device with thousands
of keys needs to open fast (see dashboard/key_page.py)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from nicegui import ui

from tinyboard.dashboard.key_page import KeyPage


class KeyPicker:
    """A filter box and a pager over the device's keys, shown once there are more than fit
    on one page: cards and charts are drawn only for the keys of the current page."""

    def __init__(self, keys: KeyPage) -> None:
        self.keys = keys
        self.on_change: Callable[[], Coroutine[Any, Any, None]] | None = None
        """Redraws what depends on the page (the cards redraw first, then this)."""
        self.redraw_cards: Callable[[], None] = lambda: None
        with ui.row().classes("items-center gap-2 w-full") as self.row:
            self.search = ui.input(placeholder="Filter keys", on_change=self.filtered)
            self.search.props("dense clearable").classes("w-48")
            self.pager = ui.pagination(1, 1, direction_links=True, on_change=self.turned)
            self.pager.props("max-pages=5 boundary-numbers dense")
            self.count = ui.label().classes("text-sm text-gray-600")
            self.count.props["data-testid"] = "key-count"

    async def filtered(self) -> None:
        self.keys.filter(self.search.value or "")
        await self.changed()

    async def turned(self) -> None:
        if self.pager.value != self.keys.page:
            self.keys.turn(self.pager.value or 1)
            await self.changed()

    async def changed(self) -> None:
        self.refresh()
        self.redraw_cards()
        if self.on_change is not None:
            await self.on_change()

    def refresh(self) -> None:
        """The pager and the count, after the keys or the page changed."""
        keys = self.keys
        self.row.set_visibility(keys.total > keys.size or bool(keys.query))
        self.pager.max = keys.pages
        self.pager.set_value(keys.page)
        self.count.set_text(self.summary())

    def summary(self) -> str:
        keys = self.keys
        if not keys.shown:
            return f"No key matches “{keys.query}”" if keys.query else ""
        last = keys.first + len(keys.shown) - 1
        text = f"keys {keys.first:,}–{last:,} of {keys.matching:,}"
        return text + (f" matching “{keys.query}” ({keys.total:,} in all)" if keys.query else "")
