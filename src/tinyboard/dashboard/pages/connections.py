"""The live client registry (course milestone 1 made visible)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import ui

from tinyboard.dashboard.pages.frame import ago, frame, signed_in, to_login
from tinyboard.dashboard.state import current

REFRESH_SECONDS = 1.0

COLUMNS: list[dict[str, Any]] = [
    {"name": "id", "label": "#", "field": "id", "align": "right"},
    {"name": "transport", "label": "Transport", "field": "transport", "align": "left"},
    {"name": "peer", "label": "Peer", "field": "peer", "align": "left"},
    {"name": "who", "label": "Device", "field": "who", "align": "left"},
    {"name": "since", "label": "Since", "field": "since", "align": "left"},
    {"name": "in", "label": "Msgs in", "field": "messagesIn", "align": "right"},
    {"name": "out", "label": "Msgs out", "field": "messagesOut", "align": "right"},
]


def _rows() -> list[dict[str, object]]:
    rows = []
    for client in current().ctx.registry:
        row = client.as_dict()
        row["since"] = ago(int(client.since * 1000)).replace(" ago", "")
        rows.append(row)
    return rows


@ui.page("/connections", title="Connections · tinyboard")
async def connections_page(request: Request) -> RedirectResponse | None:
    user = await signed_in(request)
    if user is None:
        return to_login(request)
    frame(user, "Connections")
    ports = current().ports
    summary = ui.label().classes("text-sm text-gray-600")
    table = ui.table(columns=COLUMNS, rows=[], row_key="id").classes("w-full")
    table.props("flat bordered :rows-per-page-options=[0] hide-pagination")
    table.add_slot(
        "body-cell-who",
        '<q-td :props="props"><a v-if="props.row.deviceId" '
        ':href="\'/ui/device/\' + props.row.deviceId" class="text-primary">{{ props.value }}'
        '</a><span v-else class="text-gray-500">{{ props.value }}</span></q-td>',
    )
    empty = ui.label(
        f"Nobody is connected. Try tinyboard chat --port {ports['line_port']}, or connect "
        f"an MQTT device to port {ports['mqtt_port']}."
    ).classes("text-gray-500")

    def refresh() -> None:
        rows = _rows()
        table.rows = rows
        table.update()
        empty.set_visibility(not rows)
        table.set_visibility(bool(rows))
        by_transport: dict[str, int] = {}
        for row in rows:
            transport = str(row["transport"])
            by_transport[transport] = by_transport.get(transport, 0) + 1
        summary.set_text(
            f"{len(rows)} live connection{'s' * (len(rows) != 1)}"
            + "".join(f" · {t}: {n}" for t, n in sorted(by_transport.items()))
        )

    refresh()
    ui.timer(REFRESH_SECONDS, refresh)
    return None
