-- Rate-limit counters shared by the instances on one database (package
-- internal/ratelimit, the database-backed limiter): one row per limit
-- (scope), key and fixed window, counted up by one statement (INSERT … ON
-- CONFLICT DO UPDATE … RETURNING n). key_hash is an HMAC-SHA-256 (first 16
-- bytes) under a key derived from the master key, so no client address,
-- account name or link appears here in clear. Rows whose window has ended
-- are deleted by the scheduler. With SQLite (one process) serve keeps its
-- limits in memory; the table is there so that both dialects have one
-- schema.
CREATE TABLE rate_counters (
	scope        TEXT NOT NULL,
	key_hash     BLOB NOT NULL,
	window_start INTEGER NOT NULL, -- Unix milliseconds, a multiple of the window's length
	n            INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL, -- Unix milliseconds: window_start + the window's length
	PRIMARY KEY (scope, key_hash, window_start)
) WITHOUT ROWID;
CREATE INDEX rate_counters_expiry ON rate_counters(expires_at);
