-- Custody of an account's grant (issue 22): `socialsyncer` refreshes it and hands tokens out;
-- `product` (the publishing product refreshes) is never refreshed here and gets new tokens
-- pushed. Accounts stored before this are in socialsyncer's custody, as before.
ALTER TABLE accounts ADD COLUMN custody TEXT NOT NULL DEFAULT 'socialsyncer';

-- What an API key may do: `read` (GET routes), `manage` (register, replace, delete, check,
-- notifications), `tokens` (read tokens). Keys made before this keep read and manage.
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read,manage';

-- Who read, replaced, registered, deleted or changed the custody of which account's tokens,
-- and what came of it. Never a token.
CREATE TABLE audit_events (
    id            INTEGER PRIMARY KEY,
    workspace_id  BIGINT  NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    at            BIGINT  NOT NULL,
    key_prefix    TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    platform      TEXT,
    account_id    TEXT,
    result        TEXT    NOT NULL
);
CREATE INDEX audit_events_by_workspace ON audit_events(workspace_id, id);
