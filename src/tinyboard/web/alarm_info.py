"""An alarm in ThingsBoard's JSON shape (`Alarm`, `AlarmInfo`): what the REST API, the
webhooks and the WebSocket's ALARM_DATA send. The 4.3 REST client's models refuse a body
without `name`, `status`, `acknowledged` or `cleared`, so every surface builds it here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tinyboard.core.models import Alarm, AlarmStatus, Severity
from tinyboard.web.entities import EntityId, TenantEntity, customer_id, tenant_id


class AlarmAssignee(BaseModel):
    id: EntityId
    firstName: str | None = None
    lastName: str | None = None
    email: str | None = None


class AlarmOut(TenantEntity):
    """ThingsBoard's `Alarm` (3.5+: `acknowledged`/`cleared` beside `status`, assignee)."""

    type: str
    originator: EntityId
    severity: Severity
    status: AlarmStatus
    acknowledged: bool
    cleared: bool
    assigneeId: EntityId | None
    startTs: int
    endTs: int
    ackTs: int
    clearTs: int
    assignTs: int
    details: dict[str, Any]
    propagate: bool
    propagateToOwner: bool
    propagateToTenant: bool
    propagateRelationTypes: list[str]


class AlarmInfo(AlarmOut):
    """ThingsBoard's `AlarmInfo`: the alarm with its originator's name and label."""

    originatorName: str
    originatorLabel: str
    assignee: AlarmAssignee | None


def alarm_info(alarm: Alarm) -> AlarmInfo:
    """An alarm in ThingsBoard's shape; `assigneeId` and `assignee` are null while it is
    assigned to nobody."""
    return AlarmInfo(
        id=EntityId(entityType="ALARM", id=alarm.id),
        createdTime=alarm.created_ts,
        tenantId=tenant_id(),
        customerId=customer_id(),
        name=alarm.type,
        type=alarm.type,
        originator=EntityId(entityType="DEVICE", id=alarm.device_id),
        severity=alarm.severity,
        status=alarm.status,
        acknowledged=alarm.acknowledged,
        cleared=alarm.cleared,
        assigneeId=EntityId(entityType="USER", id=alarm.assignee_id) if alarm.assignee_id else None,
        startTs=alarm.start_ts,
        endTs=alarm.end_ts,
        ackTs=alarm.ack_ts,
        clearTs=alarm.clear_ts,
        assignTs=alarm.assign_ts,
        details=alarm.details,
        propagate=alarm.propagate,
        propagateToOwner=alarm.propagate_to_owner,
        propagateToTenant=alarm.propagate_to_tenant,
        propagateRelationTypes=list(alarm.propagate_relation_types),
        originatorName=alarm.device_name,
        originatorLabel=alarm.device_label,
        assignee=_assignee(alarm),
    )


def _assignee(alarm: Alarm) -> AlarmAssignee | None:
    """ThingsBoard's assignee: tinyboard's users have an e-mail and no names."""
    if alarm.assignee_id is None:
        return None
    return AlarmAssignee(
        id=EntityId(entityType="USER", id=alarm.assignee_id), email=alarm.assignee_email
    )
