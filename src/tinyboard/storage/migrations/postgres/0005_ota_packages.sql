-- OTA packages, as migrations/sqlite/0009: info rows, their bytes as 64 KiB chunks under
-- the upload that wrote them, uploads in progress, and what profiles and devices run.
CREATE TABLE ota_package (
    id                 TEXT PRIMARY KEY,
    created_ts         BIGINT NOT NULL,
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
    data_size          BIGINT,
    additional_info    TEXT,
    data_upload        TEXT,
    UNIQUE (title, version)
);
CREATE INDEX ota_package_by_profile ON ota_package (profile_id, type);

CREATE TABLE ota_upload (
    id         TEXT PRIMARY KEY,
    package    TEXT NOT NULL,
    started_ts BIGINT NOT NULL
);

CREATE TABLE ota_chunk (
    upload TEXT NOT NULL,
    idx    INTEGER NOT NULL,
    data   BYTEA NOT NULL,
    PRIMARY KEY (upload, idx)
);
ALTER TABLE ota_chunk ALTER COLUMN data SET STORAGE EXTERNAL;  -- already compressed images

ALTER TABLE device_profile ADD COLUMN firmware_id TEXT;
ALTER TABLE device_profile ADD COLUMN software_id TEXT;
ALTER TABLE device ADD COLUMN firmware_id TEXT;
ALTER TABLE device ADD COLUMN software_id TEXT;
CREATE INDEX device_by_firmware ON device (firmware_id) WHERE firmware_id IS NOT NULL;
CREATE INDEX device_by_software ON device (software_id) WHERE software_id IS NOT NULL;
