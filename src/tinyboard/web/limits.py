"""Limits on what one HTTP client can make the server hold: header and body bytes, time, sockets.

Strategy: the limits act on bytes before the ASGI app sees a request, so they live in a
subclass of uvicorn's httptools protocol. Header bytes are counted as they arrive (httptools
buffers a header line whole, so a callback would come too late); the URL and the body are
counted in the parser's callbacks; a declared Content-Length over the limit is refused before
the app starts. Time is one deadline per connection for the phase it is in (idle, header,
body), checked by one periodic sweep (as mosquitto's keepalive), not a timer per request. A
refused request gets one error response, then a lingering close: the server stops sending,
discards what the client still sends for a bounded time and number of bytes, then closes, so
the client can read the answer instead of a connection reset. WebSocket upgrades leave the
protocol (uvicorn swaps it out): they keep their address slot until their transport closes.
"""

from __future__ import annotations

import asyncio
import enum
import http
import ipaddress
import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from tinyboard.config import Config, Network
from tinyboard.web.errors import BAD_REQUEST, GENERAL, TOO_MANY_REQUESTS, error_body

log = logging.getLogger(__name__)

SWEEP_SECONDS = 0.5
LINGER_SECONDS = 2.0
LINGER_BYTES = 2 * 1024 * 1024
DEVICE_API = b"/api/v1/"
OTA_UPLOAD = b"/api/otaPackage/"
OTA_FORM_ROOM = 65_536
"""Bytes an OTA upload's body may carry beyond the file: the multipart boundaries, the part
headers and the checksum fields."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpLimits:
    """What one HTTP connection may cost; see the `http_*` settings in `config.py`."""

    max_header: int
    max_url: int
    max_body: int
    max_device_body: int
    max_ota_body: int
    header_timeout: int
    body_timeout: int
    idle_timeout: int
    max_per_address: int
    trusted_proxies: tuple[Network, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> HttpLimits:
        return cls(
            max_header=config.http_max_header,
            max_url=config.http_max_url,
            max_body=config.http_max_body,
            max_device_body=config.max_packet,
            max_ota_body=config.ota_max_size + OTA_FORM_ROOM,
            header_timeout=config.http_header_timeout,
            body_timeout=config.http_body_timeout,
            idle_timeout=config.http_idle_timeout,
            max_per_address=config.http_max_connections_per_address,
            trusted_proxies=config.proxy_networks(),
        )

    def is_trusted_proxy(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_proxies)


class AddressSlots:
    """Open connections per client address, at most `max_per_address` each (0: no cap).
    Trusted proxies are exempt: behind HAProxy every client has the proxy's address."""

    def __init__(self, limits: HttpLimits) -> None:
        self._limits = limits
        self._open: dict[str, int] = {}

    def take(self, host: str) -> bool:
        """Count a new connection from `host`; False (nothing counted) when it is over the cap."""
        if not self._capped(host):
            return True
        held = self._open.get(host, 0)
        if held >= self._limits.max_per_address:
            return False
        self._open[host] = held + 1
        return True

    def give_back(self, host: str) -> None:
        held = self._open.get(host, 0) - 1
        if held > 0:
            self._open[host] = held
        else:
            self._open.pop(host, None)

    def _capped(self, host: str) -> bool:
        return self._limits.max_per_address > 0 and not self._limits.is_trusted_proxy(host)


