"""The REST API's odds and ends that belong to no ThingsBoard controller: the client
registry (course milestone 1). Devices, profiles, telemetry, RPC and alarms have their own
modules.

Every route here needs a JWT (`auth.User`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from tinyboard.web.auth import User
from tinyboard.web.context import context_of
from tinyboard.web.models import ClientOut, errors

router = APIRouter(tags=["REST API"], responses=errors(400, 401, 404, 409))


# -- the client registry -------------------------------------------------------------------
@router.get("/api/clients", response_model=list[ClientOut])
async def clients(request: Request, _: User) -> list[dict[str, object]]:
    """Every live connection of every transport (course milestone 1's client list)."""
    return [c.as_dict() for c in context_of(request).registry]
