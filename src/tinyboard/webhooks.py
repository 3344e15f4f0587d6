"""Alarm notifications: a JSON POST to each configured URL on every alarm change.

Strategy: `notify` only appends to a bounded queue per URL, so ingestion never waits for a
slow or dead receiver. One task per URL delivers in order and retries the head with
exponential backoff (1 s, 2 s, 4 s ... up to 60 s) for about ten minutes, then gives up on
that notification and goes on. What failed, and why, is kept for the dashboard and /metrics.

A URL may hold secrets (`https://user:pass@host/hook?token=...`): it is used only to send.
What people see (metrics labels, logs, the dashboard, /api/webhooks) is `Target.url`, the
redacted form `scheme://host[:port]/path` with `***` for userinfo and query.

Body (also in docs/protocols.md):
    {"event": "ALARM_CREATED" | "ALARM_ESCALATED" | "ALARM_UPDATED" | "ALARM_CLEARED"
              | "ALARM_ACKNOWLEDGED" | "ALARM_DELETED",
     "ts": <Unix ms of the change>, "alarm": <the alarm as GET /api/alarm/info/{id} returns it>}
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tinyboard import __version__
from tinyboard.core.models import Alarm, AlarmEvent
from tinyboard.redact import redact_url
from tinyboard.web.alarm_info import alarm_info

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000
TIMEOUT_SECONDS = 10.0
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0
GIVE_UP_AFTER = 16
"""Attempts per notification (~10 minutes of retries) before it is dropped as failed."""


def shown_urls(urls: list[str]) -> list[str]:
    """The redacted URLs, made distinct (` #2`...) where redaction made two alike: each is
    a metrics label value."""
    redacted = [redact_url(u) for u in urls]
    repeats = Counter(redacted)
    seen: Counter[str] = Counter()
    shown = []
    for url in redacted:
        seen[url] += 1
        shown.append(f"{url} #{seen[url]}" if repeats[url] > 1 else url)
    return shown


class _RedactUrls(logging.Filter):
    """httpx logs every request at INFO with its whole URL: redact what it logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        return True


def _redact_arg(arg: object) -> object:
    text = str(arg)
    return redact_url(text) if text.startswith(("http://", "https://")) else arg


_REDACT_URLS = _RedactUrls()


@dataclass(slots=True)
class Target:
    """One webhook URL and what happened to its deliveries."""

    url: str
    """Redacted (`redact_url`): the only form that may be shown or logged."""
    endpoint: str = field(repr=False)
    """The URL as configured, secrets included: only for sending."""
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    delivered: int = 0
    failed: int = 0
    """Notifications given up on after GIVE_UP_AFTER attempts."""
    retries: int = 0
    dropped: int = 0
    """Notifications thrown away because QUEUE_LIMIT were already waiting."""
    last_error: str = ""
    last_error_ts: int = 0
    failing: bool = False
    """True from a failed attempt until the next successful one."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def scrub(self, error: str | None) -> str | None:
        """An error text without the URL's secrets (an exception may quote the URL)."""
        if error is None:
            return None
        parts = urlsplit(self.endpoint)
        error = error.replace(self.endpoint, self.url)
        for secret in (parts.netloc.rpartition("@")[0], parts.query):
            if secret:
                error = error.replace(secret, "***")
        return error


class Webhooks:
    def __init__(
        self,
        urls: list[str],
        *,
        first_retry: float = FIRST_RETRY_SECONDS,
        max_retry: float = MAX_RETRY_SECONDS,
    ) -> None:
        self.targets = [Target(s, u) for s, u in zip(shown_urls(urls), urls, strict=True)]
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._client: httpx.AsyncClient | None = None  # made only when there are URLs
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self.targets:
            return
        import httpx  # ~6 MB of memory: only for servers that send webhooks

        logging.getLogger("httpx").addFilter(_REDACT_URLS)
        self._client = httpx.AsyncClient(
            timeout=TIMEOUT_SECONDS,
            headers={"User-Agent": f"tinyboard/{__version__}"},
            follow_redirects=False,
        )
        self._tasks = [
            asyncio.create_task(self._deliver(t), name=f"webhook {t.url}") for t in self.targets
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def notify(self, event: AlarmEvent, alarm: Alarm) -> None:
        """The alarm engine's listener: queue the notification for every URL."""
        body = {
            "event": event,
            "ts": int(time.time() * 1000),
            "alarm": alarm_info(alarm).model_dump(mode="json"),
        }
        for target in self.targets:
            if len(target.queue) >= QUEUE_LIMIT:
                target.queue.popleft()
                target.dropped += 1
            target.queue.append(body)
            target.wake.set()

    async def _deliver(self, target: Target) -> None:
        assert self._client is not None
        while True:
            if not target.queue:
                target.wake.clear()
                await target.wake.wait()
                continue
            body = target.queue[0]
            delay = self._first_retry
            for attempt in range(1, GIVE_UP_AFTER + 1):
                error = target.scrub(await self._post(target.endpoint, body))
                if error is None:
                    target.delivered += 1
                    target.failing = False
                    break
                target.failing = True
                target.last_error = error
                target.last_error_ts = int(time.time() * 1000)
                if attempt == GIVE_UP_AFTER:
                    target.failed += 1
                    log.warning("webhook %s: gave up on a notification: %s", target.url, error)
                    break
                target.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry)
            if target.queue and target.queue[0] is body:
                target.queue.popleft()

    async def _post(self, url: str, body: dict[str, Any]) -> str | None:
        """None on a 2xx answer, else what went wrong, in words (never raises: one odd
        failure must not end the URL's delivery task)."""
        assert self._client is not None
        try:
            response = await self._client.post(url, json=body)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if response.is_success:
            return None
        return f"HTTP {response.status_code}"
