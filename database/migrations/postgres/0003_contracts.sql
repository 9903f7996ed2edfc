-- PostgreSQL mirror of sqlite/0003_contracts.sql: the contract register,
-- per-recipient per-file download counts, destruction progress and
-- certificates.

ALTER TABLE contracts ADD COLUMN counterparty      TEXT NOT NULL DEFAULT '';
ALTER TABLE contracts ADD COLUMN manager           TEXT NOT NULL DEFAULT '';
ALTER TABLE contracts ADD COLUMN starts_at         BIGINT;
ALTER TABLE contracts ADD COLUMN ends_at           BIGINT;
ALTER TABLE contracts ADD COLUMN link_expiry_ms    BIGINT;
ALTER TABLE contracts ADD COLUMN max_expiry_ms     BIGINT;
ALTER TABLE contracts ADD COLUMN download_limit    BIGINT;
ALTER TABLE contracts ADD COLUMN approval_required BIGINT NOT NULL DEFAULT 0;
ALTER TABLE contracts ADD COLUMN key_delivery      TEXT NOT NULL DEFAULT 'separate-mail';
ALTER TABLE contracts ADD COLUMN strip_tag         BIGINT NOT NULL DEFAULT 0;
ALTER TABLE contracts ADD COLUMN any_recipient     BIGINT NOT NULL DEFAULT 0;
ALTER TABLE contracts ADD COLUMN updated_at        BIGINT;
ALTER TABLE contracts ADD COLUMN ending_at         BIGINT;
ALTER TABLE contracts ADD COLUMN ended_at          BIGINT;
ALTER TABLE contracts ADD COLUMN end_operator      TEXT NOT NULL DEFAULT '';
ALTER TABLE contracts ADD COLUMN end_reason        TEXT NOT NULL DEFAULT '';
ALTER TABLE contracts ADD COLUMN destroy_owner     TEXT NOT NULL DEFAULT '';
ALTER TABLE contracts ADD COLUMN destroy_heartbeat BIGINT;

UPDATE contracts SET any_recipient = 1;

CREATE TABLE contract_allowed (
	contract_id BIGINT NOT NULL REFERENCES contracts(id),
	kind        TEXT NOT NULL,            -- domain (and its subdomains) | address
	value       TEXT NOT NULL,            -- lower-case
	PRIMARY KEY (contract_id, kind, value)
);

CREATE INDEX transfers_contract ON transfers(contract_id, status);
CREATE INDEX messages_contract ON messages(contract_id);
CREATE INDEX outbound_message ON outbound(message_id, status);
CREATE INDEX outbound_recipient ON outbound(recipient_id, status);

ALTER TABLE files ADD COLUMN deleted_at BIGINT;
ALTER TABLE files ADD COLUMN absent_at  BIGINT;
ALTER TABLE recipients ADD COLUMN key_destroyed_at BIGINT;
ALTER TABLE transfers ADD COLUMN ended_at BIGINT;
ALTER TABLE contracts ADD COLUMN kek_destroyed_at BIGINT;

CREATE TABLE recipient_files (
	recipient_id BIGINT NOT NULL REFERENCES recipients(id),
	file_id      BIGINT NOT NULL REFERENCES files(id),
	downloads    BIGINT NOT NULL DEFAULT 0,
	first_at     BIGINT,
	last_at      BIGINT,
	PRIMARY KEY (recipient_id, file_id)
);

CREATE TABLE certificates (
	id          TEXT PRIMARY KEY,           -- <code>-<UTC time>
	contract_id BIGINT NOT NULL REFERENCES contracts(id),
	issued_at   BIGINT NOT NULL,
	sha256      TEXT NOT NULL,              -- of the JSON file
	json        BYTEA NOT NULL
);
CREATE INDEX certificates_contract ON certificates(contract_id, issued_at);
