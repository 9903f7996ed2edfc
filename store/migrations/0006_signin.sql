-- Sign-in: one use per TOTP code.

-- The last TOTP time step (Unix time / 30 s) accepted for the account: a
-- code of that step or an earlier one is refused, so each code works once.
-- Set atomically with the check (UPDATE ... WHERE totp_last_step < step).
ALTER TABLE accounts ADD COLUMN totp_last_step INTEGER;
