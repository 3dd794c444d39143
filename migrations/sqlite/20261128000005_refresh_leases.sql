-- Refresh leases: TikTok and X rotate refresh tokens on every use, so two refreshers of one
-- account must never run at once (the loser would burn the token). A lease is a row; it
-- holds across the daemon, a `check` process and several daemons sharing the database, and
-- expires on its own when its holder crashed.
CREATE TABLE refresh_leases (
    account_ref  INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    holder       TEXT    NOT NULL,
    expires_at   BIGINT  NOT NULL
);
-- Revoking a Meta grant removes it for every account that shares the person behind it.
CREATE INDEX account_health_by_platform_user ON account_health(platform_user_id);
