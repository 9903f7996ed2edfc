-- PostgreSQL mirror of sqlite/0014_ledger_names.sql: destroyable names
-- (package audit), the clear values of the commitments in ledger records
-- of format v2 and their openings. Contract end deletes a contract's rows;
-- on PostgreSQL the deleted values stay in old row versions until VACUUM
-- and in the WAL until recycled (README, PostgreSQL).
CREATE TABLE ledger_names (
	contract   TEXT NOT NULL,
	commitment TEXT NOT NULL,          -- as it appears in the records
	value      TEXT NOT NULL,          -- the clear value
	opening    BYTEA NOT NULL,         -- 32 random bytes: with value, reproduces commitment
	created_at BIGINT NOT NULL,        -- Unix milliseconds UTC
	PRIMARY KEY (contract, commitment)
);
-- One commitment per contract and value, led by value (a search by
-- address finds its commitments in every contract).
CREATE UNIQUE INDEX ledger_names_value ON ledger_names(value, contract);

-- Contracts whose names were destroyed (at contract end).
CREATE TABLE ledger_names_destroyed (
	contract     TEXT PRIMARY KEY,
	destroyed_at BIGINT NOT NULL,      -- Unix milliseconds UTC
	names        BIGINT NOT NULL       -- how many clear values were deleted
);
