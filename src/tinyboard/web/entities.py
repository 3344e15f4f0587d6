"""ThingsBoard's entity vocabulary, shared by every REST controller: ids, paging, the tenant.

ThingsBoard answers ids as `{"entityType": "DEVICE", "id": "<uuid>"}`, unassigned references
with the null UUID, and lists as `PageData`. Its REST client's models raise on a missing
required field, so every controller builds these from here, never by hand.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from tinyboard.errors import PayloadError

EntityType = Literal[
    "TENANT",
    "TENANT_PROFILE",
    "CUSTOMER",
    "USER",
    "DEVICE",
    "DEVICE_PROFILE",
    "ALARM",
    "DASHBOARD",
    "OTA_PACKAGE",
]
NULL_UUID = "13814000-1dd2-11b2-8080-808080808080"
"""ThingsBoard's EntityId.NULL_UUID: a reference to nothing (e.g. a device of no customer)."""
TENANT_UUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "tinyboard:tenant"))
"""tinyboard has one tenant; its id is the same on every install, like a constant name."""
TENANT_PROFILE_UUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "tinyboard:tenant-profile"))
"""The one tenant's profile (ThingsBoard's "Default" tenant profile)."""


class EntityId(BaseModel):
    entityType: EntityType
    id: str

    @classmethod
    def of(cls, entity_type: EntityType, id: str | None) -> EntityId:
        """An id, or the null UUID for a reference to nothing."""
        return cls(entityType=entity_type, id=id or NULL_UUID)


class TenantEntity(BaseModel):
    """The fields ThingsBoard's tenant-owned entities (device, alarm, ...) start with."""

    id: EntityId
    createdTime: int
    tenantId: EntityId
    customerId: EntityId
    name: str


def tenant_id() -> EntityId:
    return EntityId(entityType="TENANT", id=TENANT_UUID)


def customer_id(id: str | None = None) -> EntityId:
    return EntityId.of("CUSTOMER", id)


def parse_uuid(text: str, what: str = "id") -> str:
    """A UUID from a path or query, canonical; a 400 naming `what` when it is not one (as
    ThingsBoard's `toUUID`: "Invalid UUID string")."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise PayloadError(f"invalid UUID string for {what}: {text!r}") from None


T = TypeVar("T")
U = TypeVar("U")


class PageData(BaseModel, Generic[T]):
    data: list[T]
    totalPages: int
    totalElements: int
    hasNext: bool

    def map(self, shape: Callable[[T], U]) -> PageData[U]:
        """The same page with each item turned into its response shape."""
        return PageData[U](
            data=[shape(i) for i in self.data],
            totalPages=self.totalPages,
            totalElements=self.totalElements,
            hasNext=self.hasNext,
        )


SortOrder = Literal["ASC", "DESC"]


class PageLink(BaseModel):
    """ThingsBoard's page query: `pageSize`, `page`, `textSearch`, `sortProperty`,
    `sortOrder`."""

    pageSize: int
    page: int
    textSearch: str = ""
    sortProperty: str | None = None
    sortOrder: SortOrder = "ASC"

    @property
    def offset(self) -> int:
        return self.page * self.pageSize

    def wrap(self, items: list[T], total: int) -> PageData[T]:
        """One page of `items` (already this page's), out of `total`."""
        return PageData[T](
            data=items,
            totalPages=math.ceil(total / self.pageSize),
            totalElements=total,
            hasNext=self.offset + self.pageSize < total,
        )

    def apply(
        self,
        items: Sequence[T],
        *,
        text: Callable[[T], str],
        sort: dict[str, Callable[[T], Any]],
    ) -> PageData[T]:
        """Search (case-insensitive substring of `text`), sort and page a list in memory, for
        entities few enough to list whole (profiles, users, rules). An unknown sort property
        is a 400 that names the known ones."""
        needle = self.textSearch.lower()
        found = [i for i in items if needle in text(i).lower()] if needle else list(items)
        if self.sortProperty:
            key = sort.get(self.sortProperty)
            if key is None:
                known = ", ".join(sorted(sort))
                raise PayloadError(f"cannot sort by {self.sortProperty!r}; sort by {known}")
            found.sort(key=key, reverse=self.sortOrder == "DESC")
        return self.wrap(found[self.offset : self.offset + self.pageSize], len(found))


def _page_link(
    pageSize: int = Query(10, ge=1, le=1000),
    page: int = Query(0, ge=0, le=10_000_000),
    textSearch: str = "",
    sortProperty: str | None = None,
    sortOrder: SortOrder = "ASC",
) -> PageLink:
    return PageLink(
        pageSize=pageSize,
        page=page,
        textSearch=textSearch,
        sortProperty=sortProperty,
        sortOrder=sortOrder,
    )


Page = Annotated[PageLink, Depends(_page_link)]
"""A route parameter: the page query of a ThingsBoard list route."""
