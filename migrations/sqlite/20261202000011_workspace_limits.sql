-- Per-workspace limits on what a tenant can make the daemon send (issue 20): the test route
-- at most once a minute, and at most notify.max_emails_per_hour emails an hour (a fixed
-- window). Times are the database's (unixepoch()).
CREATE TABLE workspace_limits (
    workspace_id  BIGINT PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    test_at       BIGINT,
    email_window  BIGINT NOT NULL DEFAULT 0,
    emails_sent   BIGINT NOT NULL DEFAULT 0
);

-- notify.confirm_addresses: a new address gets a confirmation code first and nothing else
-- until the workspace confirms it. Addresses stored before this are confirmed.
ALTER TABLE workspace_recipients ADD COLUMN confirmed BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE workspace_recipients ADD COLUMN confirm_code TEXT;
ALTER TABLE workspace_recipients ADD COLUMN confirm_sent_at BIGINT;

-- The token key the sealed tokens are sealed with, by fingerprint (an HMAC of a fixed label
-- under the key). A daemon with another key refuses to start or to seal; rotate-token-key
-- changes it in the same transaction as the re-seal.
CREATE TABLE token_key (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint  TEXT NOT NULL
);
