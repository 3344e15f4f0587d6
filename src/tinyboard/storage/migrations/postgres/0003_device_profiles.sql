-- Device profiles, as migrations/sqlite/0006: one per distinct device type plus `default`.
CREATE TABLE device_profile (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    description  TEXT NOT NULL DEFAULT '',
    is_default   BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts   BIGINT NOT NULL,
    profile_data TEXT NOT NULL,
    settings     TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX device_profile_one_default ON device_profile (is_default) WHERE is_default;

INSERT INTO device_profile (id, name, is_default, created_ts, profile_data)
    SELECT gen_random_uuid()::text, 'default', TRUE,
           coalesce((SELECT min(created_ts) FROM device),
                    (extract(epoch FROM clock_timestamp()) * 1000)::bigint),
           '{"configuration":{"type":"DEFAULT"},"transportConfiguration":{"type":"DEFAULT"},"provisionConfiguration":{"type":"DISABLED","provisionDeviceSecret":null},"alarms":null}';
INSERT INTO device_profile (id, name, is_default, created_ts, profile_data)
    SELECT gen_random_uuid()::text, type, FALSE, min(created_ts),
           '{"configuration":{"type":"DEFAULT"},"transportConfiguration":{"type":"DEFAULT"},"provisionConfiguration":{"type":"DISABLED","provisionDeviceSecret":null},"alarms":null}'
    FROM device WHERE type <> 'default' GROUP BY type;

ALTER TABLE device ADD COLUMN profile_id TEXT NOT NULL DEFAULT '';
UPDATE device SET profile_id = p.id FROM device_profile p WHERE p.name = device.type;
CREATE INDEX device_by_profile ON device (profile_id);
