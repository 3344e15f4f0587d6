"""ThingsBoard's TenantController for tinyboard's one tenant: its tenant admins may read it
(`GET /api/tenant/{tenantId}`, `/api/tenant/info/{tenantId}`); listing, creating and deleting
tenants is a system administrator's, so they get ThingsBoard's 403, as a tenant admin of
ThingsBoard does. Every route needs a JWT (`auth.User`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from tinyboard.errors import NotFoundError
from tinyboard.web.auth import User
from tinyboard.web.context import context_of
from tinyboard.web.entities import (
    TENANT_PROFILE_UUID,
    TENANT_UUID,
    EntityId,
    Page,
    PageData,
    parse_uuid,
    tenant_id,
)
from tinyboard.web.errors import PermissionDenied
from tinyboard.web.models import errors

router = APIRouter(tags=["tenant"], responses=errors(400, 401, 403, 404))

TENANT_TITLE = "tinyboard"
TENANT_PROFILE_NAME = "Default"


class TenantOut(BaseModel):
    """ThingsBoard's Tenant (the contact fields are empty: tinyboard keeps none)."""

    id: EntityId
    createdTime: int
    title: str
    name: str
    region: str = "Global"
    tenantProfileId: EntityId
    country: str | None = None
    state: str | None = None
    city: str | None = None
    address: str | None = None
    address2: str | None = None
    zip: str | None = None
    phone: str | None = None
    email: str | None = None
    additionalInfo: dict[str, Any] | None = None


class TenantInfoOut(TenantOut):
    tenantProfileName: str


async def _tenant(request: Request, tenant: str) -> TenantInfoOut:
    """The tenant with this id: 400 for text that is no UUID, 404 for any tenant but this
    one (ThingsBoard looks the tenant up before it checks the caller may see it)."""
    canonical = parse_uuid(tenant, "tenantId")
    if canonical != TENANT_UUID:
        raise NotFoundError(f"Tenant with id [{canonical}] is not found")
    users = await context_of(request).store.list_users()
    return TenantInfoOut(
        id=tenant_id(),
        createdTime=min((u.created_ts for u in users), default=0),  # the first start
        title=TENANT_TITLE,
        name=TENANT_TITLE,
        tenantProfileId=EntityId(entityType="TENANT_PROFILE", id=TENANT_PROFILE_UUID),
        tenantProfileName=TENANT_PROFILE_NAME,
    )


@router.get("/api/tenant/{tenantId}", response_model=TenantOut)
async def get_tenant(tenantId: str, request: Request, _: User) -> TenantOut:
    """This server's tenant."""
    return TenantOut.model_validate((await _tenant(request, tenantId)).model_dump())


@router.get("/api/tenant/info/{tenantId}", response_model=TenantInfoOut)
async def get_tenant_info(tenantId: str, request: Request, _: User) -> TenantInfoOut:
    """This server's tenant, with its profile's name."""
    return await _tenant(request, tenantId)


@router.get("/api/tenants", response_model=PageData[TenantOut])
async def list_tenants(_: User, __: Page) -> PageData[TenantOut]:
    """A system administrator's (tinyboard has none): 403."""
    raise PermissionDenied


@router.get("/api/tenantInfos", response_model=PageData[TenantInfoOut])
async def list_tenant_infos(_: User, __: Page) -> PageData[TenantInfoOut]:
    """A system administrator's (tinyboard has none): 403."""
    raise PermissionDenied


@router.post("/api/tenant", response_model=TenantOut)
async def save_tenant(_: User) -> TenantOut:
    """A system administrator's (tinyboard has none): 403."""
    raise PermissionDenied


@router.delete("/api/tenant/{tenantId}")
async def delete_tenant(tenantId: str, _: User) -> None:
    """A system administrator's (tinyboard has none): 403."""
    raise PermissionDenied
