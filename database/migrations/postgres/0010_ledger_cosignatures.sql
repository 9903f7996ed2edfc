-- PostgreSQL mirror of sqlite/0010_ledger_cosignatures.sql: witness
-- cosignatures of ledger checkpoints (package audit), append-only like the
-- other ledger tables (ledger_refuse is defined in 0002_ledger.sql).
CREATE TABLE ledger_cosignatures (
	size        BIGINT NOT NULL REFERENCES ledger_checkpoints(size),
	witness     TEXT NOT NULL,            -- "<name>+<key ID>" of the witness key
	line        TEXT NOT NULL,            -- the note signature line, without newline
	cosigned_at BIGINT NOT NULL,          -- the witness's timestamp, Unix seconds
	received_at BIGINT NOT NULL,          -- Unix milliseconds UTC
	PRIMARY KEY (size, witness)
);

CREATE TRIGGER ledger_cosignatures_no_update BEFORE UPDATE ON ledger_cosignatures
	FOR EACH ROW EXECUTE FUNCTION ledger_refuse();
CREATE TRIGGER ledger_cosignatures_no_delete BEFORE DELETE ON ledger_cosignatures
	FOR EACH ROW EXECUTE FUNCTION ledger_refuse();
CREATE TRIGGER ledger_cosignatures_no_truncate BEFORE TRUNCATE ON ledger_cosignatures
	FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse();
