"""The shared REST vocabulary: ids, UUID checks and ThingsBoard's paging."""

from __future__ import annotations

import pytest

from tinyboard.errors import PayloadError
from tinyboard.web.entities import NULL_UUID, EntityId, PageLink, customer_id, parse_uuid


def test_a_reference_to_nothing_is_the_null_uuid() -> None:
    assert customer_id().model_dump() == {"entityType": "CUSTOMER", "id": NULL_UUID}
    assert EntityId.of("DEVICE", "x").id == "x"


def test_parse_uuid_is_canonical_and_refuses_garbage_with_what_it_is() -> None:
    assert parse_uuid("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11") == (
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    )
    with pytest.raises(PayloadError, match="invalid UUID string for deviceId: 'nope'"):
        parse_uuid("nope", "deviceId")


def test_page_link_searches_sorts_and_pages() -> None:
    names = ["beta", "Alpha", "gamma", "alphabet", "delta"]
    link = PageLink(pageSize=2, page=0, textSearch="ALPHA", sortProperty="name")
    page = link.apply(names, text=str, sort={"name": str.lower})
    assert page.model_dump() == {
        "data": ["Alpha", "alphabet"],
        "totalPages": 1,
        "totalElements": 2,
        "hasNext": False,
    }
    link = PageLink(pageSize=2, page=1, sortProperty="name", sortOrder="DESC")
    page = link.apply(names, text=str, sort={"name": str.lower})
    assert page.data == ["beta", "alphabet"] and page.totalPages == 3 and page.hasNext
    with pytest.raises(PayloadError, match="cannot sort by 'size'; sort by name"):
        PageLink(pageSize=2, page=0, sortProperty="size").apply(
            names, text=str, sort={"name": str.lower}
        )
