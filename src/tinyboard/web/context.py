"""Everything the web layer needs from the running server, passed in one object."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from tinyboard.core.alarm_engine import AlarmEngine
from tinyboard.core.attributes import AttributeService
from tinyboard.core.clock import DeviceClocks
from tinyboard.core.device_api import DeviceApi
from tinyboard.core.directory import DeviceDirectory
from tinyboard.core.limits import DeviceLimits
from tinyboard.core.live import LiveHub
from tinyboard.core.models import Device
from tinyboard.core.ota_state import OtaStateService
from tinyboard.core.pipeline import Pipeline
from tinyboard.core.provisioning import Provisioning
from tinyboard.core.rpc import RpcService
from tinyboard.core.sessions import SessionHub
from tinyboard.core.users import Logins
from tinyboard.registry import Registry
from tinyboard.storage.base import Store
from tinyboard.web.tokens import TokenService
from tinyboard.webhooks import Webhooks


@dataclass(frozen=True, slots=True, kw_only=True)
class WebContext:
    store: Store
    directory: DeviceDirectory
    device_deleted: Callable[[Device], None]
    """Forget what the server keeps about a deleted device and close its connections."""
    pipeline: Pipeline
    registry: Registry
    hub: SessionHub
    rpc: RpcService
    attributes: AttributeService
    ota: OtaStateService
    live: LiveHub
    alarms: AlarmEngine
    webhooks: Webhooks
    tokens: TokenService
    clocks: DeviceClocks
    device_api: DeviceApi
    limits: DeviceLimits
    logins: Logins
    max_payload: int = 65536
    metrics_token: str = ""
    """`--metrics-token`: a bearer token for Prometheus (empty: only an admin's JWT)."""
    ws_max_points: int = 100_000
    """`--ws-max-points`: the points one WebSocket command's answer may hold."""
    ws_page_refresh: float = 10.0
    """`--ws-page-refresh`: seconds between runs of a dynamic page's query."""
    ota_max_size: int = 33_554_432
    """`--ota-max-size`: the largest OTA package file an upload may carry."""
    provisioning: Provisioning | None = None
    """Answers `POST /api/v1/provision` (None: provisioning is not served)."""


def context_of(request: HTTPConnection) -> WebContext:
    """The running server's context, from any route's request (or WebSocket)."""
    ctx: WebContext = request.app.state.ctx
    return ctx
