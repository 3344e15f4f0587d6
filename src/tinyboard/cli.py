"""The `tinyboard` command line. Options of `serve` are generated from `config.SETTINGS`."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
from click.core import ParameterSource

from tinyboard import __version__
from tinyboard.config import SETTINGS, STORE_SETTINGS, Config, Setting, config_from
from tinyboard.errors import TinyboardError
from tinyboard.redact import hide_password

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def setting_options(settings: tuple[Setting, ...]) -> Callable[[F], F]:
    """Click options for settings: flag, env variable, default and help from one place."""

    def decorate(f: F) -> F:
        for s in reversed(settings):
            kind: Any = s.type
            if s.type is Path:
                kind = click.Path(path_type=Path, file_okay=False)
            elif s.choices:
                kind = click.Choice(s.choices)
            f = click.option(
                s.switch,
                s.name,
                type=kind,
                default=s.default,
                show_default=True,
                envvar=s.env,
                show_envvar=True,
                help=s.help,
            )(f)
        return f

    return decorate


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except TinyboardError as exc:
        fail(str(exc))
        raise AssertionError("unreachable") from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tinyboard")
def main() -> None:
    """tinyboard: a small, fast, self-hosted IoT server that speaks the ThingsBoard device API."""


@main.command()
@setting_options(SETTINGS)
def serve(**options: Any) -> None:
    """Start the server (Ctrl+C or SIGTERM stops it gracefully; twice forces it)."""
    from tinyboard.server import run

    logging.basicConfig(level=logging.INFO, format="tinyboard: %(levelname)s %(message)s")
    try:
        config = config_from(options)
    except TinyboardError as exc:
        fail(str(exc))
    sys.exit(run(config))


@main.command()
@setting_options(tuple(s for s in SETTINGS if s.name != "data_dir"))
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("tinyboard-demo"),
    show_default=True,
    help="Directory for the demo's own database (kept apart from `serve`'s).",
)
def demo(**options: Any) -> None:
    """Start the server with two simulated boards and an alarm rule: the quickest look.

    A port you did not set (flag or environment) that is taken moves to the next free one.
    """
    from tinyboard.demo import PORTS, run_demo
    from tinyboard.server import new_loop

    logging.basicConfig(level=logging.WARNING, format="tinyboard: %(levelname)s %(message)s")
    context = click.get_current_context()
    movable = [p for p in PORTS if context.get_parameter_source(p) == ParameterSource.DEFAULT]
    try:
        config = config_from(options)
        new_loop()(run_demo(config, movable))
    except TinyboardError as exc:
        fail(str(exc))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The server to send to.")
@click.option(
    "--protocol",
    type=click.Choice(["mqtt", "line", "http"]),
    default="mqtt",
    show_default=True,
    help="How the boards send (each reading with the time it was measured).",
)
@click.option("--port", type=int, help="Port of that protocol (default 1883, 12000 or 8080).")
@click.option(
    "--tokens",
    "tokens_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help='Devices to be: JSON [{"name": ..., "token": ...}] or one token per line.',
)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    help="A device's access token (repeat for more boards), instead of --tokens.",
)
@click.option("--create", type=int, help="Instead, create this many devices over REST.")
@click.option("--prefix", default="sim-", show_default=True, help="Name prefix for --create.")
@click.option("--http-port", type=int, default=8080, show_default=True, help="REST API port.")
@click.option("--username", default="admin@tinyboard.local", show_default=True)
@click.option("--password", envvar="TINYBOARD_PASSWORD", help="For --create (or env).")
@click.option("--interval", type=float, default=30.0, show_default=True, help="Seconds.")
@click.option("--rate", type=float, help="Total readings per second instead (load tests).")
@click.option("--duration", type=float, help="Stop after this many seconds (default: never).")
@click.option("--fault-after", type=float, help="Sensors jump by a step after this many s.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
def simulate(
    host: str,
    protocol: str,
    port: int | None,
    tokens_file: Path | None,
    tokens: tuple[str, ...],
    create: int | None,
    prefix: str,
    http_port: int,
    username: str,
    password: str | None,
    interval: float,
    rate: float | None,
    duration: float | None,
    fault_after: float | None,
    seed: int,
) -> None:
    """Simulated ESP8266 boards sending temperature, humidity or light readings.

    They use the same device APIs as the firmware (token, topics, paths), so this works against
    ThingsBoard too. Readings taken while the server is away are kept and sent later.
    """
    from tinyboard.sim.fleet import FleetError, create_devices, named, read_tokens
    from tinyboard.sim.simulate import simulate as run_simulation

    if [tokens_file is not None, bool(tokens), create is not None].count(True) != 1:
        fail("give one of --token TOKEN, --tokens FILE or --create N")
    if (rate is not None and rate <= 0) or interval <= 0:
        fail("--rate and --interval must be more than 0")
    try:
        if tokens:
            identities = named(list(tokens))
        elif tokens_file is not None:
            identities = read_tokens(tokens_file)
        else:
            if password is None:
                fail("--create needs the REST password: --password or TINYBOARD_PASSWORD")
            base = f"http://{host}:{http_port}"
            identities = create_devices(base, username, password or "", create or 0, prefix)
    except FleetError as exc:
        fail(str(exc))
    if not identities:
        fail("no devices to simulate")
    summary = new_loop_run(
        run_simulation(
            identities,
            protocol=protocol,  # type: ignore[arg-type]
            host=host,
            port=port,
            interval=len(identities) / rate if rate else interval,
            jitter=0.0 if rate else None,
            duration=duration,
            fault_after=fault_after,
            seed=seed,
        )
    )
    for line in summary.lines():
        click.echo(line)


def new_loop_run(coro: Coroutine[Any, Any, T]) -> T:
    from tinyboard.server import new_loop

    try:
        return new_loop()(coro)
    except KeyboardInterrupt:
        sys.exit(130)


@main.command()
@click.argument("host", default="127.0.0.1")
@click.option(
    "--port",
    type=int,
    default=12000,
    show_default=True,
    envvar="TINYBOARD_LINE_PORT",
    show_envvar=True,
    help="Line protocol port of the server.",
)
def chat(host: str, port: int) -> None:
    """Chat with a tinyboard server: each line you send comes back in CAPITALS.

    A line containing CLOSE SOCKET ends the session. Works with piped input too.
    """
    from tinyboard.chat import chat as run_chat

    sys.exit(run_chat(host, port, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr))


@main.command()
@setting_options(STORE_SETTINGS)
def migrate(**options: Any) -> None:
    """Bring the store's schema up to date (`serve` does this too; run it ahead of an upgrade
    of several nodes, or to check a database)."""

    async def run(store: Any) -> tuple[list[int], int]:
        return store.applied, store.schema_version

    applied, version = run_async(_with_store(options, run))
    url = hide_password(config_from(options).store_url())
    if applied:
        click.echo(f"applied migrations {', '.join(map(str, applied))} to {url}")
    click.echo(f"schema version {version}: up to date")


@main.command("copy")
@click.option(
    "--from", "source", required=True, help="Store to copy, e.g. sqlite:tinyboard-data/tinyboard.db"
)
@click.option("--to", "target", required=True, help="Empty store to fill, e.g. postgresql://...")
def copy_command(source: str, target: str) -> None:
    """Copy everything from one store to another (e.g. SQLite to PostgreSQL), then check
    every series point by point. Stop the server first."""
    from tinyboard.storage import open_store
    from tinyboard.storage.copy import copy_store

    async def run() -> Any:
        old, new = open_store(source), open_store(target)
        await old.open()
        try:
            await new.open()
            try:
                return await copy_store(old, new)
            finally:
                await new.close()
        finally:
            await old.close()

    report = run_async(run())
    click.echo(
        f"copied {report.devices} devices, {report.points} points, {report.attributes} "
        f"attributes, {report.users} users, {report.rules} alarm rules, {report.alarms} alarms, "
        f"{report.packages} OTA packages"
    )
    click.echo(f"checked {report.checked_series} series point by point: identical")


@main.group()
def device() -> None:
    """Manage devices and their access tokens (works while a server is running)."""


DEMO_DIR = Path("tinyboard-demo")


async def _with_store(options: dict[str, Any], action: Callable[[Any], Any]) -> Any:
    """Run `action` on the store the options name, saying on stderr which one it is (stdout
    stays for the answer) and where the demo's data is when this store has none."""
    from tinyboard.storage import open_store

    config = config_from(options)
    _say_store(config)
    store = open_store(config.store_url(), sync=config.sync)
    await store.open()
    try:
        return await action(store)
    finally:
        try:
            if not config.store and await store.count_devices() == 0:
                _point_at_demo(config.data_dir)
        finally:
            await store.close()


