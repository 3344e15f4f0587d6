"""Settings as data: each one has a name, a default, a help text and a TINYBOARD_* variable.

The CLI builds its options from `SETTINGS`, so the flag, the environment variable and the
documentation cannot drift apart (a test checks that each setting is documented).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tinyboard.errors import ConfigError

SyncMode = Literal["full", "normal"]


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
    dashboard: bool = True
    alarm_webhook: str = ""
    retention_days: float = 0.0
    metrics_token: str = ""
    login_tries: int = 5
    login_delay: float = 1.0
    login_max_delay: float = 300.0
    login_budget: int = 100

    def webhook_urls(self) -> list[str]:
        urls = [u.strip() for u in self.alarm_webhook.split(",") if u.strip()]
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"--alarm-webhook {url!r}: give an http:// or https:// URL")
        return urls

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
)

STORE_SETTINGS = tuple(s for s in SETTINGS if s.name in {"data_dir", "store", "sync"})


def config_from(values: dict[str, object]) -> Config:
    """Build a `Config` from option values keyed by setting name, ignoring unknown keys."""
    fields = {f.name for f in dataclasses.fields(Config)}
    known = {k: v for k, v in values.items() if k in fields and v is not None}
    if known.get("sync", "full") not in ("full", "normal"):
        raise ConfigError("--sync must be 'full' or 'normal'")
    config = Config(**known)  # type: ignore[arg-type]
    config.webhook_urls()  # refuse a malformed URL before anything starts
    _check_secrets_and_limits(config)
    return config


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
