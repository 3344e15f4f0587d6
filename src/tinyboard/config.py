"""Settings as data: each one has a name, a default, a help text and a TINYBOARD_* variable.

The CLI builds its options from `SETTINGS`, so the flag, the environment variable and the
documentation cannot drift apart (a test checks that each setting is documented).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tinyboard.core.gateway import DEFAULT_MAX_CHILDREN, DEFAULT_MAX_NEW_CHILDREN, GatewayLimits
from tinyboard.core.limits import DeviceLimits, RateLimit
from tinyboard.errors import ConfigError
from tinyboard.redact import redact_url

SyncMode = Literal["full", "normal"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Setting:
    """One configurable value: the `Config` field, its flag, type, default and help."""

    name: str
    type: type
    default: object
    help: str
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def switch(self) -> str:
        """The click declaration: `--x` for values, `--x/--no-x` for on/off settings."""
        if self.type is bool:
            return f"{self.flag}/--no-{self.flag[2:]}"
        return self.flag

    @property
    def env(self) -> str:
        return "TINYBOARD_" + self.name.upper()


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Everything `tinyboard serve` needs, loaded once."""

    data_dir: Path = Path("tinyboard-data")
    bind: str = "0.0.0.0"
    line_port: int = 12000
    mqtt_port: int = 1883
    http_port: int = 8080
    store: str = ""
    sync: SyncMode = "full"
    max_line: int = 8192
    max_packet: int = 65536
    queue_limit: int = 100_000
    batch_limit: int = 10_000
    max_clock_lead: int = 1000
    device_rate_limit: str = "1000:1,30000:60"
    device_telemetry_rate_limit: str = ""
    device_datapoint_rate_limit: str = ""
    line_idle_timeout: float = 900.0
    packet_timeout: float = 60.0
    dashboard: bool = True
    alarm_webhook: str = ""
    retention_days: float = 0.0
    http_max_header: int = 16384
    http_max_url: int = 8192
    http_max_body: int = 1_048_576
    http_header_timeout: int = 10
    http_body_timeout: int = 30
    http_idle_timeout: int = 5
    http_max_connections_per_address: int = 256
    trusted_proxies: str = ""
    metrics_token: str = ""
    login_tries: int = 5
    login_delay: float = 1.0
    login_max_delay: float = 300.0
    login_budget: int = 100
    ws_max_points: int = 100_000
    ws_page_refresh: float = 10.0
    ota_max_size: int = 33_554_432
    ota_max_chunk: int = 65536
    gateway_max_new_children: int = DEFAULT_MAX_NEW_CHILDREN
    gateway_max_children: int = DEFAULT_MAX_CHILDREN
    provision_rate_limit: str = "30:60,300:3600"

    def webhook_urls(self) -> list[str]:
        urls = [u.strip() for u in self.alarm_webhook.split(",") if u.strip()]
        for url in urls:
            if not url.startswith(("http://", "https://")):
                shown = redact_url(url) if "://" in url else url.rpartition("@")[2]
                raise ConfigError(
                    f"--alarm-webhook {shown.partition('?')[0]!r}: give an http:// or https:// URL"
                )
        return urls

    def device_limits(self) -> DeviceLimits:
        """The per-device rate limits these settings ask for (raises on a malformed one)."""
        return DeviceLimits(
            RateLimit.parse(self.device_rate_limit, "--device-rate-limit"),
            RateLimit.parse(self.device_telemetry_rate_limit, "--device-telemetry-rate-limit"),
            RateLimit.parse(self.device_datapoint_rate_limit, "--device-datapoint-rate-limit"),
            max_payload=self.max_packet,
        )

    def gateway_limits(self) -> GatewayLimits:
        """How many child devices a gateway may create and connect (core/gateway.py)."""
        return GatewayLimits(self.gateway_max_new_children, self.gateway_max_children)

    def provision_limit(self) -> RateLimit | None:
        """The provisioning requests one client address may make (None: unlimited)."""
        return RateLimit.parse(self.provision_rate_limit, "--provision-rate-limit")

    def proxy_networks(self) -> tuple[Network, ...]:
        """The `--trusted-proxies` entries as networks (a single address is a /32 or /128)."""
        networks = []
        for entry in (e.strip() for e in self.trusted_proxies.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry))
            except ValueError:
                raise ConfigError(
                    f"--trusted-proxies {entry!r}: give IP addresses or networks such as "
                    "10.0.0.0/8, comma-separated"
                ) from None
        return tuple(networks)

    def store_url(self) -> str:
        """The store to open: the explicit `--store`, or SQLite in the data directory."""
        if self.store:
            return self.store
        return f"sqlite:{self.data_dir / 'tinyboard.db'}"


_DEFAULT = Config()

SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", Path, _DEFAULT.data_dir, "Directory for the embedded database."),
    Setting("bind", str, _DEFAULT.bind, "Address every listener binds to."),
    Setting("line_port", int, _DEFAULT.line_port, "TCP port of the line (chat) protocol."),
    Setting("mqtt_port", int, _DEFAULT.mqtt_port, "MQTT port (ThingsBoard device API)."),
    Setting("http_port", int, _DEFAULT.http_port, "HTTP port: device HTTP API, REST, WebSocket."),
    Setting(
        "store",
        str,
        _DEFAULT.store,
        "Store URL, e.g. sqlite:/path/to/file.db (default: SQLite in the data directory).",
    ),
    Setting(
        "sync",
        str,
        _DEFAULT.sync,
        "SQLite durability: 'full' survives power loss, 'normal' survives a process crash.",
        choices=("full", "normal"),
    ),
    Setting("max_line", int, _DEFAULT.max_line, "Longest line (bytes) the line protocol accepts."),
    Setting(
        "max_packet",
        int,
        _DEFAULT.max_packet,
        "Largest device message accepted: MQTT packet or HTTP body (bytes).",
    ),
    Setting(
        "queue_limit",
        int,
        _DEFAULT.queue_limit,
        "Readings waiting for the writer before transports stop reading (backpressure).",
    ),
    Setting(
        "batch_limit", int, _DEFAULT.batch_limit, "Most readings committed in one transaction."
    ),
    Setting(
        "max_clock_lead",
        int,
        _DEFAULT.max_clock_lead,
        "Most ms a server timestamp may run ahead of the clock; a device sending unstamped"
        " readings faster than 1 per ms is slowed down instead.",
    ),
    Setting(
        "device_rate_limit",
        str,
        _DEFAULT.device_rate_limit,
        "Messages per device, ThingsBoard's count:seconds pairs ('off': unlimited).",
    ),
    Setting(
        "device_telemetry_rate_limit",
        str,
        _DEFAULT.device_telemetry_rate_limit,
        "Telemetry messages per device, count:seconds pairs (default: unlimited).",
    ),
    Setting(
        "device_datapoint_rate_limit",
        str,
        _DEFAULT.device_datapoint_rate_limit,
        "Telemetry values per device, count:seconds pairs (default: unlimited).",
    ),
    Setting(
        "line_idle_timeout",
        float,
        _DEFAULT.line_idle_timeout,
        "Seconds a line-protocol connection may stay silent before it is closed (0: never).",
    ),
    Setting(
        "packet_timeout",
        float,
        _DEFAULT.packet_timeout,
        "Seconds a started MQTT packet or line has to arrive whole before the connection"
        " is closed.",
    ),
    Setting(
        "dashboard",
        bool,
        _DEFAULT.dashboard,
        "Serve the web dashboard under /ui (off saves ~20 MB and half a second of start-up).",
    ),
    Setting(
        "alarm_webhook",
        str,
        _DEFAULT.alarm_webhook,
        "URL(s), comma-separated, that get a JSON POST on every alarm change.",
    ),
    Setting(
        "retention_days",
        float,
        _DEFAULT.retention_days,
        "Delete time-series points older than this many days (0: keep everything).",
    ),
    Setting(
        "http_max_header",
        int,
        _DEFAULT.http_max_header,
        "Most bytes of request line plus headers in one HTTP request (431 above it).",
    ),
    Setting("http_max_url", int, _DEFAULT.http_max_url, "Longest HTTP request URL (414 above it)."),
    Setting(
        "http_max_body",
        int,
        _DEFAULT.http_max_body,
        "Largest HTTP request body and WebSocket message (413 above it); the device API's "
        "limit is --max-packet.",
    ),
    Setting(
        "http_header_timeout",
        int,
        _DEFAULT.http_header_timeout,
        "Seconds a client has to send a request's whole header, from its first byte (408).",
    ),
    Setting(
        "http_body_timeout",
        int,
        _DEFAULT.http_body_timeout,
        "Seconds a client has to send a request's whole body, after the header (408).",
    ),
    Setting(
        "http_idle_timeout",
        int,
        _DEFAULT.http_idle_timeout,
        "Seconds an HTTP connection may wait for its next request before it is closed.",
    ),
    Setting(
        "http_max_connections_per_address",
        int,
        _DEFAULT.http_max_connections_per_address,
        "Open HTTP connections one client address may hold (0: no limit; trusted proxies are "
        "exempt).",
    ),
    Setting(
        "trusted_proxies",
        str,
        _DEFAULT.trusted_proxies,
        "Addresses or networks, comma-separated, of reverse proxies (HAProxy, nginx) whose "
        "X-Forwarded-For is believed (default: none, the header is ignored).",
    ),
    Setting(
        "metrics_token",
        str,
        _DEFAULT.metrics_token,
        "Bearer token Prometheus sends to scrape /metrics (default: only an admin's JWT). "
        "Prefer the environment variable: flags show in `ps`.",
    ),
    Setting(
        "login_tries",
        int,
        _DEFAULT.login_tries,
        "Failed logins of one account from one address before its next attempts wait.",
    ),
    Setting(
        "login_delay",
        float,
        _DEFAULT.login_delay,
        "First wait (seconds) after those; it doubles with each further failure.",
    ),
    Setting(
        "login_max_delay",
        float,
        _DEFAULT.login_max_delay,
        "Longest wait (seconds) between login attempts of one account from one address.",
    ),
    Setting(
        "login_budget",
        int,
        _DEFAULT.login_budget,
        "Failed logins one address may make per hour, over every account.",
    ),
    Setting(
        "ws_max_points",
        int,
        _DEFAULT.ws_max_points,
        "Most points (or aggregation buckets) one WebSocket command's answer may hold, over "
        "all its keys and devices; a command asking for more is refused.",
    ),
    Setting(
        "ws_page_refresh",
        float,
        _DEFAULT.ws_page_refresh,
        "Seconds between runs of a dynamic WebSocket page's query (pageLink.dynamic), so "
        "devices that come to match join the page.",
    ),
    Setting(
        "ota_max_size",
        int,
        _DEFAULT.ota_max_size,
        "Largest OTA package file (bytes) an upload may carry (413 above it); uploads are "
        "the one request allowed past --http-max-body.",
    ),
    Setting(
        "ota_max_chunk",
        int,
        _DEFAULT.ota_max_chunk,
        "Largest OTA chunk (bytes) a device may ask for when it downloads its firmware or "
        "software (ThingsBoard's limit: 65536); over MQTT also the largest whole file sent "
        "as one message.",
    ),
    Setting(
        "gateway_max_new_children",
        int,
        _DEFAULT.gateway_max_new_children,
        "Most new devices one gateway message may create; a message naming more is refused"
        " whole (MQTT 5: PUBACK 0x97).",
    ),
    Setting(
        "gateway_max_children",
        int,
        _DEFAULT.gateway_max_children,
        "Most devices one gateway connection may have connected at once.",
    ),
    Setting(
        "provision_rate_limit",
        str,
        _DEFAULT.provision_rate_limit,
        "Device provisioning requests one client address may make, count:seconds pairs "
        "('off': unlimited).",
    ),
)

