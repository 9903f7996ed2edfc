-- Accounts: one per person, roles per contract, argon2id passwords, TOTP
-- secrets wrapped to the master key, portal sessions (only token hashes
-- are stored), and the login history the access review reads.

CREATE TABLE accounts (
	id             INTEGER PRIMARY KEY,
	name           TEXT NOT NULL UNIQUE,       -- login name
	email          TEXT NOT NULL UNIQUE COLLATE NOCASE, -- the only address this person may send as
	display_name   TEXT NOT NULL DEFAULT '',
	password_hash  TEXT NOT NULL,              -- PHC string, argon2id
	totp_wrapped   BLOB,                       -- TOTP secret, age-encrypted to the master key
	status         TEXT NOT NULL DEFAULT 'active', -- active | disabled
	failed_logins  INTEGER NOT NULL DEFAULT 0, -- consecutive
	locked_until   INTEGER,
	created_at     INTEGER NOT NULL,
	last_login_at  INTEGER,
	password_changed_at INTEGER NOT NULL
);

CREATE TABLE account_roles (
	account_id INTEGER NOT NULL REFERENCES accounts(id),
	role       TEXT NOT NULL,                  -- sender | manager | admin | auditor
	contract   TEXT NOT NULL DEFAULT '',       -- manager of this contract; '' = all / not contract-bound
	PRIMARY KEY (account_id, role, contract)
);

CREATE TABLE sessions (
	token_hash   BLOB PRIMARY KEY,             -- SHA-256 of the cookie value
	account_id   INTEGER NOT NULL REFERENCES accounts(id),
	mfa_done     INTEGER NOT NULL DEFAULT 0,   -- second factor passed (or not required)
	created_at   INTEGER NOT NULL,
	last_seen_at INTEGER NOT NULL,
	remote_ip    TEXT NOT NULL DEFAULT '',
	user_agent   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_account ON sessions(account_id);

CREATE TABLE logins (
	id         INTEGER PRIMARY KEY,
	account_id INTEGER REFERENCES accounts(id), -- NULL: unknown name
	name       TEXT NOT NULL,
	at         INTEGER NOT NULL,
	ok         INTEGER NOT NULL,
	via        TEXT NOT NULL,                  -- portal | smtp
	remote_ip  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX logins_account_at ON logins(account_id, at);
CREATE INDEX logins_at ON logins(at);

-- Small system notices (alerts, approval requests, download receipts) are
-- queued like any outbound mail; their rendered body is kept wrapped to the
-- master key until delivered.
ALTER TABLE outbound ADD COLUMN body BLOB;
