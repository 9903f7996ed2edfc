-- Master key epochs. Every master key the gateway has used is one epoch,
-- named by its public age recipient (never the key itself). Rotation
-- (sealgate key rotate, and contract end) adds an epoch, re-wraps every
-- live secret to it and erases the previous key:
--   current   the key everything new is wrapped with (the newest epoch)
--   retiring  a rotation away from it is under way; its key still opens data
--   destroyed its key was erased; nothing in the database needs it
-- Data wrapped to an epoch is committed only while no newer epoch exists
-- (the fence in package masterkey).
CREATE TABLE master_epochs (
	epoch        INTEGER PRIMARY KEY,
	recipient    TEXT NOT NULL UNIQUE,
	state        TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	destroyed_at INTEGER
);
-- The process rotating the key, and when it last showed progress (another
-- process takes an unfinished rotation over once this is old).
ALTER TABLE master_epochs ADD COLUMN rotation_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE master_epochs ADD COLUMN rotation_heartbeat INTEGER;
