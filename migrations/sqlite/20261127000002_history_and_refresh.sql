-- Append-only record of checks, refreshes and health changes: "when did this account break?"
CREATE TABLE health_history (
    id           INTEGER PRIMARY KEY,
    account_ref  BIGINT  NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    at           BIGINT  NOT NULL,
    -- check | refresh | refresh_failed
    event        TEXT    NOT NULL,
    -- ok | invalid | transient_error, for checks
    outcome      TEXT,
    health       TEXT    NOT NULL,
    -- whether the health differs from the state before this event
    changed      BOOLEAN NOT NULL,
    detail       TEXT
);
CREATE INDEX health_history_by_account ON health_history(account_ref, at);
CREATE INDEX health_history_by_time ON health_history(at);

-- Automatic refresh bookkeeping.
ALTER TABLE account_health ADD COLUMN refresh_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE account_health ADD COLUMN last_refresh_error TEXT;
