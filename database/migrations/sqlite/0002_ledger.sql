-- The tamper-evident ledger (package audit). Append-only: triggers refuse
-- every UPDATE and DELETE, and an INSERT at any index but the next one, so
-- that no purge (files, transfers, contracts) can remove history and the
-- Merkle tree cannot fork.
--
-- A database administrator can still drop these triggers, or edit the file.
-- That is not prevented here but detected: every record is a leaf of an
-- RFC 6962 Merkle tree whose hashes are stored alongside and whose root is
-- signed in checkpoints kept here, in object storage and by auditors
-- (`sealgate audit verify-db`, `sealgate audit verify`).

-- One canonical JSON line per event. idx is the 0-based leaf index. time_ms,
-- type and contract are copies of fields of data, for selecting exports;
-- they are not hashed, and verify-db checks them against data.
CREATE TABLE ledger_records (
	idx      INTEGER PRIMARY KEY,
	time_ms  INTEGER NOT NULL,            -- event time, Unix milliseconds UTC
	type     TEXT NOT NULL,
	contract TEXT NOT NULL DEFAULT '',
	data     BLOB NOT NULL                -- the record: canonical JSON, no newline
);
CREATE INDEX ledger_records_contract ON ledger_records(contract, time_ms);
CREATE INDEX ledger_records_time ON ledger_records(time_ms);

-- The tree's stored hashes in tlog's dense order (tlog.StoredHashIndex):
-- record n adds its leaf hash and the hashes of the subtrees it completes.
CREATE TABLE ledger_hashes (
	idx  INTEGER PRIMARY KEY,
	hash BLOB NOT NULL                    -- 32 bytes, SHA-256
);

-- Signed checkpoints: the note (golang.org/x/mod/sumdb/note, Ed25519) whose
-- body is "<origin>\n<size>\n<base64 root>\n". root is a copy for queries.
CREATE TABLE ledger_checkpoints (
	size       INTEGER PRIMARY KEY,       -- entries covered: 0..size-1
	root       BLOB NOT NULL,
	note       TEXT NOT NULL,
	created_at INTEGER NOT NULL           -- Unix milliseconds UTC
);

-- Which checkpoints have been written to object storage (bookkeeping only:
-- not protected, a lost row merely causes a harmless re-upload).
CREATE TABLE ledger_published (
	size         INTEGER PRIMARY KEY REFERENCES ledger_checkpoints(size),
	published_at INTEGER NOT NULL
);

CREATE TRIGGER ledger_records_append_only BEFORE INSERT ON ledger_records
WHEN NEW.idx IS NOT (SELECT COALESCE(MAX(idx)+1, 0) FROM ledger_records)
BEGIN SELECT RAISE(ABORT, 'ledger_records: records are appended at the next index only'); END;
CREATE TRIGGER ledger_records_no_update BEFORE UPDATE ON ledger_records
BEGIN SELECT RAISE(ABORT, 'ledger_records is append-only'); END;
CREATE TRIGGER ledger_records_no_delete BEFORE DELETE ON ledger_records
BEGIN SELECT RAISE(ABORT, 'ledger_records is append-only'); END;

CREATE TRIGGER ledger_hashes_append_only BEFORE INSERT ON ledger_hashes
WHEN NEW.idx IS NOT (SELECT COALESCE(MAX(idx)+1, 0) FROM ledger_hashes)
BEGIN SELECT RAISE(ABORT, 'ledger_hashes: hashes are appended at the next index only'); END;
CREATE TRIGGER ledger_hashes_no_update BEFORE UPDATE ON ledger_hashes
BEGIN SELECT RAISE(ABORT, 'ledger_hashes is append-only'); END;
CREATE TRIGGER ledger_hashes_no_delete BEFORE DELETE ON ledger_hashes
BEGIN SELECT RAISE(ABORT, 'ledger_hashes is append-only'); END;

CREATE TRIGGER ledger_checkpoints_append_only BEFORE INSERT ON ledger_checkpoints
WHEN EXISTS (SELECT 1 FROM ledger_checkpoints WHERE size = NEW.size)
BEGIN SELECT RAISE(ABORT, 'ledger_checkpoints: a checkpoint of this size exists'); END;
CREATE TRIGGER ledger_checkpoints_no_update BEFORE UPDATE ON ledger_checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger_checkpoints is append-only'); END;
CREATE TRIGGER ledger_checkpoints_no_delete BEFORE DELETE ON ledger_checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger_checkpoints is append-only'); END;
