-- Devices: `seq` is the compact key used in time-series rows; `id` is the public UUID.
CREATE TABLE device (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL DEFAULT 'default',
    label      TEXT NOT NULL DEFAULT '',
    token      TEXT NOT NULL UNIQUE,
    created_ts INTEGER NOT NULL
);

-- Telemetry key dictionary, as ThingsBoard's ts_kv_dictionary.
CREATE TABLE ts_key (
    id  INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE
);

-- One row per (device, key, ts). kind: 0 bool, 1 long, 2 double, 3 string, 4 JSON text.
-- `v` has no declared type on purpose: no affinity, so "1.1" stays text (ANY would not).
CREATE TABLE ts_kv (
    device INTEGER NOT NULL,
    key    INTEGER NOT NULL,
    ts     INTEGER NOT NULL,
    kind   INTEGER NOT NULL,
    v,
    PRIMARY KEY (device, key, ts)
) WITHOUT ROWID;

CREATE TABLE ts_latest (
    device INTEGER NOT NULL,
    key    INTEGER NOT NULL,
    ts     INTEGER NOT NULL,
    kind   INTEGER NOT NULL,
    v,
    PRIMARY KEY (device, key)
) WITHOUT ROWID;

-- scope: CLIENT, SHARED or SERVER.
CREATE TABLE attribute (
    device INTEGER NOT NULL,
    scope  TEXT NOT NULL,
    key    TEXT NOT NULL,
    ts     INTEGER NOT NULL,
    kind   INTEGER NOT NULL,
    v,
    PRIMARY KEY (device, scope, key)
) WITHOUT ROWID;
