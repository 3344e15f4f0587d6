"""The device page's RPC console: send a server-side RPC, show the reply, the delivery or
why it failed, and suggest the methods worth trying."""

from __future__ import annotations

import json

from nicegui import ui

from tinyboard.core.models import Device
from tinyboard.dashboard.pages.frame import notify_error
from tinyboard.dashboard.state import current
from tinyboard.errors import TinyboardError

FIRMWARE_METHODS = ("getReading", "getLed", "setLed")
"""What tinyboard's ESP8266 firmware and simulated boards answer (firmware/esp8266)."""
FIRST_METHOD = "getReading"
"""Offered before the device answered anything: it changes nothing on the board."""


def suggestions(answered: list[str]) -> list[str]:
    """The methods this device answered (newest first), then the firmware's."""
    return [*answered, *(m for m in FIRMWARE_METHODS if m not in answered)]


class RpcConsole:
    """Send a server-side RPC and show the reply, the delivery or why it failed."""

    def __init__(self, device: Device) -> None:
        self.device = device
        answered = current().ctx.rpc.answered(device.id)
        ui.label("RPC console").classes("text-lg font-semibold mt-2")
        with ui.card().classes("w-full"):
            with ui.row().classes("items-end gap-2 w-full"):
                self.method = ui.input("Method", value=(answered or [FIRST_METHOD])[0])
                self.method.props("dense")
                # a drop-down of suggestions where any other text still goes: a datalist.
                # NiceGUI's input names its list `<id>-datalist` but fills one only on phones
                # (elsewhere `autocomplete` is a Tab completion nobody finds), so we fill it.
                self.methods = ui.element("datalist")
                self.methods.props["id"] = f"{self.method.html_id}-datalist"
                self.suggest(answered)
                self.params = ui.input("Params (JSON)", value="{}").props("dense")
                self.params.classes("grow")
            ui.label(
                "Suggested: the methods this device answered, then those tinyboard's ESP8266 "
                'firmware answers (setLed takes {"enabled": true}).'
            ).classes("text-xs text-gray-500")
            with ui.row().classes("items-center gap-2 w-full"):
                self.kind = ui.toggle(["two-way", "one-way"], value="two-way")
                self.timeout = ui.number("Timeout (ms)", value=10_000, min=100, max=600_000)
                self.timeout.props("dense").classes("w-32")
                self.send_button = ui.button("Send", icon="send", on_click=self.send)
            self.reply = ui.code("", language="json").classes("w-full")
            self.reply.props("data-testid=rpc-reply").set_visibility(False)

    def suggest(self, answered: list[str]) -> None:
        self.methods.clear()
        with self.methods:
            for method in suggestions(answered):
                ui.element("option").props["value"] = method  # a dict write: any text is safe

    async def send(self) -> None:
        try:
            params = json.loads(self.params.value or "null")
        except ValueError as exc:
            notify_error(ValueError(f"params must be JSON: {exc}"))
            return
        oneway = self.kind.value == "one-way"
        rpc = current().ctx.rpc
        self.send_button.props("loading")
        try:
            answer = await rpc.call(
                self.device.id,
                (self.method.value or "").strip(),
                params,
                oneway=oneway,
                timeout=float(self.timeout.value or 10_000) / 1000,
            )
        except TinyboardError as exc:
            self.reply.set_content(f"// error: {exc}")
        else:
            text = json.dumps(answer, indent=2)
            self.reply.set_content("// delivered to the device" if oneway else text)
            self.suggest(rpc.answered(self.device.id))
        finally:
            self.send_button.props(remove="loading")
        self.reply.set_visibility(True)
