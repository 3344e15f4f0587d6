"""The device API's rules on plain values: what each ThingsBoard device request means and
answers (core/device_api.py, and core/rpc.py for what a device's RPC reply means), before
any transport frames it (tests/test_device_api_transports.py sends the same requests over
MQTT and HTTP)."""

from __future__ import annotations

import pytest

from tinyboard.core.rpc import RpcReplyNotJson, RpcService, reply_value
from tinyboard.core.sessions import SessionHub


@pytest.mark.parametrize(
    ("reply", "value"),
    [(b'{"ok": true}', {"ok": True}), (b"42", 42), (b'"on"', "on"), (b"null", None), (b"", None)],
)
def test_what_a_device_reply_means(reply: bytes, value: object) -> None:
    assert reply_value(reply, "dev-1", "read") == value


@pytest.mark.parametrize("reply", [b"on", b"{nope", b"\xff\xfe", b" "])
def test_a_reply_that_is_not_json_says_so(reply: bytes) -> None:
    with pytest.raises(RpcReplyNotJson, match=r"'read' with .*which is not JSON"):
        reply_value(reply, "dev-1", "read")


def test_a_reply_nobody_waits_for_is_dropped() -> None:
    assert not RpcService(SessionHub()).resolve("dev-1", 99, b"{}")
