"""The lifecycle owner: start every part, wait for a signal, shut down in order.

Order of shutdown (uvicorn's): stop listening, stop reading from clients, drain the pipeline
so every reading already received is committed and acknowledged, close connections (their
replies flush), close the store. Signals only set a flag; a second Ctrl+C forces exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import logging
import os
import shlex
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI

from tinyboard import __version__, announce
from tinyboard.config import SETTINGS, Config
from tinyboard.core.alarm_engine import AlarmEngine
from tinyboard.core.attributes import AttributeService
from tinyboard.core.clock import DeviceClocks
from tinyboard.core.device_api import DeviceApi
from tinyboard.core.directory import DeviceDirectory
from tinyboard.core.live import LiveHub
from tinyboard.core.login_limits import LoginPolicy, MemoryLoginLimiter
from tinyboard.core.models import Device, User
from tinyboard.core.ota_download import OtaDownloads
from tinyboard.core.ota_state import OtaStateService
from tinyboard.core.pipeline import Pipeline
from tinyboard.core.provisioning import AddressLimit, Provisioning
from tinyboard.core.retention import Retention
from tinyboard.core.rpc import RpcService
from tinyboard.core.sessions import SessionHub
from tinyboard.core.users import Logins, ensure_admin
from tinyboard.errors import PortInUseError, TinyboardError
from tinyboard.redact import hide_password
from tinyboard.registry import Registry
from tinyboard.storage import open_store
from tinyboard.storage.base import Store
from tinyboard.transports.base import TransportServer
from tinyboard.transports.line import LineServer
from tinyboard.transports.mqtt import MQTTServer
from tinyboard.web.app import create_app
from tinyboard.web.context import WebContext
from tinyboard.web.limits import HttpLimits
from tinyboard.web.server import HttpServer
from tinyboard.web.tokens import TokenService
from tinyboard.webhooks import Webhooks

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0
BACKLOG = 65535
"""Listen backlog: the kernel caps it at net.core.somaxconn (4096 on current Linux), so
this asks for the system maximum. With 100, boards reconnecting together after a Wi-Fi
outage lost SYNs and waited 1 s, 3 s, ... to retry."""
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Listener:
    what: str
    setting: str


LINE = Listener("the line protocol", "line_port")
MQTT = Listener("MQTT", "mqtt_port")
HTTP = Listener("HTTP", "http_port")


def login_policy(config: Config) -> LoginPolicy:
    """The failed-login rules (`core.login_limits`) the settings ask for."""
    return LoginPolicy(
        free_failures=config.login_tries,
        first_delay=config.login_delay,
        max_delay=config.login_max_delay,
        address_failures=config.login_budget,
    )


class Server:
    """One tinyboard process. `await serve()` runs it until a signal or `request_shutdown`."""

    def __init__(self, config: Config, *, announce_examples: bool = True) -> None:
        self.config = config
        # test lines with a placeholder token; the demo prints its own, with a real one
        self.announce_examples = announce_examples
        self.registry = Registry()
        self.store: Store = open_store(config.store_url(), sync=config.sync)
        self.pipeline = Pipeline(
            self.store, queue_limit=config.queue_limit, batch_limit=config.batch_limit
        )
        self.directory = DeviceDirectory(self.store)
        self.live = LiveHub()
        self.pipeline.on_commit(self.live.publish)
        self.alarms = AlarmEngine(self.store)
        self.pipeline.on_commit(self.alarms.on_commit)
        self.webhooks = Webhooks(config.webhook_urls())
        self.retention = (
            Retention(self.store, config.retention_days) if config.retention_days > 0 else None
        )
        self._retention_task: asyncio.Task[None] | None = None
        self._dashboard_import: asyncio.Future[object] | None = None
        self.alarms.listeners.append(self.webhooks.notify)
        self.hub = SessionHub()
        self.rpc = RpcService(self.hub)
        self.attributes = AttributeService(self.store, self.pipeline, self.hub)
        self.logins = Logins(self.store, MemoryLoginLimiter(login_policy(config)))
        self.clocks = DeviceClocks(config.max_clock_lead)
        self.ota = OtaStateService(self.store, self.pipeline, self.attributes, self.clocks)
        self.limits = config.device_limits()
        self.device_api = DeviceApi(
            clocks=self.clocks,
            limits=self.limits,
            attributes=self.attributes,
            rpc=self.rpc,
            downloads=OtaDownloads(self.store, max_chunk=config.ota_max_chunk),
        )
        self.provisioning = Provisioning(
            self.store, self.attributes, self.ota, AddressLimit(config.provision_limit())
        )
        self.line = LineServer(
            directory=self.directory,
            pipeline=self.pipeline,
            registry=self.registry,
            clocks=self.clocks,
            limits=self.limits,
            max_line=config.max_line,
            idle_timeout=config.line_idle_timeout,
            packet_timeout=config.packet_timeout,
        )
        self.mqtt = MQTTServer(
            directory=self.directory,
            pipeline=self.pipeline,
            registry=self.registry,
            hub=self.hub,
            api=self.device_api,
            provisioning=self.provisioning,
            max_packet_size=config.max_packet,
            packet_timeout=config.packet_timeout,
            gateway_limits=config.gateway_limits(),
        )
        self.transports: tuple[TransportServer, ...] = (self.line, self.mqtt)
        self.ports: dict[str, int] = {}
        self.http: HttpServer | None = None
        self.created_admin: tuple[User, str] | None = None
        self._listeners: list[asyncio.Server] = []
        self._watcher: asyncio.Task[None] | None = None
        self._should_exit: asyncio.Event | None = None
        self._signals = 0
        self.ready = asyncio.Event()

    async def serve(self, *, handle_signals: bool = True) -> None:
        self._should_exit = asyncio.Event()
        if handle_signals:  # before start: a signal during start-up still shuts down cleanly
            self._install_signal_handlers()
        await self.start()
        self.ready.set()
        try:
            await self._should_exit.wait()
        finally:
            await self.shutdown()

    async def start(self) -> None:
        if self.config.dashboard:
            # NiceGUI takes ~0.5 s to import: do it on a thread while the store opens and the
            # admin's password is hashed (both leave the GIL free most of the time)
            self._dashboard_import = asyncio.get_running_loop().run_in_executor(
                None, importlib.import_module, "tinyboard.dashboard.pages"
            )
        await self.store.open()
        self.clocks.resume(await self.store.newest_stamps(self.clocks.tick()))
        await self.alarms.start()
        self.webhooks.start()
        self.pipeline.start()
        try:
            await self._listen(LINE, self.line, self.config.line_port)
            await self._listen(MQTT, self.mqtt, self.config.mqtt_port)
            http_socket = self._bind(HTTP, self.config.http_port)
            self.created_admin = await ensure_admin(self.store)
            limits = HttpLimits.from_config(self.config)
            self.http = HttpServer(await self._web_app(), http_socket, limits, backlog=BACKLOG)
            await self.http.start()
        except BaseException:
            await self.shutdown()
            raise
        for transport in self.transports:
            transport.start()
        if self.retention is not None:
            self._retention_task = asyncio.create_task(self.retention.run(), name="retention")
        self._watcher = asyncio.get_running_loop().create_task(
            self.directory.watch(
                self._connected_devices, self._deleted_elsewhere, self.alarms.devices_changed
            )
        )
        self._announce()
        release_free_memory()

    def _connected_devices(self) -> set[str]:
        return {c.device.id for c in self.registry if c.device is not None}

    def device_deleted(self, device: Device) -> None:
        """Forget what is kept about a deleted device (its server clock, rate-limit buckets,
        alarm state), whether or not it is connected, and close every connection and
        waiting poll it has."""
        self.alarms.forget_device(device.id)
        self.clocks.forget(device.key)
        self.limits.forget(device.key)
        for client in self.registry.for_device(device.id):
            client.connection.close()
        for session in self.hub.for_device(device.id):
            session.close()

    def _deleted_elsewhere(self, device_id: str) -> None:
        """The directory's watcher found that another process deleted a connected device."""
        clients = self.registry.for_device(device_id)
        device = next((c.device for c in clients if c.device is not None), None)
        if device is not None:
            self.device_deleted(device)
        else:  # it went offline meanwhile: its clock goes with the idle ones (core/clock.py)
            self.alarms.forget_device(device_id)

    async def _web_app(self) -> FastAPI:
        ctx = await self._web_context()
        if not self.config.dashboard:
            return create_app(ctx)
        if self._dashboard_import is not None:
            await self._dashboard_import
        from tinyboard.dashboard import mount

        app = create_app(ctx, home="/ui/devices")
        mount(app, ctx, self.ports, self.config.bind)
        return app

    async def _web_context(self) -> WebContext:
        return WebContext(
            store=self.store,
            directory=self.directory,
            device_deleted=self.device_deleted,
            pipeline=self.pipeline,
            registry=self.registry,
            hub=self.hub,
            rpc=self.rpc,
            attributes=self.attributes,
            ota=self.ota,
            live=self.live,
            alarms=self.alarms,
            webhooks=self.webhooks,
            tokens=await TokenService.from_store(self.store),
            clocks=self.clocks,
            device_api=self.device_api,
            limits=self.limits,
            logins=self.logins,
            max_payload=self.config.max_packet,
            metrics_token=self.config.metrics_token,
            ws_max_points=self.config.ws_max_points,
            ws_page_refresh=self.config.ws_page_refresh,
            ota_max_size=self.config.ota_max_size,
            provisioning=self.provisioning,
        )

    def _bind(self, listener: Listener, port: int) -> socket.socket:
        """A listening socket for servers that take one (uvicorn)."""
        host = self.config.bind
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise self._bind_error(listener, host, port, exc) from None
        sock.listen(BACKLOG)
        sock.setblocking(False)
        self.ports[listener.setting] = sock.getsockname()[1]
        return sock

    @staticmethod
    def _bind_error(listener: Listener, host: str, port: int, exc: OSError) -> TinyboardError:
        if exc.errno == errno.EADDRINUSE:
            setting = next(s for s in SETTINGS if s.name == listener.setting)
            return PortInUseError(listener.what, host, port, setting.flag, setting.env)
        return TinyboardError(f"cannot listen on {host}:{port}: {exc.strerror}")

    async def _listen(
        self, listener: Listener, factory: Callable[[], asyncio.Protocol], port: int
    ) -> asyncio.Server:
        host = self.config.bind
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                factory, host, port, reuse_address=True, backlog=BACKLOG
            )
        except OSError as exc:
            raise self._bind_error(listener, host, port, exc) from None
        self._listeners.append(server)
        self.ports[listener.setting] = server.sockets[0].getsockname()[1]
        return server

    def _announce(self) -> None:
        bind, ports, dashboard = self.config.bind, self.ports, self.config.dashboard
        lines = [
            f"tinyboard {__version__} ready: line protocol on {bind}:{ports['line_port']}"
            f", MQTT on {bind}:{ports['mqtt_port']}, HTTP on {bind}:{ports['http_port']}"
            f", store {hide_password(self.config.store_url())}",
            *announce.local_lines(bind, ports["http_port"], dashboard=dashboard),
            *announce.board_lines(bind, ports, dashboard=dashboard),
        ]
        if self.announce_examples:
            lines += self._example_lines()
        if self.created_admin is not None:
            user, password = self.created_admin
            lines.append(
                f"first start: created the admin user {user.email} with password {password}\n"
                "  (shown only this once; change it with "
                f"`{self._command('user passwd ' + user.email)}`)"
            )
        # Whoever started us may have closed our stdout already (a service manager, a
        # script that read the first line): that must not stop a running server.
        with contextlib.suppress(OSError, ValueError):
            print("\n".join(lines), flush=True)

    def _example_lines(self) -> list[str]:
        host = announce.example_host(self.config.bind)
        return [
            f"send a test reading (replace {announce.PLACEHOLDER} with a device's access token;"
            f" `{self._command('device add NAME')}` prints one):",
            *announce.try_lines(host, self.ports, announce.PLACEHOLDER),
        ]

    def _command(self, args: str) -> str:
        """A `tinyboard` command line that works on this server's store, from this shell."""
        line = f"{announce.program()} {args}"
        if self.config.store:
            return f"{line} --store URL"
        if self.config.data_dir != Config().data_dir:
            return f"{line} --data-dir {shlex.quote(str(self.config.data_dir))}"
        return line

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1:
            _say("tinyboard: forced exit")
            os._exit(130)
        self.request_shutdown()  # first: printing may fail if whoever started us is gone
        _say(f"tinyboard: {sig.name} received, shutting down (again to force)")

    def request_shutdown(self) -> None:
        """Ask `serve` to stop; call from the event loop thread."""
        if self._should_exit is not None:
            self._should_exit.set()

    async def shutdown(self) -> None:
        if self._retention_task is not None:
            self._retention_task.cancel()
            await asyncio.gather(self._retention_task, return_exceptions=True)
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        for server in self._listeners:
            server.close()
        if self.http is not None:
            await self.http.stop()
        for transport in self.transports:
            transport.pause_all()
        await self.pipeline.stop()
        await self.alarms.stop()
        await self.webhooks.stop()
        for transport in self.transports:
            transport.close_all()
        if not await _until(lambda: not any(t.connections for t in self.transports), CLOSE_TIMEOUT):
            log.warning("some clients did not close in time; dropping them")
            for transport in self.transports:
                transport.abort_all()
        self._listeners.clear()
        for transport in self.transports:
            await transport.cancel_tasks()
        await self.store.close()


