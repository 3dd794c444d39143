-- A counter per workspace that every write to its accounts or their health bumps, in the
-- write's own transaction: cached API answers are valid while it is unchanged. In the
-- database, so that writes by an admin command or another daemon invalidate them too.
CREATE TABLE workspace_generations (
    workspace_id  INTEGER PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    generation    BIGINT  NOT NULL
);
