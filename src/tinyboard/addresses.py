"""The addresses a board on the LAN must use to reach this host (127.0.0.1 never works from one).

Shared by the start-up announcement and the dashboard's connection snippets, so both name the
same hosts.
"""

from __future__ import annotations

import ipaddress

import ifaddr

WILDCARDS = frozenset({"0.0.0.0", "::", ""})
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})


def lan_ipv4() -> list[str]:
    """Every non-loopback, non-link-local IPv4 address of this host, in interface order."""
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue  # IPv6 addresses come as tuples
            address = ipaddress.IPv4Address(ip.ip)
            if address.is_loopback or address.is_link_local or str(address) in found:
                continue
            found.append(str(address))
    return found


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the localhost names: addresses a board can never use."""
    name = host.strip("[]").lower()
    if name in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def board_hosts(bind: str) -> list[str]:
    """The hosts a board may connect to when the server listens on `bind`.

    Empty when the server listens on loopback only: then no board can reach it.
    """
    if bind in WILDCARDS:
        return lan_ipv4()
    if is_loopback(bind):
        return []
    return [bind]


def local_host(bind: str) -> str:
    """The host a program on this machine uses to reach a server listening on `bind`."""
    return "127.0.0.1" if bind in WILDCARDS else bind


def url_host(host: str) -> str:
    """A host as it goes into a URL (IPv6 addresses in brackets)."""
    return f"[{host}]" if ":" in host else host
