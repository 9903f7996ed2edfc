-- Core metadata: contracts, messages, transfers, sealed files, transfer
-- recipients and the outbound queue. Times are Unix milliseconds (UTC).
-- Secrets are never stored in clear: key material is age-encrypted (wrapped)
-- to the contract KEK or the master key, link tokens are stored as SHA-256.

CREATE TABLE contracts (
	id            INTEGER PRIMARY KEY,
	code          TEXT NOT NULL UNIQUE,
	name          TEXT NOT NULL DEFAULT '',
	kek_recipient TEXT NOT NULL,          -- age X25519 recipient of the contract KEK
	kek_wrapped   BLOB,                   -- KEK identity, age-encrypted to the master key; NULL once destroyed
	status        TEXT NOT NULL DEFAULT 'active', -- active | ending | ended
	created_at    INTEGER NOT NULL
);

CREATE TABLE messages (
	id          TEXT PRIMARY KEY,         -- gateway message id
	received_at INTEGER NOT NULL,
	client_addr TEXT NOT NULL,
	helo        TEXT NOT NULL DEFAULT '',
	mail_from   TEXT NOT NULL,
	header_from TEXT NOT NULL DEFAULT '',
	subject     TEXT NOT NULL DEFAULT '',
	message_id  TEXT NOT NULL DEFAULT '', -- the Message-ID header
	size        INTEGER NOT NULL,
	contract_id INTEGER REFERENCES contracts(id),
	actor       TEXT NOT NULL DEFAULT ''  -- authenticated account, if any
);

CREATE TABLE transfers (
	id          TEXT PRIMARY KEY,
	message_id  TEXT NOT NULL REFERENCES messages(id),
	contract_id INTEGER NOT NULL REFERENCES contracts(id),
	sender      TEXT NOT NULL,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL,
	status      TEXT NOT NULL DEFAULT 'active' -- active | revoked | expired | destroyed
);
CREATE INDEX transfers_message ON transfers(message_id);
CREATE INDEX transfers_status_expiry ON transfers(status, expires_at);

CREATE TABLE files (
	id            INTEGER PRIMARY KEY,
	transfer_id   TEXT NOT NULL REFERENCES transfers(id),
	idx           INTEGER NOT NULL,
	name          TEXT NOT NULL,          -- safe display name
	content_type  TEXT NOT NULL,
	size          INTEGER NOT NULL,       -- plaintext bytes
	sha256        TEXT NOT NULL,          -- of the plaintext, hex
	object_key    TEXT NOT NULL,
	cipher_size   INTEGER NOT NULL,
	cipher_sha256 TEXT NOT NULL,          -- of the stored age file, hex; checked when serving
	status        TEXT NOT NULL DEFAULT 'stored', -- stored | deleted
	UNIQUE (transfer_id, idx)
);

CREATE TABLE recipients (
	id              INTEGER PRIMARY KEY,
	transfer_id     TEXT NOT NULL REFERENCES transfers(id),
	address         TEXT NOT NULL,
	token_hash      BLOB NOT NULL UNIQUE,  -- SHA-256 of the link token
	key_wrapped     BLOB,                  -- key.age (transfer identity under the passphrase), age-encrypted to the contract KEK; NULL once revoked
	failed_attempts INTEGER NOT NULL DEFAULT 0,
	locked_at       INTEGER,
	downloads       INTEGER NOT NULL DEFAULT 0,
	first_download_at INTEGER,
	status          TEXT NOT NULL DEFAULT 'active' -- active | revoked
);
CREATE INDEX recipients_transfer ON recipients(transfer_id);

CREATE TABLE outbound (
	id              INTEGER PRIMARY KEY,
	message_id      TEXT REFERENCES messages(id), -- NULL for system notices
	kind            TEXT NOT NULL,         -- plain | copy | sealed | key | bounce | notice
	recipient_id    INTEGER REFERENCES recipients(id),
	mail_from       TEXT NOT NULL,
	rcpts           TEXT NOT NULL,         -- JSON array of addresses
	spool           TEXT,                  -- spool file holding the original or the skeleton
	secret          BLOB,                  -- passphrase, age-encrypted to the master key; erased once delivered
	after_id        INTEGER REFERENCES outbound(id), -- delivered only after this one
	delay_ms        INTEGER NOT NULL DEFAULT 0,      -- ... and this long after it
	ref_id          INTEGER REFERENCES outbound(id), -- bounce: the failed delivery
	status          TEXT NOT NULL,         -- waiting | queued | delivered | failed | cancelled
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at INTEGER NOT NULL,
	created_at      INTEGER NOT NULL,
	delivered_at    INTEGER,
	last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbound_due ON outbound(status, next_attempt_at);
CREATE INDEX outbound_after ON outbound(after_id);
CREATE INDEX outbound_spool ON outbound(spool);
