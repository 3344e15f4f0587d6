"""`/metrics` in Prometheus' text format.

Strategy: nothing is counted per message for metrics' sake. The collector reads the
counters the server keeps anyway (client registry, pipeline stats) when it is scraped.

Access: the page names webhook targets and shows traffic, so it needs a bearer token: the
`--metrics-token` (what Prometheus' `authorization: credentials:` sends) or an admin's JWT.
Webhook URLs appear redacted (`redact.redact_url`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tinyboard.core.users import ROLE_ADMIN
from tinyboard.web.auth import bearer
from tinyboard.web.context import WebContext, context_of
from tinyboard.web.models import errors
from tinyboard.web.tokens import AuthError

router = APIRouter(tags=["metrics"])


class TinyboardCollector(Collector):
    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        totals = self.ctx.registry.totals()
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "connections": GaugeMetricFamily(
                "tinyboard_connections", "Open connections", labels=["transport"]
            ),
            "messages_in": CounterMetricFamily(
                "tinyboard_messages_in", "Messages received", labels=["transport"]
            ),
            "messages_out": CounterMetricFamily(
                "tinyboard_messages_out", "Messages sent", labels=["transport"]
            ),
            "bytes_in": CounterMetricFamily(
                "tinyboard_received_bytes", "Bytes received", labels=["transport"]
            ),
        }
        for transport, t in sorted(totals.items()):
            families["connections"].add_metric([transport], t.connections)
            families["messages_in"].add_metric([transport], t.messages_in)
            families["messages_out"].add_metric([transport], t.messages_out)
            families["bytes_in"].add_metric([transport], t.bytes_in)
        yield from families.values()
        stats = self.ctx.pipeline.stats
        yield CounterMetricFamily("tinyboard_commits", "Transactions committed", stats.commits)
        yield CounterMetricFamily("tinyboard_readings_stored", "Readings committed", stats.readings)
        yield CounterMetricFamily(
            "tinyboard_commit_errors", "Transactions that failed", stats.errors
        )
        yield GaugeMetricFamily(
            "tinyboard_queue_depth", "Readings waiting for the writer", self.ctx.pipeline.depth
        )
        yield GaugeMetricFamily(
            "tinyboard_largest_batch", "Most readings in one transaction", stats.largest_batch
        )
        yield CounterMetricFamily(
            "tinyboard_backpressure_pauses", "Times a source paused on a full queue", stats.pauses
        )
        yield GaugeMetricFamily(
            "tinyboard_live_subscribers",
            "WebSocket subscriptions",
            self.ctx.live.subscriber_count(),
        )
        yield from self._alarms()
        yield from self._logins()

    def _logins(self) -> Iterator[Metric]:
        logins = self.ctx.logins
        yield CounterMetricFamily(
            "tinyboard_password_checks",
            "Password hashes verified at login (unknown e-mails too)",
            logins.password_checks,
        )
        yield CounterMetricFamily(
            "tinyboard_logins_failed",
            "Logins refused for a wrong e-mail or password",
            logins.failed,
        )
        yield CounterMetricFamily(
            "tinyboard_logins_throttled",
            "Logins refused by the failed-login limits",
            logins.throttled,
        )

    def _alarms(self) -> Iterator[Metric]:
        alarms = self.ctx.alarms.stats
        yield CounterMetricFamily("tinyboard_alarms_created", "Alarms raised", alarms.created)
        yield CounterMetricFamily(
            "tinyboard_alarms_escalated", "Alarm severity escalations", alarms.escalated
        )
        yield CounterMetricFamily("tinyboard_alarms_cleared", "Alarms cleared", alarms.cleared)
        yield CounterMetricFamily(
            "tinyboard_alarm_write_errors",
            "Alarm changes the store refused",
            self.ctx.alarms.writes.failed,
        )
        counters = {
            "delivered": "Webhook notifications delivered",
            "failed": "Webhook notifications given up on after every retry",
            "retries": "Webhook delivery attempts that failed and were retried",
            "dropped": "Webhook notifications dropped from a full queue",
        }
        families = {
            name: CounterMetricFamily(f"tinyboard_webhook_{name}", text, labels=["url"])
            for name, text in counters.items()
        }
        pending = GaugeMetricFamily(
            "tinyboard_webhook_pending", "Notifications waiting for delivery", labels=["url"]
        )
        failing = GaugeMetricFamily(
            "tinyboard_webhook_failing", "1 while the last delivery attempt failed", labels=["url"]
        )
        for target in self.ctx.webhooks.targets:
            for name, family in families.items():
                family.add_metric([target.url], getattr(target, name))
            pending.add_metric([target.url], len(target.queue))
            failing.add_metric([target.url], int(target.failing))
        yield from families.values()
        yield pending
        yield failing


def registry_for(ctx: WebContext) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TinyboardCollector(ctx))
    return registry


@router.get("/metrics", response_class=Response, responses=errors(401))
async def metrics(request: Request) -> Response:
    """Counters in Prometheus' text format, for `Authorization: Bearer <--metrics-token>` or
    an admin's JWT."""
    await _may_scrape(request)
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


async def _may_scrape(request: Request) -> None:
    ctx = context_of(request)
    try:
        token = bearer(request)
    except AuthError:
        raise AuthError(_how_to_scrape(ctx)) from None
    if ctx.metrics_token and secrets.compare_digest(token.encode(), ctx.metrics_token.encode()):
        return
    try:
        claims = await ctx.tokens.check(token)
    except AuthError as exc:
        raise AuthError(f"{exc}; {_how_to_scrape(ctx)}") from None
    if claims.role != ROLE_ADMIN:
        raise AuthError(f"only an admin may read /metrics; {_how_to_scrape(ctx)}")


def _how_to_scrape(ctx: WebContext) -> str:
    if ctx.metrics_token:
        return "/metrics needs Authorization: Bearer <the --metrics-token> or an admin's JWT"
    return (
        "/metrics needs an admin's JWT (Authorization: Bearer <JWT from POST /api/auth/login>);"
        " for Prometheus, start the server with --metrics-token and send that token"
    )
