"""The hosts a board is told to use: never loopback, always this host's own LAN addresses."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from tinyboard.addresses import board_hosts, is_loopback, lan_ipv4, local_host


def test_lan_addresses_are_this_hosts_and_never_loopback() -> None:
    found = lan_ipv4()
    for address in found:
        parsed = ipaddress.IPv4Address(address)
        assert not parsed.is_loopback and not parsed.is_link_local
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))  # only an address of this host can be bound
    assert len(found) == len(set(found))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("192.168.1.20", False),
        ("board.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_board_hosts_follow_the_bind_address() -> None:
    assert board_hosts("0.0.0.0") == lan_ipv4()
    assert board_hosts("127.0.0.1") == []
    assert board_hosts("192.168.7.9") == ["192.168.7.9"]
    assert local_host("0.0.0.0") == "127.0.0.1"
    assert local_host("192.168.7.9") == "192.168.7.9"