class HttpGuard:
    """The state every connection of one HTTP server shares: limits, address slots, and the
    connections whose deadlines the sweep checks."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.slots = AddressSlots(limits)
        self._watched: set[GuardedHttpProtocol] = set()
        self._handed_over: dict[asyncio.BaseTransport, str] = {}

    def watch(self, protocol: GuardedHttpProtocol) -> None:
        self._watched.add(protocol)

    def forget(self, protocol: GuardedHttpProtocol) -> None:
        self._watched.discard(protocol)

    def hand_over(self, transport: asyncio.BaseTransport, host: str) -> None:
        """A WebSocket took the connection: its slot is given back when the transport closes."""
        self._handed_over[transport] = host

    async def sweep_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            self.sweep(loop.time())

    def sweep(self, now: float) -> None:
        for protocol in [p for p in self._watched if p.deadline <= now]:
            protocol.deadline_passed(now)
        for transport in [t for t in self._handed_over if t.is_closing()]:
            self.slots.give_back(self._handed_over.pop(transport))


class Phase(enum.Enum):
    IDLE = "waiting for a first request"
    HEAD = "receiving a request header"
    BODY = "receiving a request body"
    APP = "the app has the request"
    LINGER = "discarding after a refusal"
    WEBSOCKET = "handed over to WebSocket"


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    message: str

    def response(self, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        """The whole error response, in the REST API's JSON shape, closing the connection."""
        body = orjson.dumps(error_body(self.status, self.message, _ERROR_CODES[self.status]))
        lines = [f"HTTP/1.1 {self.status} {http.HTTPStatus(self.status).phrase}".encode()]
        lines += [name + b": " + value for name, value in default_headers]
        lines += [
            b"content-type: application/json",
            b"content-length: " + str(len(body)).encode(),
            b"connection: close",
        ]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


