-- PostgreSQL mirror of sqlite/0008_master_epochs.sql: master key epochs.

CREATE TABLE master_epochs (
	epoch        BIGINT PRIMARY KEY,
	recipient    TEXT NOT NULL UNIQUE,
	state        TEXT NOT NULL,
	created_at   BIGINT NOT NULL,
	destroyed_at BIGINT
);
ALTER TABLE master_epochs ADD COLUMN rotation_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE master_epochs ADD COLUMN rotation_heartbeat BIGINT;
