-- PostgreSQL mirror of sqlite/0018_spool_files.sql: spool files of queued
-- mail small enough to be kept in the database (package gateway,
-- DBSpool), which every instance of a fleet reads.
CREATE TABLE spool_files (
	name       TEXT PRIMARY KEY,
	data       BYTEA NOT NULL,
	written_at BIGINT NOT NULL -- Unix milliseconds
);
