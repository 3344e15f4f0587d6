-- Alarm rules: the JSON document the REST API takes (core/alarm_rules.py validates it).
CREATE TABLE alarm_rule (
    id         TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_ts INTEGER NOT NULL
);

-- Alarms, as ThingsBoard: at most one not cleared per (device, type); cleared ones are history.
CREATE TABLE alarm (
    id           TEXT PRIMARY KEY,
    device       INTEGER NOT NULL,
    type         TEXT NOT NULL,
    severity     TEXT NOT NULL,
    acknowledged INTEGER NOT NULL DEFAULT 0,
    cleared      INTEGER NOT NULL DEFAULT 0,
    start_ts     INTEGER NOT NULL,
    end_ts       INTEGER NOT NULL,
    ack_ts       INTEGER NOT NULL DEFAULT 0,
    clear_ts     INTEGER NOT NULL DEFAULT 0,
    details      TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX alarm_open ON alarm (device, type) WHERE cleared = 0;
CREATE INDEX alarm_device_start ON alarm (device, start_ts);
CREATE INDEX alarm_start ON alarm (start_ts);

-- "For at least N seconds" conditions that hold now, so a restart does not forget them.
CREATE TABLE alarm_pending (
    rule     TEXT NOT NULL,
    device   INTEGER NOT NULL,
    since_ts INTEGER NOT NULL,
    PRIMARY KEY (rule, device)
) WITHOUT ROWID;
