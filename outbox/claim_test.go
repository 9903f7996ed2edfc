package outbox_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/testpg"
	"github.com/sealgate/sealgate/outbox"
)

// instances opens n handles on one PostgreSQL database: n instances of a
// fleet sharing the outbound queue.
func instances(t *testing.T, n int) []*database.DB {
	t.Helper()
	url := testpg.URL(t)
	var dbs []*database.DB
	for range n {
		db, err := database.Open(context.Background(), url, testdb.Options(database.Options{}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
	}
	return dbs
}

func queueNotices(t *testing.T, db *database.DB, n int, at time.Time) []int64 {
	t.Helper()
	err := db.Write(context.Background(), func(tx *database.Tx) error {
		for i := range n {
			if err := outbox.InsertNotice(context.Background(), tx, outbox.Notice{To: []string{fmt.Sprintf("r%d@corp.example", i)}, Body: []byte("wrapped"), At: at}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := outbox.Due(context.Background(), db.Read(), at, 10*n)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	return ids
}

// Three instances claiming at once from one queue take every row exactly
// once.
func TestClaimSharesTheQueue(t *testing.T) {
	dbs := instances(t, 3)
	ctx := context.Background()
	now := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	want := queueNotices(t, dbs[0], 60, now)
	if len(want) != 60 {
		t.Fatalf("queued %d rows, want 60", len(want))
	}
	var mu sync.Mutex
	claimed := map[int64]int{}
	total := 0
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for _, db := range dbs {
		for range 2 { // two claimers per instance, as workers race
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					rows, err := outbox.Claim(ctx, db, now, now.Add(5*time.Minute), 4)
					if err != nil {
						errs <- err
						return
					}
					if len(rows) == 0 {
						return
					}
					mu.Lock()
					for _, r := range rows {
						total++
						claimed[r.ID]++
						if !r.Lease.Equal(now.Add(5 * time.Minute)) {
							errs <- fmt.Errorf("row %d leased until %s", r.ID, r.Lease)
						}
					}
					over := total > len(want)
					mu.Unlock()
					if over {
						errs <- fmt.Errorf("more claims than rows: a row was handed out twice")
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, id := range want {
		if claimed[id] != 1 {
			t.Errorf("row %d claimed %d times", id, claimed[id])
		}
	}
	if len(claimed) != len(want) {
		t.Errorf("claimed %d rows, queued %d", len(claimed), len(want))
	}
}

// A row claimed by an instance that then dies falls due again when its
// lease ends; another instance takes it over, and the first one, should it
// come back, no longer holds it.
func TestClaimLeaseIsTakenOver(t *testing.T) {
	dbs := instances(t, 2)
	a, b := dbs[0], dbs[1]
	ctx := context.Background()
	now := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	ids := queueNotices(t, a, 1, now)
	lease := 5 * time.Minute

	ra, err := outbox.Claim(ctx, a, now, now.Add(lease), 10)
	if err != nil || len(ra) != 1 || ra[0].ID != ids[0] {
		t.Fatalf("a claimed %v, %v; want row %d", ra, err, ids[0])
	}
	mid := now.Add(lease / 2)
	if rb, err := outbox.Claim(ctx, b, mid, mid.Add(lease), 10); err != nil || len(rb) != 0 {
		t.Fatalf("b claimed %v, %v during a's lease", rb, err)
	}
	if ok, err := outbox.StillDue(ctx, a.Read(), ra[0], mid); err != nil || !ok {
		t.Fatalf("a's row not due for a during its lease: %v, %v", ok, err)
	}
	if next, err := outbox.NextDue(ctx, b.Read(), mid); err != nil || !next.Equal(now.Add(lease)) {
		t.Fatalf("next due %s, %v; want the lease's end %s", next, err, now.Add(lease))
	}

	end := now.Add(lease)
	rb, err := outbox.Claim(ctx, b, end, end.Add(lease), 10)
	if err != nil || len(rb) != 1 || rb[0].ID != ids[0] {
		t.Fatalf("b claimed %v, %v at the lease's end; want row %d", rb, err, ids[0])
	}
	if ok, err := outbox.StillDue(ctx, a.Read(), ra[0], end); err != nil || ok {
		t.Fatalf("a's expired claim still due: %v, %v", ok, err)
	}
	if ok, err := outbox.StillDue(ctx, a.Read(), ra[0], mid); err != nil || ok {
		t.Fatalf("a's claim taken over by b still due: %v, %v", ok, err)
	}
	if ok, err := outbox.StillDue(ctx, b.Read(), rb[0], end.Add(time.Second)); err != nil || !ok {
		t.Fatalf("b's row not due for b: %v, %v", ok, err)
	}

	// a comes back and defers its stale claim: the row stays b's.
	if err := a.Write(ctx, func(tx *database.Tx) error {
		return outbox.Defer(ctx, tx, ra[0], ra[0].Rcpts, end, "stale")
	}); err != nil {
		t.Fatal(err)
	}
	if ok, err := outbox.StillDue(ctx, b.Read(), rb[0], end.Add(time.Second)); err != nil || !ok {
		t.Fatalf("b's row not due for b after a's stale deferral: %v, %v", ok, err)
	}
	if rows, err := outbox.Claim(ctx, a, end.Add(time.Second), end.Add(lease), 10); err != nil || len(rows) != 0 {
		t.Fatalf("a claimed %v, %v after its stale deferral", rows, err)
	}

	// b delivers it: nobody claims it again.
	if err := b.Write(ctx, func(tx *database.Tx) error { return outbox.Delivered(ctx, tx, rb[0], end) }); err != nil {
		t.Fatal(err)
	}
	later := end.Add(10 * lease)
	for _, db := range dbs {
		if rows, err := outbox.Claim(ctx, db, later, later.Add(lease), 10); err != nil || len(rows) != 0 {
			t.Fatalf("claimed %v, %v after delivery", rows, err)
		}
	}
}

// On SQLite one process owns the queue: Claim reads the due rows as Due
// does and leases nothing.
func TestClaimOnSQLiteIsDue(t *testing.T) {
	db, err := database.Open(context.Background(), filepath.Join(t.TempDir(), "db"), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	queueNotices(t, db, 3, time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC))
	checkSQLiteClaim(t, db)
}

func checkSQLiteClaim(t *testing.T, db *database.DB) {
	t.Helper()
	ctx := context.Background()
	at := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	due, err := outbox.Due(ctx, db.Read(), at, 10)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second claim sees the same rows: nothing was leased
		rows, err := outbox.Claim(ctx, db, at, at.Add(time.Minute), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 3 || !slices.EqualFunc(rows, due, func(a, b outbox.Row) bool { return a.ID == b.ID && a.Lease.IsZero() }) {
			t.Fatalf("claimed %v, want %v unleased", rows, due)
		}
	}
}
