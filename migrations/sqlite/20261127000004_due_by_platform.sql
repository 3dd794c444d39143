-- Sweeps page through each platform's due accounts on their own (one lane per platform, so
-- a paced or throttled platform never holds up the others): the platform is copied into
-- account_health (it never changes for an account) and the due index leads with it.
ALTER TABLE account_health ADD COLUMN platform TEXT NOT NULL DEFAULT '';
UPDATE account_health SET platform = (SELECT a.platform FROM accounts a WHERE a.id = account_health.account_ref);
DROP INDEX account_health_due;
CREATE INDEX account_health_due ON account_health(platform, next_check_at, account_ref);
