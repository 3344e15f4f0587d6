"""`/api/webhooks`: the delivery state of each `--alarm-webhook` URL, for people checking
that alarm notifications get out. The delivery itself is `tinyboard.webhooks`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from tinyboard.web.auth import User
from tinyboard.web.context import context_of
from tinyboard.web.models import errors

router = APIRouter(tags=["alarms"], responses=errors(400, 401, 404))


class WebhookOut(BaseModel):
    url: str
    pending: int
    delivered: int
    failed: int
    retries: int
    dropped: int
    failing: bool
    lastError: str
    lastErrorTs: int


@router.get("/api/webhooks", response_model=list[WebhookOut])
async def webhooks(request: Request, _: User) -> list[dict[str, Any]]:
    """Delivery state of each `--alarm-webhook` URL."""
    return [
        {
            "url": t.url,
            "pending": len(t.queue),
            "delivered": t.delivered,
            "failed": t.failed,
            "retries": t.retries,
            "dropped": t.dropped,
            "failing": t.failing,
            "lastError": t.last_error,
            "lastErrorTs": t.last_error_ts,
        }
        for t in context_of(request).webhooks.targets
    ]