_AT_LEAST = {
    "http_max_header": 1024,
    "http_max_url": 64,
    "http_max_body": 1,
    "http_header_timeout": 1,
    "http_body_timeout": 1,
    "http_idle_timeout": 1,
    "http_max_connections_per_address": 0,
    "max_clock_lead": 1,
    "line_idle_timeout": 0,
    "packet_timeout": 1,
    "ws_max_points": 1,
    "ws_page_refresh": 0.1,
    "ota_max_size": 1,
    "ota_max_chunk": 1,
    "gateway_max_new_children": 1,
    "gateway_max_children": 1,
}

STORE_SETTINGS = tuple(s for s in SETTINGS if s.name in {"data_dir", "store", "sync"})


def config_from(values: dict[str, object]) -> Config:
    """Build a `Config` from option values keyed by setting name, ignoring unknown keys."""
    fields = {f.name for f in dataclasses.fields(Config)}
    known = {k: v for k, v in values.items() if k in fields and v is not None}
    if known.get("sync", "full") not in ("full", "normal"):
        raise ConfigError("--sync must be 'full' or 'normal'")
    config = Config(**known)  # type: ignore[arg-type]
    config.webhook_urls()  # refuse a malformed URL before anything starts
    config.device_limits()
    config.provision_limit()
    config.proxy_networks()
    _check_minimums(config)
    _check_secrets_and_limits(config)
    return config


def _check_minimums(config: Config) -> None:
    for name, least in _AT_LEAST.items():
        if getattr(config, name) < least:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be at least {least}")


MIN_METRICS_TOKEN = 16


def _check_secrets_and_limits(config: Config) -> None:
    if config.metrics_token and len(config.metrics_token) < MIN_METRICS_TOKEN:
        raise ConfigError(
            f"--metrics-token needs at least {MIN_METRICS_TOKEN} characters "
            "(e.g. the output of `openssl rand -hex 32`)"
        )
    if min(config.login_tries, config.login_delay, config.login_max_delay) < 0:
        raise ConfigError("--login-tries, --login-delay and --login-max-delay cannot be negative")
    if config.login_budget < 1:
        raise ConfigError("--login-budget must be at least 1")
