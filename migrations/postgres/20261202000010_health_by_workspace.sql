-- A workspace's health counts and the moment its first account turns stale (issue 27): the
-- workspace is copied into account_health (it never changes for an account), and one index
-- holds everything the counts read, in the order they group it (src/store/counts.rs).
ALTER TABLE account_health ADD COLUMN workspace_id BIGINT;
UPDATE account_health h SET workspace_id = a.workspace_id FROM accounts a WHERE a.id = h.account_ref;
ALTER TABLE account_health ALTER COLUMN workspace_id SET NOT NULL;
CREATE INDEX account_health_by_workspace ON account_health(workspace_id, platform, health, last_success_at);
