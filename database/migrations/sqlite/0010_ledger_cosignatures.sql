-- Witness cosignatures of ledger checkpoints (package audit; the client
-- that obtains them is package witness/client). A witness (c2sp.org/
-- tlog-witness), run by someone other than the gateway's operator, cosigns
-- a checkpoint only if it extends every checkpoint of this ledger it
-- cosigned before. The cosignature lines are published with the checkpoint:
-- every checkpoint the ledger hands out (exports, proofs, certificates,
-- object storage) carries them after the gateway's own signature.
--
-- Append-only like the other ledger tables. A row can be forged by whoever
-- writes to the database only with the witness's private key, which the
-- gateway never holds: verification with the witnesses' keys
-- (`sealgate audit verify --witness`) checks every line.
CREATE TABLE ledger_cosignatures (
	size        INTEGER NOT NULL REFERENCES ledger_checkpoints(size),
	witness     TEXT NOT NULL,            -- "<name>+<key ID>" of the witness key
	line        TEXT NOT NULL,            -- the note signature line, "— <name> <base64>", without newline
	cosigned_at INTEGER NOT NULL,         -- the witness's timestamp, Unix seconds
	received_at INTEGER NOT NULL,         -- Unix milliseconds UTC
	PRIMARY KEY (size, witness)
);

CREATE TRIGGER ledger_cosignatures_no_update BEFORE UPDATE ON ledger_cosignatures
BEGIN SELECT RAISE(ABORT, 'ledger_cosignatures is append-only'); END;
CREATE TRIGGER ledger_cosignatures_no_delete BEFORE DELETE ON ledger_cosignatures
BEGIN SELECT RAISE(ABORT, 'ledger_cosignatures is append-only'); END;
