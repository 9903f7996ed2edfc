-- Destroyable names (package audit). Ledger records of format v2 hold the
-- names that may themselves be confidential — file names, subjects,
-- counterparty addresses, Message-IDs, remote delivery replies — only as
-- commitments: base64url(SHA-256("sealgate name v1\n" || opening || value))
-- with a random 32-byte opening per contract and value. The clear value and
-- its opening live here, outside the tree, so that exports can join them
-- back; contract end deletes the contract's rows (secure_delete overwrites
-- them, the WAL is truncated) and every proof still verifies, since the
-- records themselves never held the names.
CREATE TABLE ledger_names (
	contract   TEXT NOT NULL,
	commitment TEXT NOT NULL,          -- as it appears in the records
	value      TEXT NOT NULL,          -- the clear value
	opening    BLOB NOT NULL,          -- 32 random bytes: with value, reproduces commitment
	created_at INTEGER NOT NULL,       -- Unix milliseconds UTC
	PRIMARY KEY (contract, commitment)
);
-- One commitment per contract and value: the same recipient or file name
-- has the same commitment in every record of the contract. Led by value,
-- so that a search by address finds its commitments in every contract.
CREATE UNIQUE INDEX ledger_names_value ON ledger_names(value, contract);

-- Contracts whose names were destroyed (at contract end). Names recorded
-- for such a contract afterwards (a late page view, say) get a commitment
-- whose opening is not kept anywhere.
CREATE TABLE ledger_names_destroyed (
	contract     TEXT PRIMARY KEY,
	destroyed_at INTEGER NOT NULL,     -- Unix milliseconds UTC
	names        INTEGER NOT NULL      -- how many clear values were deleted
);
