"""The Alarms page: every device's alarms, live, with acknowledge and clear, and the state
of the webhooks that notify about them."""

from __future__ import annotations

from datetime import datetime

from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import ui
from nicegui.client import Client

from tinyboard.dashboard.pages.alarm_table import AlarmTable
from tinyboard.dashboard.pages.frame import browser_zone, frame, signed_in, to_login
from tinyboard.dashboard.state import current

WEBHOOK_SECONDS = 2.0


@ui.page("/alarms", title="Alarms · tinyboard")
async def alarms_page(request: Request, client: Client) -> RedirectResponse | None:
    user = await signed_in(request)
    if user is None:
        return to_login(request)
    frame(user, "Alarms")
    zone = browser_zone(request)
    hooks = ui.column().classes("w-full gap-1")

    def show_webhooks() -> None:
        hooks.clear()
        with hooks:
            for target in current().ctx.webhooks.targets:
                if not target.failing:
                    continue
                since = datetime.fromtimestamp(target.last_error_ts / 1000, zone)
                with (
                    ui.row()
                    .classes("w-full items-center gap-2 p-2 rounded bg-red-50 text-red-900")
                    .props("data-testid=webhook-failing")
                ):
                    ui.icon("error")
                    ui.label(
                        f"Webhook {target.url} is failing ({target.last_error}, last try "
                        f"{since:%H:%M:%S}); {len(target.queue)} notification(s) waiting, "
                        f"{target.failed} given up."
                    ).classes("break-all")

    show_webhooks()
    ui.timer(WEBHOOK_SECONDS, show_webhooks)
    table = AlarmTable(client, zone)
    await table.refresh()
    return None
