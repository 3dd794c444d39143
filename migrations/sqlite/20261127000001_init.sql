-- Workspaces, API keys, accounts, their sealed credentials and current health.
-- Timestamps are Unix seconds (BIGINT) so the schema reads the same on PostgreSQL. Keys are
-- INTEGER PRIMARY KEY, SQLite's rowid alias: lookups by account skip a separate index.

CREATE TABLE workspaces (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL
);

-- Only a SHA-256 of each key is kept, plus a short prefix to show in listings.
CREATE TABLE api_keys (
    id            INTEGER PRIMARY KEY,
    workspace_id  BIGINT  NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    prefix        TEXT    NOT NULL,
    key_hash      TEXT    NOT NULL UNIQUE,
    created_at    BIGINT  NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_by_prefix ON api_keys(prefix);

CREATE TABLE accounts (
    id                      INTEGER PRIMARY KEY,
    workspace_id            BIGINT  NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    platform                TEXT    NOT NULL,
    account_id              TEXT    NOT NULL,
    username                TEXT    NOT NULL,
    connected_at            BIGINT  NOT NULL,
    -- JSON array of the scopes granted when the account was registered or last refreshed.
    scopes                  TEXT    NOT NULL DEFAULT '[]',
    token_expires_at        BIGINT,
    refresh_expires_at      BIGINT,
    token_issued_at         BIGINT  NOT NULL,
    UNIQUE (workspace_id, platform, account_id)
);
CREATE INDEX accounts_by_platform ON accounts(platform);

-- AES-256-GCM sealed tokens, in their own table so deleting credentials is one statement.
CREATE TABLE credentials (
    account_ref    INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    access_token   BLOB    NOT NULL,
    refresh_token  BLOB,
    updated_at     BIGINT  NOT NULL
);

-- The latest assessment of each account.
CREATE TABLE account_health (
    account_ref             INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    health                  TEXT    NOT NULL DEFAULT 'unknown',
    token_valid             BOOLEAN,
    needs_reconnect         BOOLEAN NOT NULL DEFAULT FALSE,
    -- JSON arrays; permissions is NULL until the first check.
    permissions             TEXT,
    missing_permissions     TEXT    NOT NULL DEFAULT '[]',
    recommendations         TEXT    NOT NULL DEFAULT '[]',
    data_access_expires_at  BIGINT,
    platform_user_id        TEXT,
    last_error              TEXT,
    last_checked_at         BIGINT,
    last_success_at         BIGINT,
    consecutive_failures    INTEGER NOT NULL DEFAULT 0,
    next_check_at           BIGINT  NOT NULL
);
CREATE INDEX account_health_due ON account_health(next_check_at);