def release_free_memory() -> None:
    """Give the memory start-up freed (imports, the argon2 hash, the import thread's arena)
    back to the OS: glibc keeps it otherwise, and idle RSS is what users see."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import ctypes.util

    libc = ctypes.util.find_library("c")
    if libc:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc).malloc_trim(0)


def raise_open_file_limit() -> None:
    """Let one process hold as many sockets as the system allows (the soft limit is often
    1,024, far below the ~10k devices one box should serve)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            log.warning("could not raise the open file limit from %d", soft)


def run(config: Config) -> int:
    """Run a server in this process until SIGINT/SIGTERM; returns the exit code."""
    raise_open_file_limit()
    try:
        server = Server(config)  # a store it cannot use (bad URL, no driver) fails here
        new_loop()(server.serve())
    except TinyboardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _say(message: str) -> None:
    """A line on stderr; a closed or broken stderr must not stop a shutdown."""
    with contextlib.suppress(OSError, ValueError):
        print(message, file=sys.stderr, flush=True)


async def _until(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll `condition` until it holds or `seconds` pass (shutdown only, not a hot path)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def new_loop() -> Callable[[Coroutine[Any, Any, T]], T]:
    """The runner to use: uvloop when installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    runner: Callable[[Coroutine[Any, Any, T]], T] = uvloop.run
    return runner
