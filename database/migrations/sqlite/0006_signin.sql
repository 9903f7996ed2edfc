-- Sign-in: one use per TOTP code, and app passwords for SMTP AUTH.

-- The last TOTP time step (Unix time / 30 s) accepted for the account: a
-- code of that step or an earlier one is refused, so each code works once.
-- Set atomically with the check (UPDATE ... WHERE totp_last_step < step).
ALTER TABLE accounts ADD COLUMN totp_last_step INTEGER;

-- App passwords: random secrets (160 bits) for mail clients, several per
-- account, each with a label. Privileged accounts (manager, admin,
-- auditor) may use SMTP AUTH only with one of these. Only a SHA-256 of the
-- secret is kept; it is shown once, at creation.
CREATE TABLE app_passwords (
	id           INTEGER PRIMARY KEY,
	account_id   INTEGER NOT NULL REFERENCES accounts(id),
	label        TEXT NOT NULL,                -- what it is for ("iPhone", "Thunderbird at home")
	hash         BLOB NOT NULL UNIQUE,         -- SHA-256 of the normalised secret
	created_at   INTEGER NOT NULL,
	created_by   TEXT NOT NULL,
	last_used_at INTEGER,
	last_used_ip TEXT NOT NULL DEFAULT '',
	revoked_at   INTEGER,
	revoked_by   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX app_passwords_account ON app_passwords(account_id, revoked_at);