def _say_store(config: Config) -> None:
    if config.store:
        click.echo(f"using store {hide_password(config.store)}", err=True)
    else:
        click.echo(
            f"using data dir {_shown(config.data_dir)} (set --data-dir or TINYBOARD_DATA_DIR)",
            err=True,
        )


def _point_at_demo(data_dir: Path) -> None:
    """A first-hour slip: the demo ran here, but this command looked in another data dir."""
    if DEMO_DIR.is_dir() and data_dir.resolve() != DEMO_DIR.resolve():
        click.echo(f"the demo's data is in {_shown(DEMO_DIR)}: add --data-dir {DEMO_DIR}", err=True)


def _shown(path: Path) -> str:
    """A relative path as `./path`, so it reads as "here", in the current directory."""
    return str(path) if path.is_absolute() or str(path).startswith(".") else f"./{path}"


@device.command("add")
@click.argument("name")
@click.option("--type", "type_", default="default", show_default=True, help="Device type.")
@click.option("--label", default="", help="Free-text label.")
@click.option("--token", default=None, help="Use this access token instead of a random one.")
@click.option(
    "--gateway",
    is_flag=True,
    help="Make it a gateway (additionalInfo.gateway): it may send for the devices behind it"
    " on ThingsBoard's v1/gateway/* topics.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the new device as JSON.")
