-- OTA packages (ThingsBoard's OtaPackageInfo). A package's bytes are rows of `ota_chunk`,
-- 64 KiB each (the last one shorter), under the upload that wrote them: `data_upload` names
-- the one that completed (NULL: no bytes; a package may give a `url` instead). An upload
-- in progress is a row of `ota_upload`, so chunks a crash left behind can be found and
-- deleted, and two uploads to one package never mix their chunks. `title` and `version`
-- are unique together, as in ThingsBoard.
CREATE TABLE ota_package (
    id                 TEXT PRIMARY KEY,
    created_ts         INTEGER NOT NULL,
    profile_id         TEXT,
    type               TEXT NOT NULL,
    title              TEXT NOT NULL,
    version            TEXT NOT NULL,
    tag                TEXT,
    url                TEXT,
    file_name          TEXT,
    content_type       TEXT,
    checksum_algorithm TEXT,
    checksum           TEXT,
    data_size          INTEGER,
    additional_info    TEXT,
    data_upload        TEXT,
    UNIQUE (title, version)
);
CREATE INDEX ota_package_by_profile ON ota_package (profile_id, type);

CREATE TABLE ota_upload (
    id         TEXT PRIMARY KEY,
    package    TEXT NOT NULL,
    started_ts INTEGER NOT NULL
);

CREATE TABLE ota_chunk (
    upload TEXT NOT NULL,
    idx    INTEGER NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (upload, idx)
);

-- What a profile or a device runs. Ids a client sent before this migration were kept in a
-- profile's `settings` without meaning (no package could exist); they stay there unread.
ALTER TABLE device_profile ADD COLUMN firmware_id TEXT;
ALTER TABLE device_profile ADD COLUMN software_id TEXT;
ALTER TABLE device ADD COLUMN firmware_id TEXT;
ALTER TABLE device ADD COLUMN software_id TEXT;
CREATE INDEX device_by_firmware ON device (firmware_id) WHERE firmware_id IS NOT NULL;
CREATE INDEX device_by_software ON device (software_id) WHERE software_id IS NOT NULL;
