-- The staff and manager portal: registered recipient public keys, held
-- messages (take-out approval, 持出し承認, and the send delay, 一時保留),
-- and indexes for the per-transfer and per-recipient views of the ledger.
-- Times are Unix milliseconds (UTC); tokens are stored as SHA-256 only.

-- A recipient's own age or SSH public key. Registered from the portal and
-- verified by a link mailed to the address: only then (status 'active')
-- are later transfers to the address encrypted to it, with no passphrase.
CREATE TABLE recipient_keys (
	id               INTEGER PRIMARY KEY,
	address          TEXT NOT NULL,            -- lower-case
	kind             TEXT NOT NULL,            -- age | ssh
	public_key       TEXT NOT NULL,            -- as registered (one line)
	fingerprint      TEXT NOT NULL,            -- SHA256:<base64> of public_key, shown to people
	status           TEXT NOT NULL DEFAULT 'pending', -- pending | active | replaced | withdrawn
	token_hash       BLOB UNIQUE,              -- SHA-256 of the verification link token (kept: a used link says so)
	requested_at     INTEGER NOT NULL,
	token_expires_at INTEGER NOT NULL,
	verified_at      INTEGER,
	ended_at         INTEGER,                  -- replaced or withdrawn at
	remote_ip        TEXT NOT NULL DEFAULT ''  -- who asked for the registration
);
CREATE UNIQUE INDEX recipient_keys_active ON recipient_keys(address) WHERE status = 'active';
CREATE INDEX recipient_keys_address ON recipient_keys(address, status);

-- The registered key a recipient's copy of file.age was encrypted to;
-- NULL for recipients who got a passphrase (key_wrapped is then set).
ALTER TABLE recipients ADD COLUMN public_key_id INTEGER REFERENCES recipient_keys(id);

-- A message whose external copies are held back (outbound rows in status
-- 'held'): until the contract's manager approves it (approval 'pending'),
-- and/or until the send delay ends (release_at). Released holds queue
-- their rows; refused, expired and cancelled ones cancel them and revoke
-- the transfer (keys destroyed, objects deleted), as a revocation does.
CREATE TABLE holds (
	message_id        TEXT PRIMARY KEY REFERENCES messages(id),
	contract_id       INTEGER NOT NULL REFERENCES contracts(id),
	sender            TEXT NOT NULL,            -- envelope sender: receipts and decisions go there
	actor             TEXT NOT NULL DEFAULT '', -- the account that sent it ('' for relayed mail)
	status            TEXT NOT NULL DEFAULT 'held', -- held | released | refused | expired | cancelled
	approval          TEXT NOT NULL DEFAULT '',     -- '' (not needed) | pending | granted | refused | expired
	release_at        INTEGER NOT NULL,         -- end of the send delay (= received when there is none)
	approval_expires_at INTEGER,                -- a pending approval lapses then
	cancel_token_hash BLOB UNIQUE,              -- SHA-256 of the sender's cancel link token
	decided_by        TEXT NOT NULL DEFAULT '',
	decided_at        INTEGER,
	reason            TEXT NOT NULL DEFAULT '',  -- the manager's reason (refusal, approval note)
	created_at        INTEGER NOT NULL,
	ended_at          INTEGER,                  -- released, refused, expired or cancelled at
	finished_at       INTEGER                   -- a refused/expired/cancelled hold's transfer was destroyed
);
CREATE INDEX holds_status ON holds(status, release_at);
CREATE INDEX holds_contract ON holds(contract_id, status);

-- The ledger by transfer and by recipient, for the "my transfers" and
-- incident views and the ledger search. Expression indexes: the records
-- themselves are not touched (they stay append-only). The data column is a
-- BLOB holding JSON text, hence the CAST.
CREATE INDEX ledger_records_transfer ON ledger_records(json_extract(CAST(data AS TEXT), '$.transfer'));
CREATE INDEX ledger_records_recipient ON ledger_records(json_extract(CAST(data AS TEXT), '$.recipient'));
CREATE INDEX ledger_records_type ON ledger_records(type, time_ms);
CREATE INDEX transfers_sender ON transfers(sender, created_at);
