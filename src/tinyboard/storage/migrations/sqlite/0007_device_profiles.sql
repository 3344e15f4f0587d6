-- Device profiles (ThingsBoard's DeviceProfile): every device has one, and a device's `type`
-- is its profile's name, kept in step as ThingsBoard does. One profile per distinct type of
-- the existing devices, plus `default` (the default profile). `profile_data` is ThingsBoard's
-- profileData JSON; `settings` the other ThingsBoard fields kept for later issues.
CREATE TABLE device_profile (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    description  TEXT NOT NULL DEFAULT '',
    is_default   INTEGER NOT NULL DEFAULT 0,
    created_ts   INTEGER NOT NULL,
    profile_data TEXT NOT NULL,
    settings     TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX device_profile_one_default ON device_profile (is_default) WHERE is_default;

INSERT INTO device_profile (id, name, is_default, created_ts, profile_data)
    SELECT lower(hex(randomblob(16))), 'default', 1,
           coalesce((SELECT min(created_ts) FROM device),
                    CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
           '{"configuration":{"type":"DEFAULT"},"transportConfiguration":{"type":"DEFAULT"},"provisionConfiguration":{"type":"DISABLED","provisionDeviceSecret":null},"alarms":null}';
INSERT INTO device_profile (id, name, is_default, created_ts, profile_data)
    SELECT lower(hex(randomblob(16))), type, 0, min(created_ts),
           '{"configuration":{"type":"DEFAULT"},"transportConfiguration":{"type":"DEFAULT"},"provisionConfiguration":{"type":"DISABLED","provisionDeviceSecret":null},"alarms":null}'
    FROM device WHERE type <> 'default' GROUP BY type;
-- 32 random hex digits → a version-4 UUID's text.
UPDATE device_profile SET id = substr(id, 1, 8) || '-' || substr(id, 9, 4) || '-4'
    || substr(id, 14, 3) || '-8' || substr(id, 18, 3) || '-' || substr(id, 21, 12);

ALTER TABLE device ADD COLUMN profile_id TEXT NOT NULL DEFAULT '';
UPDATE device SET profile_id = (SELECT p.id FROM device_profile p WHERE p.name = device.type);
CREATE INDEX device_by_profile ON device (profile_id);
