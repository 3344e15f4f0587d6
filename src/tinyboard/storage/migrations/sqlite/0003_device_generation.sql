-- A counter that moves whenever any process adds, changes or deletes a device, so a running
-- server can notice `tinyboard device ...` commands run from another process cheaply.
INSERT OR IGNORE INTO setting (name, value) VALUES ('device_generation', '0');

CREATE TRIGGER device_added AFTER INSERT ON device BEGIN
    UPDATE setting SET value = CAST(value AS INTEGER) + 1 WHERE name = 'device_generation';
END;

CREATE TRIGGER device_changed AFTER UPDATE ON device BEGIN
    UPDATE setting SET value = CAST(value AS INTEGER) + 1 WHERE name = 'device_generation';
END;

CREATE TRIGGER device_deleted AFTER DELETE ON device BEGIN
    UPDATE setting SET value = CAST(value AS INTEGER) + 1 WHERE name = 'device_generation';
END;
