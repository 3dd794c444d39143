-- Several daemons (PostgreSQL) divide the work by claims: a sweep claims the due accounts it
-- is about to check, a delivery the alerts it is about to send, each until `claimed_until`;
-- a claim that expires unreleased was left by a daemon that died, and is taken over. SQLite
-- has one daemon per file, but keeps the same columns so that both backends share the SQL
-- that writes results.
ALTER TABLE account_health ADD COLUMN claimed_until BIGINT;
ALTER TABLE account_health ADD COLUMN claimed_by TEXT;
ALTER TABLE alert_outbox ADD COLUMN claimed_until BIGINT;
ALTER TABLE alert_outbox ADD COLUMN claimed_by TEXT;

-- Each running daemon's heartbeat: the live peers share a platform's rate limit.
CREATE TABLE instances (
    id            TEXT    PRIMARY KEY,
    started_at    BIGINT  NOT NULL,
    heartbeat_at  BIGINT  NOT NULL
);

-- A platform's app-wide "wait until" (a 429 with a retry time), seen by one daemon and
-- honoured by all.
CREATE TABLE platform_holds (
    platform  TEXT    PRIMARY KEY,
    until     BIGINT  NOT NULL
);
