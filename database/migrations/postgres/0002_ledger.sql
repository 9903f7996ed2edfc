-- PostgreSQL mirror of sqlite/0002_ledger.sql: the tamper-evident ledger
-- (package audit), append-only. Triggers refuse every UPDATE and DELETE,
-- TRUNCATE (which row triggers do not see; SQLite has no TRUNCATE), and an
-- INSERT at any index but the next one, so that no purge can remove
-- history and the Merkle tree cannot fork. A database administrator can
-- still drop them; that is detected, not prevented (audit verify-db,
-- audit verify), as with SQLite.

-- One canonical JSON line per event. The record is UTF-8 JSON text: TEXT
-- here (SQLite keeps the same bytes in a BLOB), so that the expression
-- indexes of 0005 read it with the same SQL text in both dialects.
CREATE TABLE ledger_records (
	idx      BIGINT PRIMARY KEY,
	time_ms  BIGINT NOT NULL,             -- event time, Unix milliseconds UTC
	type     TEXT NOT NULL,
	contract TEXT NOT NULL DEFAULT '',
	data     TEXT NOT NULL                -- the record: canonical JSON, no newline
);
CREATE INDEX ledger_records_contract ON ledger_records(contract, time_ms);
CREATE INDEX ledger_records_time ON ledger_records(time_ms);

-- The tree's stored hashes in tlog's dense order (tlog.StoredHashIndex).
CREATE TABLE ledger_hashes (
	idx  BIGINT PRIMARY KEY,
	hash BYTEA NOT NULL                   -- 32 bytes, SHA-256
);

-- Signed checkpoints: "<origin>\n<size>\n<base64 root>\n", signed.
CREATE TABLE ledger_checkpoints (
	size       BIGINT PRIMARY KEY,        -- entries covered: 0..size-1
	root       BYTEA NOT NULL,
	note       TEXT NOT NULL,
	created_at BIGINT NOT NULL            -- Unix milliseconds UTC
);

-- Which checkpoints have been written to object storage (bookkeeping only).
CREATE TABLE ledger_published (
	size         BIGINT PRIMARY KEY REFERENCES ledger_checkpoints(size),
	published_at BIGINT NOT NULL
);

CREATE FUNCTION ledger_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;

CREATE FUNCTION ledger_records_next() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.idx IS DISTINCT FROM (SELECT COALESCE(MAX(idx)+1, 0) FROM ledger_records) THEN
		RAISE EXCEPTION 'ledger_records: records are appended at the next index only';
	END IF;
	RETURN NEW;
END $$;

CREATE FUNCTION ledger_hashes_next() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.idx IS DISTINCT FROM (SELECT COALESCE(MAX(idx)+1, 0) FROM ledger_hashes) THEN
		RAISE EXCEPTION 'ledger_hashes: hashes are appended at the next index only';
	END IF;
	RETURN NEW;
END $$;

CREATE FUNCTION ledger_checkpoints_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM ledger_checkpoints WHERE size = NEW.size) THEN
		RAISE EXCEPTION 'ledger_checkpoints: a checkpoint of this size exists';
	END IF;
	RETURN NEW;
END $$;

CREATE TRIGGER ledger_records_append_only BEFORE INSERT ON ledger_records
	FOR EACH ROW EXECUTE FUNCTION ledger_records_next();
CREATE TRIGGER ledger_records_no_update BEFORE UPDATE ON ledger_records
	FOR EACH ROW EXECUTE FUNCTION ledger_refuse();
CREATE TRIGGER ledger_records_no_delete BEFORE DELETE ON ledger_records
	FOR EACH ROW EXECUTE FUNCTION ledger_refuse();
CREATE TRIGGER ledger_records_no_truncate BEFORE TRUNCATE ON ledger_records
	FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse();

CREATE TRIGGER ledger_hashes_append_only BEFORE INSERT ON ledger_hashes
	FOR EACH ROW EXECUTE FUNCTION ledger_hashes_next();
CREATE TRIGGER ledger_hashes_no_update BEFORE UPDATE ON ledger_hashes
	FOR EACH ROW EXECUTE FUNCTION ledger_refuse();
CREATE TRIGGER ledger_hashes_no_delete BEFORE DELETE ON ledger_hashes
	FOR EACH ROW EXECUTE FUNCTION ledger_refuse();
CREATE TRIGGER ledger_hashes_no_truncate BEFORE TRUNCATE ON ledger_hashes
	FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse();

CREATE TRIGGER ledger_checkpoints_append_only BEFORE INSERT ON ledger_checkpoints
	FOR EACH ROW EXECUTE FUNCTION ledger_checkpoints_new();
CREATE TRIGGER ledger_checkpoints_no_update BEFORE UPDATE ON ledger_checkpoints
	FOR EACH ROW EXECUTE FUNCTION ledger_refuse();
CREATE TRIGGER ledger_checkpoints_no_delete BEFORE DELETE ON ledger_checkpoints
	FOR EACH ROW EXECUTE FUNCTION ledger_refuse();
CREATE TRIGGER ledger_checkpoints_no_truncate BEFORE TRUNCATE ON ledger_checkpoints
	FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse();
