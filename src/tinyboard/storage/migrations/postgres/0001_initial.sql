-- tinyboard on PostgreSQL: the same model as the SQLite store (see migrations/sqlite).
-- Devices: `seq` is the compact key used in time-series rows, never reused; `id` the UUID.
CREATE TABLE device (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL DEFAULT 'default',
    label      TEXT NOT NULL DEFAULT '',
    token      TEXT NOT NULL UNIQUE,
    created_ts BIGINT NOT NULL
);

CREATE TABLE ts_key (
    id  INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key TEXT NOT NULL UNIQUE
);

-- One row per (device, key, ts). kind: 0 bool, 1 long, 2 double, 3 string, 4 JSON text.
-- long_v holds longs and booleans (exact 64-bit), dbl_v doubles, str_v strings and JSON.
-- Years of data: the primary key serves every query; a BRIN index on ts (tiny, because rows
-- arrive roughly in time order) serves the retention sweep, which deletes in bounded batches.
CREATE TABLE ts_kv (
    device BIGINT NOT NULL,
    key    INTEGER NOT NULL,
    ts     BIGINT NOT NULL,
    kind   SMALLINT NOT NULL,
    long_v BIGINT,
    dbl_v  DOUBLE PRECISION,
    str_v  TEXT,
    PRIMARY KEY (device, key, ts)
);
CREATE INDEX ts_kv_ts_brin ON ts_kv USING brin (ts);

CREATE TABLE ts_latest (
    device BIGINT NOT NULL,
    key    INTEGER NOT NULL,
    ts     BIGINT NOT NULL,
    kind   SMALLINT NOT NULL,
    long_v BIGINT,
    dbl_v  DOUBLE PRECISION,
    str_v  TEXT,
    PRIMARY KEY (device, key)
);

CREATE TABLE attribute (
    device BIGINT NOT NULL,
    scope  TEXT NOT NULL,
    key    TEXT NOT NULL,
    ts     BIGINT NOT NULL,
    kind   SMALLINT NOT NULL,
    long_v BIGINT,
    dbl_v  DOUBLE PRECISION,
    str_v  TEXT,
    PRIMARY KEY (device, scope, key)
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'TENANT_ADMIN',
    created_ts    BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (lower(email));

CREATE TABLE setting (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Moves on every device change from any node or process (the directory watches it).
INSERT INTO setting (name, value) VALUES ('device_generation', '0');
CREATE FUNCTION bump_device_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE setting SET value = (value::bigint + 1)::text WHERE name = 'device_generation';
    RETURN NULL;
END $$;
CREATE TRIGGER device_changed AFTER INSERT OR UPDATE OR DELETE ON device
    FOR EACH STATEMENT EXECUTE FUNCTION bump_device_generation();

CREATE TABLE alarm_rule (
    id         TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);

CREATE TABLE alarm (
    id           TEXT PRIMARY KEY,
    device       BIGINT NOT NULL,
    type         TEXT NOT NULL,
    severity     TEXT NOT NULL,
    acknowledged BOOLEAN NOT NULL DEFAULT false,
    cleared      BOOLEAN NOT NULL DEFAULT false,
    start_ts     BIGINT NOT NULL,
    end_ts       BIGINT NOT NULL,
    ack_ts       BIGINT NOT NULL DEFAULT 0,
    clear_ts     BIGINT NOT NULL DEFAULT 0,
    details      TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX alarm_open ON alarm (device, type) WHERE NOT cleared;
CREATE INDEX alarm_device_start ON alarm (device, start_ts);
CREATE INDEX alarm_start ON alarm (start_ts);

CREATE TABLE alarm_pending (
    rule     TEXT NOT NULL,
    device   BIGINT NOT NULL,
    since_ts BIGINT NOT NULL,
    PRIMARY KEY (rule, device)
);
