-- Spool files of queued mail small enough to be kept in the database
-- (package gateway, DBSpool): the sealed bytes (encrypted with a master
-- key epoch's queue key, as in <data_dir>/spool or the bucket), written in
-- a transaction of their own before the accept transaction that
-- references them, and deleted once no pending delivery needs them.
-- Larger files stay where they were.
CREATE TABLE spool_files (
	name       TEXT PRIMARY KEY,
	data       BLOB NOT NULL,
	written_at INTEGER NOT NULL -- Unix milliseconds
);
