-- Alert events, written in the same transaction as the health change that caused them, and
-- delivered by email from here (marked sent only once the SMTP server accepted them).
CREATE TABLE alert_outbox (
    id               INTEGER PRIMARY KEY,
    workspace_id     BIGINT  NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    -- No foreign key: an alert outlives the account it is about.
    account_ref      BIGINT  NOT NULL,
    -- account, token generation, episode and kind: an event fires once.
    dedup_key        TEXT    NOT NULL UNIQUE,
    kind             TEXT    NOT NULL,
    severity         TEXT    NOT NULL,
    platform         TEXT    NOT NULL,
    account_id       TEXT    NOT NULL,
    username         TEXT    NOT NULL,
    problem          TEXT    NOT NULL,
    action           TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT  NOT NULL,
    sent_at          BIGINT,
    last_error       TEXT
);
CREATE INDEX alert_outbox_pending ON alert_outbox(sent_at, next_attempt_at);

CREATE TABLE workspace_recipients (
    workspace_id  BIGINT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    email         TEXT   NOT NULL,
    PRIMARY KEY (workspace_id, email)
);

-- Which problems were alerted in the current episode (JSON array of kinds); a recovery
-- closes the episode.
ALTER TABLE account_health ADD COLUMN open_alerts TEXT NOT NULL DEFAULT '[]';
ALTER TABLE account_health ADD COLUMN alert_episode INTEGER NOT NULL DEFAULT 0;
