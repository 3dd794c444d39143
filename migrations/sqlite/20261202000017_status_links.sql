-- Read-only share links of a workspace's status page and badges (issue 26): the token is
-- random, shown once, and stored hashed (SHA-256, as API keys); revoked ones stay listed.
CREATE TABLE status_links (
    id            INTEGER PRIMARY KEY,
    workspace_id  BIGINT  NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    prefix        TEXT    NOT NULL,
    hash          TEXT    NOT NULL UNIQUE,
    created_at    BIGINT  NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX status_links_by_workspace ON status_links(workspace_id);