_ERROR_CODES = {400: BAD_REQUEST, 408: GENERAL, 413: BAD_REQUEST, 414: BAD_REQUEST}
_ERROR_CODES |= {429: TOO_MANY_REQUESTS, 431: BAD_REQUEST}


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the refusal is on the protocol."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with tinyboard's limits (a subclass per server carries
    its `guard`: uvicorn builds protocols itself, from a class)."""

    guard: ClassVar[HttpGuard]

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.deadline = math.inf
        self._phase = Phase.IDLE
        self._head_bytes = self._body_bytes = self._lingered = 0
        self._body_limit, self._body_flag = self.guard.limits.max_body, "--http-max-body"
        self._refusal: Refusal | None = None
        self._slot: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.watch(self)
        host = self.client[0] if self.client else None
        if host is not None and not self.guard.slots.take(host):
            most = self.guard.limits.max_per_address
            self._refuse(
                429,
                f"too many open connections from your address (at most {most}): close idle "
                "ones, or ask the admin to raise --http-max-connections-per-address",
            )
            return
        self._slot = host
        self._enter(Phase.IDLE, self.guard.limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.guard.forget(self)
        if self._slot is not None and self._phase is not Phase.WEBSOCKET:
            self.guard.slots.give_back(self._slot)
        self._slot = None

    # bytes in

    def data_received(self, data: bytes) -> None:
        if self._phase is Phase.LINGER:
            self._discard(len(data))
            return
        self._unset_keepalive_if_required()
        while data and self._phase is not Phase.WEBSOCKET and not self.transport.is_closing():
            if self._phase in (Phase.IDLE, Phase.APP):  # the first byte of the next request
                self._head_bytes = 0
                self._enter(Phase.HEAD, self.guard.limits.header_timeout)
            if self._phase is Phase.HEAD:
                room = self.guard.limits.max_header - self._head_bytes
                if room <= 0:
                    limit = self.guard.limits.max_header
                    self._refuse(431, _too_long("request header", limit, "--http-max-header"))
                    return
                piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
            else:
                piece, data = data, b""
            self._feed(piece)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                log.debug("HTTP upgrade to something other than WebSocket ignored")
        except httptools.HttpParserError as exc:
            refusal = self._refusal or Refusal(400, f"invalid HTTP request: {exc}")
            self._refuse(refusal.status, refusal.message)

    def _discard(self, size: int) -> None:
        self._lingered += size
        if self._lingered > LINGER_BYTES:
            self.transport.abort()

    # parser callbacks

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.guard.limits.max_url:
            raise self._stop(414, _too_long("URL", self.guard.limits.max_url, "--http-max-url"))

    def on_headers_complete(self) -> None:
        limits = self.guard.limits
        path = httptools.parse_url(self.url).path or b""
        if path.startswith(DEVICE_API):
            self._body_limit, self._body_flag = limits.max_device_body, "--max-packet"
        elif _is_ota_upload(self.parser.get_method(), path):
            self._body_limit, self._body_flag = limits.max_ota_body, "--ota-max-size"
        else:
            self._body_limit, self._body_flag = limits.max_body, "--http-max-body"
        self._body_bytes = 0
        declared = self._declared_length()
        if declared is not None and declared > self._body_limit:
            raise self._stop(413, self._body_too_large())
        super().on_headers_complete()
        self._enter(Phase.BODY, limits.body_timeout)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._body_limit:
            raise self._stop(413, self._body_too_large())
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._enter(Phase.APP, math.inf)

    def handle_websocket_upgrade(self) -> None:
        self._enter(Phase.WEBSOCKET, math.inf)
        self.guard.forget(self)
        if self._slot is not None:
            self.guard.hand_over(self.transport, self._slot)
        super().handle_websocket_upgrade()

    # time

    def deadline_passed(self, now: float) -> None:
        """Called by the sweep once `deadline` is past."""
        limits = self.guard.limits
        if self._phase is Phase.IDLE:
            self.transport.close()
        elif self._phase is Phase.HEAD:
            self._refuse(408, _too_slow("header", limits.header_timeout, "--http-header-timeout"))
        elif self._phase is Phase.BODY and self.flow.read_paused:
            self.deadline = now + SWEEP_SECONDS  # the app is not reading: not the client's fault
        elif self._phase is Phase.BODY:
            self._refuse(408, _too_slow("body", limits.body_timeout, "--http-body-timeout"))
        elif self._phase is Phase.LINGER:
            self.transport.abort()  # the client did not stop sending

    def _enter(self, phase: Phase, seconds: float) -> None:
        self._phase = phase
        self.deadline = self.loop.time() + seconds

    # refusals

    def _stop(self, status: int, message: str) -> _Refused:
        self._refusal = Refusal(status, message)
        return _Refused(message)

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` once, then close. A response already under way for an earlier
        request on this connection cannot be interrupted: then the connection just closes."""
        log.debug("HTTP %d to %s: %s", status, self.client, message)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() gets http.disconnect
            cycle.message_event.set()
            if cycle.response_started or self._phase is not Phase.BODY:
                self.transport.close()
                return
        self.transport.write(Refusal(status, message).response(self.server_state.default_headers))
        self._linger()

    def _linger(self) -> None:
        self._enter(Phase.LINGER, LINGER_SECONDS)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.flow.resume_reading()

    def _declared_length(self) -> int | None:
        for name, value in self.headers:
            if name == b"content-length" and value.strip().isdigit():
                return int(value)
        return None

    def _body_too_large(self) -> str:
        return _too_long("request body", self._body_limit, self._body_flag)


def _is_ota_upload(method: bytes, path: bytes) -> bool:
    """`POST /api/otaPackage/{id}`: an OTA package's file, the one body allowed to be
    larger than --http-max-body (up to --ota-max-size, plus the form around it)."""
    if method != b"POST" or not path.startswith(OTA_UPLOAD):
        return False
    rest = path[len(OTA_UPLOAD) :]
    return bool(rest) and b"/" not in rest.rstrip(b"/")


def _too_long(what: str, limit: int, flag: str) -> str:
    return f"the {what} is over the {limit}-byte limit: send less, or ask the admin to raise {flag}"


def _too_slow(what: str, seconds: int, flag: str) -> str:
    return (
        f"the request {what} did not arrive within {seconds} s: send it at once, or ask the "
        f"admin to raise {flag}"
    )


def protocol_class(guard: HttpGuard) -> type[GuardedHttpProtocol]:
    """A protocol class bound to `guard`, to pass to uvicorn as `http=`."""

    class BoundHttpProtocol(GuardedHttpProtocol):
        pass

    BoundHttpProtocol.guard = guard
    return BoundHttpProtocol
