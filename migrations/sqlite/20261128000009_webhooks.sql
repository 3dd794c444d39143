-- A workspace's webhook receivers (PUT /v1/notifications). The signing secret is sealed like
-- the platform tokens (it must be read back to sign).
CREATE TABLE webhooks (
    id            INTEGER PRIMARY KEY,
    workspace_id  BIGINT  NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    url           TEXT    NOT NULL,
    format        TEXT    NOT NULL,
    -- JSON array of event types; NULL: every type.
    events        TEXT,
    secret        BLOB    NOT NULL,
    created_at    BIGINT  NOT NULL,
    UNIQUE (workspace_id, url)
);

-- The state of every non-email receiver, by its key (`webhook:<id>` for a workspace's,
-- `hook:<digest of the URL>` for the operator's [[notify.webhook]]): when its current run of
-- failed deliveries began, and whether it answered 410 Gone (disabled, and why).
CREATE TABLE receiver_status (
    receiver         TEXT    PRIMARY KEY,
    failing_since    BIGINT,
    disabled_at      BIGINT,
    disabled_reason  TEXT
);
