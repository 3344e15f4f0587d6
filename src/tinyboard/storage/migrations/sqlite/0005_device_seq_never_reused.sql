-- `seq` becomes AUTOINCREMENT: without it SQLite hands a deleted device's seq to the next new
-- device, and anything still holding the old seq (a reading in flight, an open dashboard
-- page) would write to the new device.
CREATE TABLE device_new (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL DEFAULT 'default',
    label      TEXT NOT NULL DEFAULT '',
    token      TEXT NOT NULL UNIQUE,
    created_ts INTEGER NOT NULL
);
INSERT INTO device_new (seq, id, name, type, label, token, created_ts)
    SELECT seq, id, name, type, label, token, created_ts FROM device;
DROP TABLE device;
ALTER TABLE device_new RENAME TO device;

CREATE TRIGGER device_added AFTER INSERT ON device BEGIN
    UPDATE setting SET value = CAST(value AS INTEGER) + 1 WHERE name = 'device_generation';
END;

CREATE TRIGGER device_changed AFTER UPDATE ON device BEGIN
    UPDATE setting SET value = CAST(value AS INTEGER) + 1 WHERE name = 'device_generation';
END;

CREATE TRIGGER device_deleted AFTER DELETE ON device BEGIN
    UPDATE setting SET value = CAST(value AS INTEGER) + 1 WHERE name = 'device_generation';
END;
