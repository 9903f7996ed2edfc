-- The state of `sealgate witness` (package witness), in its own SQLite file
-- (witness.db in the witness's directory), not in a gateway's database.
--
-- One row per log the witness accepts: the checkpoint it last cosigned. A
-- cosignature states that this is the largest consistent tree the witness
-- has seen for the log, so the size never goes down and a row is never
-- deleted (a log removed and added again could be shown another history).
CREATE TABLE witness_logs (
	origin     TEXT PRIMARY KEY,          -- the checkpoint origin line
	size       INTEGER NOT NULL DEFAULT 0,
	root       BLOB,                      -- 32 bytes; NULL while size = 0
	checkpoint TEXT,                      -- the signed note last cosigned
	added_at   INTEGER NOT NULL,          -- Unix milliseconds UTC
	updated_at INTEGER                    -- when it last cosigned
);

-- The log's verifier keys (note vkeys): a checkpoint must be signed by one.
CREATE TABLE witness_log_keys (
	origin TEXT NOT NULL REFERENCES witness_logs(origin),
	vkey   TEXT NOT NULL,
	PRIMARY KEY (origin, vkey)
);

-- Checkpoints signed by a log's key that the witness refused because they
-- contradict what it cosigned before: evidence that the log (the gateway)
-- presented two histories.
CREATE TABLE witness_refused (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	origin     TEXT NOT NULL,
	old_size   INTEGER NOT NULL,          -- the size the witness held
	size       INTEGER NOT NULL,          -- the refused checkpoint's size
	checkpoint TEXT NOT NULL,             -- the refused signed note
	reason     TEXT NOT NULL,
	at         INTEGER NOT NULL           -- Unix milliseconds UTC
);

CREATE TRIGGER witness_logs_no_shrink BEFORE UPDATE OF size ON witness_logs
WHEN NEW.size < OLD.size
BEGIN SELECT RAISE(ABORT, 'witness_logs: the cosigned size never goes down'); END;
CREATE TRIGGER witness_logs_no_delete BEFORE DELETE ON witness_logs
BEGIN SELECT RAISE(ABORT, 'witness_logs: a log is never removed'); END;
CREATE TRIGGER witness_refused_no_update BEFORE UPDATE ON witness_refused
BEGIN SELECT RAISE(ABORT, 'witness_refused is append-only'); END;
CREATE TRIGGER witness_refused_no_delete BEFORE DELETE ON witness_refused
BEGIN SELECT RAISE(ABORT, 'witness_refused is append-only'); END;
