package database

import (
	"context"
	"fmt"
	"hash/fnv"
)

// maxLocks bounds the connections that hold advisory locks at once.
const maxLocks = 16

// TryLock takes the lock called name, shared by every process on the
// database, if nobody holds it, and returns the function that releases
// it. ok is false when another holder has it.
//
// On PostgreSQL it is a session advisory lock, held on a connection of
// its own for as long as the caller holds it: when the process dies its
// connection ends and the server releases the lock, so another instance
// takes it at its next try. On SQLite one process serves the database and
// TryLock always succeeds.
func (db *DB) TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error) {
	if db.dialect != Postgres {
		return func() {}, true, nil
	}
	conn, err := db.locks.Conn(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("failed to connect for the lock %s: %w", name, err)
	}
	key := lockKey(name)
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("failed to take the lock %s: %w", name, err)
	}
	if !ok {
		conn.Close()
		return nil, false, nil
	}
	return func() {
		var released bool
		if err := conn.QueryRowContext(context.Background(), `SELECT pg_advisory_unlock($1)`, key).Scan(&released); err != nil || !released {
			// The session may still hold the lock: discard the
			// connection rather than hand it back to the pool; the
			// server releases the lock when it closes.
			discardConn(conn)
			return
		}
		conn.Close()
	}, true, nil
}

// lockKey maps a lock's name to PostgreSQL's 64-bit advisory lock key.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("sealgate/" + name))
	return int64(h.Sum64())
}
