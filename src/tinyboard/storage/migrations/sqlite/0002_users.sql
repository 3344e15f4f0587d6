-- People who use the REST API and the dashboard.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'TENANT_ADMIN',
    created_ts    INTEGER NOT NULL
);

-- Server-wide values that must survive restarts (e.g. the JWT signing key).
CREATE TABLE setting (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
