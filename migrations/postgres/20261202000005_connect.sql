-- Connect sessions (issue 23): a link that sends a browser through a platform's consent and
-- back. Single-use: the callback takes it (used_at) in one statement. The PKCE verifier is
-- sealed under the token key.
CREATE TABLE connect_sessions (
    id            TEXT    PRIMARY KEY,
    workspace_id  BIGINT  NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    platform      TEXT    NOT NULL,
    account_id    TEXT,
    verifier      BYTEA   NOT NULL,
    redirect_url  TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    used_at       BIGINT,
    -- An alert's reconnect link: a failed attempt leaves it usable; only a success uses it.
    retry         BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX connect_sessions_by_expiry ON connect_sessions(expires_at);
