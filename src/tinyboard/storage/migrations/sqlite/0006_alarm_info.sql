-- ThingsBoard's Alarm fields that a REST client may set (POST /api/alarm) and reads back:
-- when the alarm was created (its startTs may be older), how it propagates, and the user it
-- is assigned to (a user id, or NULL). Numbered 0007 so that 0006 (device profiles) can land
-- beside it.
ALTER TABLE alarm ADD COLUMN created_ts INTEGER NOT NULL DEFAULT 0;
UPDATE alarm SET created_ts = start_ts;
ALTER TABLE alarm ADD COLUMN propagate INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alarm ADD COLUMN propagate_to_owner INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alarm ADD COLUMN propagate_to_tenant INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alarm ADD COLUMN propagate_relation_types TEXT NOT NULL DEFAULT '[]';
ALTER TABLE alarm ADD COLUMN assignee TEXT;
ALTER TABLE alarm ADD COLUMN assign_ts INTEGER NOT NULL DEFAULT 0;
-- lists filter startTime/endTime on createdTime and sort by it by default, as ThingsBoard
DROP INDEX alarm_device_start;
DROP INDEX alarm_start;
CREATE INDEX alarm_device_created ON alarm (device, created_ts);
CREATE INDEX alarm_created ON alarm (created_ts);
