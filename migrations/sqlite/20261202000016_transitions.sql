-- Health changes (issue 26): one row per change of an account's health or of whether it
-- needs a person, written in the transaction of the check that caused it, kept
-- `health.transitions_retention` (default 400 days), longer than the raw check history.
CREATE TABLE health_transitions (
    id            INTEGER PRIMARY KEY,
    account_ref   BIGINT  NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    workspace_id  BIGINT  NOT NULL,
    at            BIGINT  NOT NULL,
    from_health   TEXT    NOT NULL,
    to_health     TEXT    NOT NULL,
    needs_person  BOOLEAN NOT NULL,
    reason        TEXT    NOT NULL
);
CREATE INDEX health_transitions_by_account ON health_transitions(account_ref, at);
CREATE INDEX health_transitions_by_workspace ON health_transitions(workspace_id, id);
CREATE INDEX health_transitions_by_time ON health_transitions(at);
