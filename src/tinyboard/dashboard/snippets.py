"""Ready-to-paste snippets that connect a device with its token (shown when it is added).

Strategy: each sketch snippet is that sketch's whole settings block (firmware/esp8266), with
this server's host, port and the token filled in, so a user replaces the block as it is; a test
compares them with the sketches and compiles the sketches with them. The host is the one the
browser used, unless that is loopback: a board is another machine, so then it is this host's
LAN address (addresses.board_hosts).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from tinyboard.addresses import board_hosts, is_loopback, local_host, url_host

EXAMPLE = '{"temperature": 25}'


@dataclass(frozen=True, slots=True)
class Target:
    """Where the snippets send to, and what the user should know about it."""

    host: str
    """The host a board connects to."""
    http_base: str
    """scheme://host:port of the HTTP API, as the browser reached it when that works for a
    board (behind a reverse proxy too)."""
    others: tuple[str, ...] = ()
    """Further addresses of this host that boards may use instead."""
    via_loopback: bool = False
    """The browser reached the server through loopback, which boards cannot use."""
    unreachable: bool = False
    """The server listens on loopback only: no board can reach it."""


def target(page_url: str, bind: str, http_port: int) -> Target:
    """The host for the snippets, from the URL the browser shows and the listeners' address."""
    page = urlsplit(page_url)
    host = page.hostname or ""
    hosts = board_hosts(bind)
    if host and not is_loopback(host):
        return Target(host, f"{page.scheme}://{page.netloc}", unreachable=not hosts)
    if not hosts:
        local = local_host(bind)
        base = f"http://{url_host(local)}:{http_port}"
        return Target(local, base, via_loopback=True, unreachable=True)
    base = f"http://{url_host(hosts[0])}:{http_port}"
    return Target(hosts[0], base, tuple(hosts[1:]), via_loopback=True)


def tcp_sketch(host: str, line_port: int, token: str) -> str:
    """The settings block of firmware/esp8266/tinyboard_tcp/tinyboard_tcp.ino."""
    return f"""\
// ---- settings: change these (or pass them with -D when building on a PC) ---------------
#ifndef WIFI_SSID
#define WIFI_SSID "your-wifi"
#endif
#ifndef WIFI_PASSWORD
#define WIFI_PASSWORD "your-wifi-password"
#endif
#ifndef TINYBOARD_HOST
#define TINYBOARD_HOST {_c(host)}  // the computer running `tinyboard serve`
#endif
#ifndef TINYBOARD_PORT
#define TINYBOARD_PORT {line_port}  // --line-port
#endif
#ifndef TINYBOARD_TOKEN
#define TINYBOARD_TOKEN {_c(token)}  // `tinyboard device add NAME` prints it
#endif
#ifndef INTERVAL_MS
#define INTERVAL_MS 30000UL  // the course asks for a reading every 30 s
#endif
#ifndef SENSOR_DHT
#define SENSOR_DHT 1  // 1: DHT22 on D4 (temperature, humidity); 0: an LDR on A0 (light)
#endif
#define DHT_PIN D4
#define DHT_TYPE DHT22
// ------------------------------------------------------------------------------------------
"""


def mqtt_sketch(host: str, mqtt_port: int, token: str) -> str:
    """The settings block of firmware/esp8266/tinyboard_mqtt/tinyboard_mqtt.ino (the names of
    ThingsBoard's Arduino SDK examples)."""
    return f"""\
// ---- settings: change these ------------------------------------------------------------
constexpr char WIFI_SSID[] = "your-wifi";
constexpr char WIFI_PASSWORD[] = "your-wifi-password";
constexpr char THINGSBOARD_SERVER[] = {_c(host)};  // tinyboard (or ThingsBoard) host
constexpr uint16_t THINGSBOARD_PORT = {mqtt_port}U;  // --mqtt-port
constexpr char TOKEN[] = {_c(token)};  // shown when the device is added
constexpr bool SENSOR_DHT = true;  // true: DHT22 on D4; false: an LDR on A0 (light)
// ------------------------------------------------------------------------------------------
"""


def mosquitto_pub(host: str, mqtt_port: int, token: str) -> str:
    return (
        f"mosquitto_pub -d -q 1 -h {shlex.quote(host)} -p {mqtt_port} "
        f"-t v1/devices/me/telemetry -u {shlex.quote(token)} -m '{EXAMPLE}'"
    )


def curl(http_base: str, token: str) -> str:
    url = f"{http_base}/api/v1/{quote(token, safe='')}/telemetry"
    return f"curl -X POST {shlex.quote(url)} -H 'Content-Type: application/json' -d '{EXAMPLE}'"


def simulate(host: str, mqtt_port: int, token: str) -> str:
    """A simulated board with this token (a reading every 5 s, so data shows up soon)."""
    return (
        f"tinyboard simulate --host {shlex.quote(host)} --port {mqtt_port} "
        f"--token {shlex.quote(token)} --interval 5"
    )


def _c(text: str) -> str:
    """A C string literal (JSON's escapes are C's for what a host or token holds)."""
    return json.dumps(text)
