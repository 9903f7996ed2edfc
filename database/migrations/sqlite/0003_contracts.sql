-- The contract register: who may receive under a contract, how long links
-- live, how often each recipient may download, and the state of its
-- destruction; per-recipient per-file download counts; destruction
-- certificates. Times are Unix milliseconds (UTC).

-- A NULL link_expiry_ms / max_expiry_ms / download_limit means "the
-- configured default" (transfer.link_expiry, transfer.max_link_expiry,
-- transfer.download_limit); download_limit 0 means unlimited.
ALTER TABLE contracts ADD COLUMN counterparty      TEXT NOT NULL DEFAULT '';
ALTER TABLE contracts ADD COLUMN manager           TEXT NOT NULL DEFAULT ''; -- 情報管理責任者: account name or e-mail address
ALTER TABLE contracts ADD COLUMN starts_at         INTEGER;                  -- NULL: no start restriction
ALTER TABLE contracts ADD COLUMN ends_at           INTEGER;                  -- exclusive; NULL: open-ended
ALTER TABLE contracts ADD COLUMN link_expiry_ms    INTEGER;
ALTER TABLE contracts ADD COLUMN max_expiry_ms     INTEGER;                  -- the longest a link may live, counted from sending
ALTER TABLE contracts ADD COLUMN download_limit    INTEGER;                  -- per recipient and file
ALTER TABLE contracts ADD COLUMN approval_required INTEGER NOT NULL DEFAULT 0; -- take-out needs the manager's approval (stored for the approvals work)
ALTER TABLE contracts ADD COLUMN key_delivery      TEXT NOT NULL DEFAULT 'separate-mail';
ALTER TABLE contracts ADD COLUMN strip_tag         INTEGER NOT NULL DEFAULT 0; -- strip [CODE] from the subject external recipients see
ALTER TABLE contracts ADD COLUMN any_recipient     INTEGER NOT NULL DEFAULT 0; -- every recipient is allowed (the default contract)
ALTER TABLE contracts ADD COLUMN updated_at        INTEGER;
ALTER TABLE contracts ADD COLUMN ending_at         INTEGER;                  -- destruction started (status 'ending')
ALTER TABLE contracts ADD COLUMN ended_at          INTEGER;                  -- destruction finished, certificate issued (status 'ended')
ALTER TABLE contracts ADD COLUMN end_operator      TEXT NOT NULL DEFAULT '';
ALTER TABLE contracts ADD COLUMN end_reason        TEXT NOT NULL DEFAULT '';
-- Who is destroying the contract right now ("host/pid") and when it last
-- made progress: a scheduler resumes an interrupted destruction only when
-- that owner is gone.
ALTER TABLE contracts ADD COLUMN destroy_owner     TEXT NOT NULL DEFAULT '';
ALTER TABLE contracts ADD COLUMN destroy_heartbeat INTEGER;

-- Contracts that existed before the register allowed any recipient: keep it so.
UPDATE contracts SET any_recipient = 1;

CREATE TABLE contract_allowed (
	contract_id INTEGER NOT NULL REFERENCES contracts(id),
	kind        TEXT NOT NULL,            -- domain (and its subdomains) | address
	value       TEXT NOT NULL,            -- lower-case
	PRIMARY KEY (contract_id, kind, value)
);

CREATE INDEX transfers_contract ON transfers(contract_id, status);
CREATE INDEX messages_contract ON messages(contract_id);
CREATE INDEX outbound_message ON outbound(message_id, status);
CREATE INDEX outbound_recipient ON outbound(recipient_id, status);

-- Destruction progress, per object and per key: a destruction resumes from
-- these after a crash.
ALTER TABLE files ADD COLUMN deleted_at INTEGER;       -- every version deleted (object.deleted recorded)
ALTER TABLE files ADD COLUMN absent_at  INTEGER;       -- a Stat proved it gone (object.absent recorded)
ALTER TABLE recipients ADD COLUMN key_destroyed_at INTEGER; -- key_wrapped erased (key.destroyed recorded)
ALTER TABLE transfers ADD COLUMN ended_at INTEGER;     -- revoked, expired or destroyed at
ALTER TABLE contracts ADD COLUMN kek_destroyed_at INTEGER;

-- Downloads per recipient and file (the download limit counts these).
CREATE TABLE recipient_files (
	recipient_id INTEGER NOT NULL REFERENCES recipients(id),
	file_id      INTEGER NOT NULL REFERENCES files(id),
	downloads    INTEGER NOT NULL DEFAULT 0, -- served or being served
	first_at     INTEGER,                    -- first completed download
	last_at      INTEGER,
	PRIMARY KEY (recipient_id, file_id)
);

-- Destruction certificates (削除証明書), signed JSON as issued; the HTML is
-- rendered from it.
CREATE TABLE certificates (
	id          TEXT PRIMARY KEY,           -- <code>-<UTC time>
	contract_id INTEGER NOT NULL REFERENCES contracts(id),
	issued_at   INTEGER NOT NULL,
	sha256      TEXT NOT NULL,              -- of the JSON file
	json        BLOB NOT NULL
);
CREATE INDEX certificates_contract ON certificates(contract_id, issued_at);
