-- PostgreSQL mirror of sqlite/0012_browser_attempts.sql: passphrase
-- attempts made in the recipient's browser (package portal, browser.go).
ALTER TABLE recipients ADD COLUMN browser_attempts BIGINT NOT NULL DEFAULT 0;
