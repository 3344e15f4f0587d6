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

from tinyboard import __version__
from tinyboard.config import SETTINGS, STORE_SETTINGS, Setting, config_from
from tinyboard.errors import TinyboardError

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


@main.group()
def device() -> None:
    """Manage devices and their access tokens (works while a server is running)."""


def _store(options: dict[str, Any]) -> Any:
    from tinyboard.storage import open_store

    config = config_from(options)
    return open_store(config.store_url(), sync=config.sync)


async def _with_store(options: dict[str, Any], action: Callable[[Any], Any]) -> Any:
    store = _store(options)
    await store.open()
    try:
        return await action(store)
    finally:
        await store.close()


@device.command("add")
@click.argument("name")
@click.option("--type", "type_", default="default", show_default=True, help="Device type.")
@click.option("--label", default="", help="Free-text label.")
@click.option("--token", default=None, help="Use this access token instead of a random one.")
@click.option("--json", "as_json", is_flag=True, help="Print the new device as JSON.")
@setting_options(STORE_SETTINGS)
def device_add(
    name: str, type_: str, label: str, token: str | None, as_json: bool, **options: Any
) -> None:
    """Register a device and print its access token."""
    created = run_async(
        _with_store(
            options,
            lambda s: s.create_device(name, type=type_, label=label, token=token),
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
    for d in devices:
        click.echo(f"{d.name:<{width}}  {d.type:<10}  {d.id}")


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


@user.command("list")
@setting_options(STORE_SETTINGS)
def user_list(**options: Any) -> None:
    """List users."""
    for found in run_async(_with_store(options, lambda s: s.list_users())):
        click.echo(f"{found.email}  {found.role}")
