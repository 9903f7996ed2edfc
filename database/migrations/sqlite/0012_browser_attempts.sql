-- Passphrase attempts made in the recipient's browser (the download page's
-- in-browser decryption): each request of key.age by the page is counted
-- in failed_attempts, since the server cannot see whether the passphrase
-- typed there was right, and in browser_attempts until a complete
-- download of file.age by the page gives it back (package portal,
-- browser.go). browser_attempts is what may be given back, so that a
-- wrong passphrase typed on the server path never is.
ALTER TABLE recipients ADD COLUMN browser_attempts INTEGER NOT NULL DEFAULT 0;
