-- PostgreSQL mirror of sqlite/0016_rate_counters.sql: rate-limit counters
-- shared by the instances (package internal/ratelimit). UNLOGGED: a
-- counter is written on every counted portal request and SMTP AUTH
-- failure, and is worth a few minutes at most; after a crash of the
-- PostgreSQL server (not a clean restart) the table comes back empty, so
-- the windows then running start again from zero. The lock of a link after
-- N wrong passphrases and the accounts' lockout are in logged tables and
-- survive.
CREATE UNLOGGED TABLE rate_counters (
	scope        TEXT NOT NULL,
	key_hash     BYTEA NOT NULL,
	window_start BIGINT NOT NULL, -- Unix milliseconds, a multiple of the window's length
	n            BIGINT NOT NULL,
	expires_at   BIGINT NOT NULL, -- Unix milliseconds: window_start + the window's length
	PRIMARY KEY (scope, key_hash, window_start)
);
CREATE INDEX rate_counters_expiry ON rate_counters(expires_at);