@setting_options(STORE_SETTINGS)
def device_add(
    name: str,
    type_: str,
    label: str,
    token: str | None,
    gateway: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Register a device and print its access token."""
    info = {"gateway": True} if gateway else None
    created = run_async(
        _with_store(
            options,
            lambda s: s.create_device(
                name, type=type_, label=label, token=token, additional_info=info
            ),
        )
    )
    if as_json:
        click.echo(orjson.dumps({"id": created.id, "name": created.name, "token": created.token}))
    else:
        click.echo(created.token)


@device.command("list")
@click.option("--search", default="", help="Only devices whose name starts with this text.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one array).")
@setting_options(STORE_SETTINGS)
def device_list(search: str, as_json: bool, **options: Any) -> None:
    """List devices."""
    devices = run_async(_with_store(options, lambda s: s.list_devices(text_search=search)))
    if as_json:
        click.echo(orjson.dumps([d.as_dict() for d in devices]))
        return
    if not devices:
        click.echo("no devices yet: add one with `tinyboard device add NAME`")
        return
    width = max(len(d.name) for d in devices)
    kinds = max(len(d.type) for d in devices)
    for d in devices:
        click.echo(f"{d.name:<{width}}  {d.type:<{kinds}}  {d.id}")


@device.command("show")
@click.argument("ref", metavar="NAME_OR_ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@setting_options(STORE_SETTINGS)
def device_show(ref: str, as_json: bool, **options: Any) -> None:
    """Show a device, its token and its latest telemetry."""

    async def show(store: Any) -> tuple[Any, dict[str, Any]]:
        found = await store.get_device(ref)
        return found, await store.latest(found.key)

    found, latest = run_async(_with_store(options, show))
    values = {k: {"ts": ts, "value": v} for k, (ts, v) in sorted(latest.items())}
    if as_json:
        click.echo(orjson.dumps({**found.as_dict(), "latest": values}))
        return
    for field, value in found.as_dict().items():
        click.echo(f"{field}: {value}")
    for key, point in values.items():
        click.echo(f"latest {key}: {point['value']!r} at {point['ts']}")


@device.command("token")
@click.argument("ref", metavar="NAME_OR_ID")
@setting_options(STORE_SETTINGS)
def device_token(ref: str, **options: Any) -> None:
    """Print a device's access token."""
    found = run_async(_with_store(options, lambda s: s.get_device(ref)))
    click.echo(found.token)


@device.command("rm")
@click.argument("ref", metavar="NAME_OR_ID")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@setting_options(STORE_SETTINGS)
def device_rm(ref: str, yes: bool, **options: Any) -> None:
    """Delete a device and all its data."""
    if not yes:
        click.confirm(f"Delete device {ref!r} and all its telemetry?", abort=True)
    gone = run_async(_with_store(options, lambda s: s.delete_device(ref)))
    click.echo(f"deleted {gone.name} ({gone.id})")


@main.group()
def user() -> None:
    """Manage the people who log in to the REST API and the dashboard."""


def _read_password(password: str | None) -> str:
    if password is not None:
        return password
    entered: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return entered


@user.command("add")
@click.argument("email")
@click.option("--password", help="The password (asked for when not given).")
@setting_options(STORE_SETTINGS)
def user_add(email: str, password: str | None, **options: Any) -> None:
    """Add a user."""
    from tinyboard.core.users import ROLE_ADMIN, check_email, hash_password

    try:
        hashed = hash_password(_read_password(password))
        address = check_email(email)
    except TinyboardError as exc:
        fail(str(exc))
    created = run_async(
        _with_store(options, lambda s: s.create_user(address, hashed, role=ROLE_ADMIN))
    )
    click.echo(f"added {created.email}")


@user.command("passwd")
@click.argument("email")
@click.option("--password", help="The new password (asked for when not given).")
@setting_options(STORE_SETTINGS)
def user_passwd(email: str, password: str | None, **options: Any) -> None:
    """Change a user's password."""
    from tinyboard.core.users import hash_password

    try:
        hashed = hash_password(_read_password(password))
    except TinyboardError as exc:
        fail(str(exc))
    run_async(_with_store(options, lambda s: s.set_password_hash(email, hashed)))
    click.echo(f"password of {email} changed")


@user.command("rm")
@click.argument("email")
@setting_options(STORE_SETTINGS)
def user_rm(email: str, **options: Any) -> None:
    """Remove a user: their tokens and dashboard sessions stop working at once. (With no
    users left, the next `serve` creates a new admin and prints its password.)"""
    run_async(_with_store(options, lambda s: s.delete_user(email)))
    click.echo(f"removed {email}")


@user.command("list")
@setting_options(STORE_SETTINGS)
def user_list(**options: Any) -> None:
    """List users."""
    for found in run_async(_with_store(options, lambda s: s.list_users())):
        click.echo(f"{found.email}  {found.role}")
