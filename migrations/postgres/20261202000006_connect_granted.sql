-- Connect sessions (issue 23): the accounts one consent granted (several Facebook Pages or
-- Instagram accounts), sealed under the token key, held until the person chooses on
-- socialsyncer's page; taken (set to NULL) by that choice.
ALTER TABLE connect_sessions ADD COLUMN granted BYTEA;
