package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAnsweredWriteSurvivesPowerLoss simulates a power cut after each WAL
// fsync of the pipelined commit: the disk then holds the database file and
// the WAL as it was when that fsync began (a later write may not have
// reached it). Every Write answered by then must be in the database SQLite
// recovers from that image.
func TestAnsweredWriteSurvivesPowerLoss(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "meta.db")
	var mu sync.Mutex
	var images [][]byte // the WAL at the start of each fsync
	db, err := Open(ctx, path, Options{beforeWALSync: func(wal string) {
		b, err := os.ReadFile(wal)
		if err != nil {
			t.Error(err)
		}
		mu.Lock()
		images = append(images, b)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.walPath == "" {
		t.Fatal("the default durability is not pipelined")
	}
	// No checkpoint: the database file stays as it was, so that an image
	// is that file plus the WAL of one moment.
	if _, err := db.w.ExecContext(ctx, "PRAGMA wal_autocheckpoint=0"); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(ctx, func(tx *Tx) error {
		_, err := tx.Exec(`CREATE TABLE answered (id INTEGER PRIMARY KEY, pad BLOB)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 60
	answeredBy := map[int][]int{} // image index -> ids answered when it was the latest
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := w*each + i
				err := db.Write(ctx, func(tx *Tx) error {
					_, err := tx.Exec(`INSERT INTO answered(id, pad) VALUES (?, randomblob(600))`, id)
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				answeredBy[len(images)-1] = append(answeredBy[len(images)-1], id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	base, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for k, ids := range answeredBy {
		if k < 0 {
			t.Fatalf("%d writes answered before any fsync of the WAL", len(ids))
		}
		img := filepath.Join(t.TempDir(), "image.db")
		if err := os.WriteFile(img, base, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(img+"-wal", images[k], 0o600); err != nil {
			t.Fatal(err)
		}
		rdb, err := sql.Open("sqlite", "file:"+img)
		if err != nil {
			t.Fatal(err)
		}
		have := map[int]bool{}
		rows, err := rdb.Query(`SELECT id FROM answered`)
		if err != nil {
			t.Fatalf("image %d: %v", k, err)
		}
		for rows.Next() {
			var id int
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			have[id] = true
		}
		rows.Close()
		rdb.Close()
		var lost []int
		for _, id := range ids {
			if !have[id] {
				lost = append(lost, id)
			}
		}
		if len(lost) > 0 {
			t.Errorf("power cut after fsync %d: %d answered writes lost, e.g. %v", k, len(lost), lost[:min(5, len(lost))])
		}
		checked += len(ids)
	}
	if checked != writers*each {
		t.Fatalf("checked %d writes, want %d", checked, writers*each)
	}
	t.Log(fmt.Sprintf("%d answered writes checked against %d power-cut images", checked, len(answeredBy)))
}

// TestFailedWALSyncRefusesLaterWrites: once an fsync of the WAL fails, the
// batch it covered is not answered success, and neither is any later
// write (a second fsync could report success for pages already lost).
func TestFailedWALSyncRefusesLaterWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	var mu sync.Mutex
	breakSync := false
	var failures []string
	db, err := Open(ctx, path, Options{
		Failed: func(op string) { mu.Lock(); failures = append(failures, op); mu.Unlock() },
		beforeWALSync: func(wal string) {
			mu.Lock()
			defer mu.Unlock()
			if breakSync {
				// The syncer finds no WAL to sync: its fsync fails.
				if err := os.Rename(wal, wal+".away"); err != nil {
					t.Error(err)
				}
				breakSync = false
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	insert := func(tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO t(a) VALUES (1)`)
		return err
	}
	if err := db.Write(ctx, func(tx *Tx) error { _, err := tx.Exec(`CREATE TABLE t(a)`); return err }); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(ctx, insert); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	breakSync = true
	mu.Unlock()
	if err := db.Write(ctx, insert); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("write whose fsync failed: %v, want ErrNotDurable", err)
	}
	if err := os.Rename(path+"-wal.away", path+"-wal"); err != nil {
		t.Fatal(err)
	}
	// The WAL is back and would sync again: still refused.
	if err := db.Write(ctx, insert); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("write after a failed fsync: %v, want ErrNotDurable", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) != 1 || failures[0] != OpCommit {
		t.Fatalf("failures reported: %v, want one %q", failures, OpCommit)
	}
}

// TestWaitDurable: a reader can see a committed batch before its fsync;
// WaitDurable returns only once that fsync is done, and with the error
// once an fsync failed.
func TestWaitDurable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	hold := make(chan struct{})
	holding := make(chan struct{}, 1)
	var blocked atomic.Bool
	db, err := Open(ctx, path, Options{beforeWALSync: func(string) {
		if blocked.Load() {
			holding <- struct{}{}
			<-hold
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Runs before Close (deferred later): a failing check must not leave
	// the syncer held, or Close would wait for it forever.
	release := sync.OnceFunc(func() { blocked.Store(false); close(hold) })
	defer release()
	if err := db.WaitDurable(ctx); err != nil {
		t.Fatalf("idle database: %v", err)
	}
	if err := db.Write(ctx, func(tx *Tx) error { _, err := tx.Exec(`CREATE TABLE t(a)`); return err }); err != nil {
		t.Fatal(err)
	}
	blocked.Store(true)
	answered := make(chan error, 1)
	go func() {
		answered <- db.Write(ctx, func(tx *Tx) error { _, err := tx.Exec(`INSERT INTO t(a) VALUES (1)`); return err })
	}()
	<-holding // committed, its fsync not done
	var n int
	if err := db.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("reader before the fsync: %d rows, %v (the test expects the commit visible)", n, err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := db.WaitDurable(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDurable before the fsync of a committed batch: %v, want it to wait", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- db.WaitDurable(ctx) }()
	release()
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("WaitDurable after the fsync: %v", err)
	}
}
