-- unixepoch(): the database's time in Unix seconds, under the name SQLite gives it, so that
-- one statement text takes its time from the database on both backends (leases, claims,
-- heartbeats and holds must not depend on each host's clock). now() is the transaction's
-- start, the same for every row a statement touches.
CREATE OR REPLACE FUNCTION unixepoch() RETURNS BIGINT
    LANGUAGE SQL STABLE
    AS $$ SELECT CAST(floor(EXTRACT(EPOCH FROM now())) AS BIGINT) $$;
