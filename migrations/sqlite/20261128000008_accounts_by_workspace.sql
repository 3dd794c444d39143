-- Lists walk a workspace's accounts in ID order (keyset pagination: `a.id > cursor`). The
-- unique (workspace_id, platform, account_id) index found them but in another order, so
-- every page sorted the whole workspace; this index hands them over in ID order.
CREATE INDEX accounts_by_workspace ON accounts(workspace_id);
