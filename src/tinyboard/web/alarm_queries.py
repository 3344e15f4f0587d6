"""The query parameters of ThingsBoard's alarm lists, and the page of alarms they select.

One place for each of ThingsBoard's alarm query rules, shared by the v1 and v2 lists and the
highest-severity query: `searchStatus`/`status` (v1), `statusList`/`severityList`/`typeList`
(v2), `assigneeId`, paging and sorting, and the creation-time window. A page is read after
`settled()`, so a client sees its own changes and the ones before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import Depends, Query
from pydantic import BaseModel

from tinyboard.core.models import SEVERITIES, AlarmSort, AlarmStatus, Severity
from tinyboard.errors import PayloadError
from tinyboard.web.alarm_info import AlarmInfo, alarm_info
from tinyboard.web.context import WebContext
from tinyboard.web.entities import PageData, PageLink, SortOrder, parse_uuid
from tinyboard.web.telemetry import MAX_TS

SearchStatus = Literal["ANY", "ACTIVE", "CLEARED", "ACK", "UNACK"]
SEARCH: dict[str, tuple[AlarmStatus, ...]] = {
    "ANY": ("ACTIVE_UNACK", "ACTIVE_ACK", "CLEARED_UNACK", "CLEARED_ACK"),
    "ACTIVE": ("ACTIVE_UNACK", "ACTIVE_ACK"),
    "CLEARED": ("CLEARED_UNACK", "CLEARED_ACK"),
    "ACK": ("ACTIVE_ACK", "CLEARED_ACK"),
    "UNACK": ("ACTIVE_UNACK", "CLEARED_UNACK"),
}


def v1_statuses(search: SearchStatus | None, status: AlarmStatus | None) -> tuple[AlarmStatus, ...]:
    """ThingsBoard's v1 filter: one of `searchStatus` and `status`, or neither."""
    if search is not None and status is not None:
        raise PayloadError(
            "Invalid alarms search query: Both parameters 'searchStatus' and 'status' can't "
            "be specified at the same time!"
        )
    if status is not None:
        return (status,)
    return SEARCH[search or "ANY"]


def search_statuses(values: list[str]) -> tuple[AlarmStatus, ...]:
    """ThingsBoard's v2 `statusList`: ACTIVE/CLEARED and ACK/UNACK narrow independently
    (`ACTIVE,UNACK` is ACTIVE_UNACK); ANY, both of a pair or none narrow nothing."""
    statuses = set(SEARCH["ANY"])
    for pair in (("ACTIVE", "CLEARED"), ("ACK", "UNACK")):
        chosen = [p for p in pair if p in values]
        if len(chosen) == 1:
            statuses &= set(SEARCH[chosen[0]])
    return tuple(s for s in SEARCH["ANY"] if s in statuses)


def _split(values: list[str] | None) -> list[str]:
    """A list parameter sent repeated (`a=1&a=2`, the REST client) or comma-separated."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _choices(values: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    for value in values:
        if value not in allowed:
            raise PayloadError(f"unknown {what} {value!r}; use {', '.join(allowed)}")
    return values


SORTS: tuple[AlarmSort, ...] = (
    "createdTime", "startTs", "endTs", "ackTs", "clearTs", "type", "severity", "status"
)  # fmt: skip


def _page(
    pageSize: int = Query(10, ge=1, le=1000),
    page: int = Query(0, ge=0, le=10_000_000),
    textSearch: str = "",
    sortProperty: AlarmSort | None = None,
    sortOrder: SortOrder | None = None,
) -> PageLink:
    """ThingsBoard's page query for alarms: newest created first unless told otherwise."""
    return PageLink(
        pageSize=pageSize,
        page=page,
        textSearch=textSearch,
        sortProperty=sortProperty or "createdTime",
        sortOrder=sortOrder or "DESC",
    )


AlarmPage = Annotated[PageLink, Depends(_page)]


class TimeWindow(BaseModel):
    """Creation times from `start` (inclusive) to `end` (exclusive), in ms."""

    start: int = 0
    end: int = MAX_TS


def _window(
    startTime: int | None = Query(None, ge=0, le=MAX_TS),
    endTime: int | None = Query(None, ge=0, le=MAX_TS),
) -> TimeWindow:
    """`startTime`/`endTime` bound the creation time (ms), both inclusive, as ThingsBoard's
    alarm queries do."""
    return TimeWindow(start=startTime or 0, end=MAX_TS if endTime is None else endTime + 1)


Window = Annotated[TimeWindow, Depends(_window)]


def assignee_id(text: str | None) -> str | None:
    """The `assigneeId` filter: a user's id, or None for any assignee."""
    return None if text is None else parse_uuid(text, "assigneeId")


class V2Filter(BaseModel):
    statuses: tuple[AlarmStatus, ...]
    severities: list[Severity] | None
    types: list[str] | None
    assignee: str | None


def _v2_filter(
    statusList: Annotated[list[str] | None, Query()] = None,
    severityList: Annotated[list[str] | None, Query()] = None,
    typeList: Annotated[list[str] | None, Query()] = None,
    assigneeId: str | None = None,
) -> V2Filter:
    """ThingsBoard's v2 list filters; each list repeated or comma-separated."""
    wanted = _choices(_split(statusList), tuple(SEARCH), "status")
    severities = _choices(_split(severityList), SEVERITIES, "severity")
    types = _split(typeList)
    return V2Filter(
        statuses=search_statuses(wanted),
        assignee=assignee_id(assigneeId),
        severities=severities or None,  # type: ignore[arg-type]  # checked by _choices
        types=types or None,
    )


V2 = Annotated[V2Filter, Depends(_v2_filter)]


async def alarm_page(
    ctx: WebContext,
    page: PageLink,
    window: TimeWindow,
    *,
    device: int | None,
    statuses: Sequence[AlarmStatus],
    severities: Sequence[Severity] | None = None,
    types: Sequence[str] | None = None,
    assignee: str | None = None,
) -> PageData[AlarmInfo]:
    """One page of alarms in ThingsBoard's shape, read after every decision so far is
    stored. `page.sortProperty` is one of `SORTS`."""
    if page.sortProperty not in SORTS:
        raise PayloadError(f"cannot sort alarms by {page.sortProperty!r}; use {', '.join(SORTS)}")
    await ctx.alarms.settled()
    alarms, total = await ctx.store.list_alarms(
        device=device,
        statuses=statuses,
        severities=severities,
        types=types,
        assignee=assignee,
        text_search=page.textSearch,
        start_ts=window.start,
        end_ts=window.end,
        sort=page.sortProperty,
        descending=page.sortOrder == "DESC",
        limit=page.pageSize,
        offset=page.offset,
    )
    return page.wrap([alarm_info(a) for a in alarms], total)
