package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"golang.org/x/mod/sumdb/note"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/testpg"
)

// fleetInstance is one instance of a fleet on one PostgreSQL database:
// its own database.DB (its own writer goroutine and connections) and its
// own Ledger, as `sealgate serve` has on each machine.
type fleetInstance struct {
	db *database.DB
	l  *Ledger
	// failures counts what the DB told Options.Failed: statements and
	// commits that failed, serialization failures among them.
	failures atomic.Int64
}

// newFleet opens n instances on the PostgreSQL database at url, sharing
// the clock and the checkpoint store (the bucket).
func newFleet(t *testing.T, url string, n int, clock *fakeClock, store *memStore) []*fleetInstance {
	t.Helper()
	return newFleetWith(t, url, n, clock, store, testdb.Options)
}

// newFleetWith is newFleet with the database options made by opts.
func newFleetWith(t *testing.T, url string, n int, clock *fakeClock, store *memStore, opts func(database.Options) database.Options) []*fleetInstance {
	t.Helper()
	var fleet []*fleetInstance
	for range n {
		in := &fleetInstance{}
		db, err := database.Open(context.Background(), url, opts(database.Options{Failed: func(string) { in.failures.Add(1) }}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		l, err := New(Options{Origin: testOrigin, Now: clock.Now, Store: store})
		if err != nil {
			t.Fatal(err)
		}
		in.db, in.l = db, l
		fleet = append(fleet, in)
	}
	return fleet
}

// fleetEvent is event i with an identity that finds it in the ledger:
// its message.
func fleetEvent(i int) Event {
	ev := event(i)
	ev.Message = fleetMessage(i)
	return ev
}

func fleetMessage(i int) string { return fmt.Sprintf("fleet-%06d", i) }

// appendAll appends events from every instance: writers goroutines per
// instance, each its own db.Write per event, until stop returns true.
// Events are numbered from first. It returns the events whose append
// succeeded (with their index) and those whose append failed (with their
// errors), by event number.
func appendAll(t *testing.T, fleet []*fleetInstance, first, writers int, stop func(done int64) bool) (ok map[int]int64, failed map[int]error) {
	ctx := context.Background()
	var mu sync.Mutex
	ok, failed = map[int]int64{}, map[int]error{}
	var next, done atomic.Int64
	next.Store(int64(first))
	var wg sync.WaitGroup
	for _, in := range fleet {
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop(done.Load()) {
					i := int(next.Add(1) - 1)
					var idx int64
					err := in.db.Write(ctx, func(tx *database.Tx) error {
						var err error
						idx, err = in.l.Append(ctx, tx, fleetEvent(i))
						return err
					})
					mu.Lock()
					if err != nil {
						failed[i] = err
					} else {
						ok[i] = idx
						done.Add(1)
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return ok, failed
}

// ledgerMessages returns the message of every record, by index.
func ledgerMessages(t *testing.T, in *fleetInstance) map[int64]string {
	t.Helper()
	out := map[int64]string{}
	n, err := in.l.Size(context.Background(), in.db.Read())
	if err != nil {
		t.Fatal(err)
	}
	err = in.l.Records(context.Background(), in.db.Read(), 0, n, func(idx int64, data []byte) error {
		ev, err := ParseRecord(data)
		if err != nil {
			return err
		}
		out[idx] = ev.Message
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFleetOneLedger: three instances on one PostgreSQL, 8 writers each,
// appending at the same time, with checkpoints signed by two of them in
// between: the ledger is one tree holding exactly the appends made, each
// once, at the index its append returned; it verifies (the code of
// `sealgate audit verify-db`) against the checkpoint instance A published
// as the previous one of instance B's; and no write of any instance failed,
// not even once before a retry: the writers' lock serializes the fleet's
// transactions (without it, the instances' transactions would fork the
// tree, which the triggers refuse: appends would fail).
func TestFleetOneLedger(t *testing.T) {
	url := testpg.URL(t)
	ctx := context.Background()
	clock := newClock()
	store := newMemStore()
	fleet := newFleet(t, url, 3, clock, store)
	signer, vkey := fleetSigner(t)

	// The appends run in two rounds; during the second, instances A and
	// B sign checkpoints at the same time as each other and the appends.
	const round = 1200
	ok, failed := appendAll(t, fleet, 0, 8, func(done int64) bool { return done >= round })
	type signed struct {
		cp  *SignedCheckpoint
		err error
	}
	cps := make(chan signed, 2)
	for _, in := range fleet[:2] {
		go func() {
			cp, err := in.l.Checkpoint(ctx, in.db, signer)
			cps <- signed{cp, err}
		}()
	}
	ok2, failed2 := appendAll(t, fleet, 10*round, 8, func(done int64) bool { return done >= round })
	var sizes []int64
	for range 2 {
		s := <-cps
		if s.err != nil {
			t.Fatal(s.err)
		}
		sizes = append(sizes, s.cp.Size)
	}
	cpC, err := fleet[2].l.Checkpoint(ctx, fleet[2].db, signer)
	if err != nil {
		t.Fatal(err)
	}
	for i, idx := range ok2 {
		ok[i] = idx
	}
	for i, err := range failed2 {
		failed[i] = err
	}
	for i, err := range failed {
		t.Errorf("append of event %d: %v", i, err)
	}
	if len(ok) < 2*round {
		t.Fatalf("%d appends", len(ok))
	}
	if sizes[0] == sizes[1] {
		t.Fatalf("A and B both signed a checkpoint of size %d", sizes[0])
	}
	// What A published is accepted as the previous checkpoint of the
	// latest one, which C published.
	cpA := min(sizes[0], sizes[1])
	published, okA := store.get(CheckpointKey(cpA))
	if !okA {
		t.Fatalf("checkpoint %d not published", cpA)
	}

	// One tree: the appends and the two checkpoints' events, each once,
	// at the index its append returned.
	msgs := ledgerMessages(t, fleet[2])
	if want := len(ok) + 3; len(msgs) != want {
		t.Fatalf("%d records, want %d appends + 3 checkpoint events", len(msgs), len(ok))
	}
	for i, idx := range ok {
		if msgs[idx] != fleetMessage(i) {
			t.Fatalf("event %d: append returned index %d, which holds %q", i, idx, msgs[idx])
		}
	}

	// verify-db with the checkpoint published first as the previous one
	// and the bucket's latest (C's) as a checkpoint held outside the
	// database.
	latest, err := PublishedCheckpoint(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyDB(ctx, fleet[2].db, vkey, VerifyOptions{Previous: published, Checkpoints: [][]byte{latest}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Size != int64(len(ok)+3) || rep.Checkpoint.Size != cpC.Size || rep.Checkpoints != 3 {
		t.Fatalf("verified %d entries against the checkpoint of size %d (%d checkpoints); want %d, %d, 3",
			rep.Size, rep.Checkpoint.Size, rep.Checkpoints, len(ok)+3, cpC.Size)
	}
	if len(rep.Previous) == 0 || rep.Previous[0].Size != cpA {
		t.Fatalf("the checkpoint of size %d not verified as a previous one: %+v", cpA, rep.Previous)
	}
	for i, in := range fleet {
		if n := in.failures.Load(); n != 0 {
			t.Errorf("instance %d: %d failed statements or commits (serialization failures retried)", i, n)
		}
	}
	t.Logf("%d appends from 3 instances, checkpoints %d, %d, %d", len(ok), sizes[0], sizes[1], cpC.Size)
}

// TestFleetHolderKilled: while three instances append, the connection
// that holds the writers' lock — mid-batch — is terminated by the server
// (pg_terminate_backend), three times. The other instances go on (the
// server frees the lock with the session), the instance that lost its
// connection fails that batch with a transient error, or runs it again
// if its COMMIT was not sent (see checkFleetLedger), and goes on with a
// new connection; every append that succeeded is in the ledger once, an
// append that failed at most once (its COMMIT may have reached the server
// before the connection ended), and the ledger verifies.
func TestFleetHolderKilled(t *testing.T) {
	url := testpg.URL(t)
	// Every batch runs once, whatever SEALGATE_TEST_RERUN says: the test
	// knows that a connection was cut mid-batch from what Options.Failed
	// is told, and it is not told of a run the knob discards.
	fleet := newFleetWith(t, url, 3, newClock(), newMemStore(), func(o database.Options) database.Options { return o })
	admin, err := database.OpenPlain(url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()

	const kills, per = 3, 300
	var killed []int
	var killErr error
	killing := make(chan struct{})
	go func() {
		defer close(killing)
		deadline := time.Now().Add(time.Minute)
		for len(killed) < kills && time.Now().Before(deadline) {
			// The advisory lock granted now is the writers' lock: the
			// test takes no other (migrations released theirs).
			var pid int
			err := admin.QueryRow(`SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
				WHERE l.locktype = 'advisory' AND l.granted AND a.state IN ('idle in transaction', 'active')
				AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1`).Scan(&pid)
			if err != nil {
				time.Sleep(time.Millisecond)
				continue
			}
			var done bool
			if killErr = admin.QueryRow(`SELECT pg_terminate_backend(?)`, pid).Scan(&done); killErr != nil {
				return
			}
			if done {
				killed = append(killed, pid)
				time.Sleep(200 * time.Millisecond) // let the fleet make progress before the next kill
			}
		}
	}()
	ok, failed := appendAll(t, fleet, 0, 8, afterDone(killing, per))
	if killErr != nil {
		t.Fatal(killErr)
	}
	if len(killed) != kills {
		t.Fatalf("%d holders killed, want %d", len(killed), kills)
	}
	committed := checkFleetLedger(t, fleet, fleet[1], fleet[2], ok, failed)
	t.Logf("%d holders killed; %d appends succeeded, %d failed (%d of them committed)", len(killed), len(ok), len(failed), committed)
}

// afterDone is a stop function for appendAll: it stops once per appends
// have succeeded after ch was closed.
func afterDone(ch <-chan struct{}, per int64) func(done int64) bool {
	var base atomic.Int64
	base.Store(-1)
	return func(done int64) bool {
		select {
		case <-ch:
		default:
			return false
		}
		base.CompareAndSwap(-1, done)
		return done >= base.Load()+per
	}
}

// checkFleetLedger checks the ledger after appends some of which failed
// when a connection was cut: every failure is transient, and a cut was
// seen — an append failed, or a statement of the fleet's instances did (a
// batch of several functions whose connection is cut before its COMMIT,
// in the run without savepoints, runs again on a new connection: its
// appends do not fail); every append that succeeded is in the ledger
// once, at the index it returned; one that failed at most once (its
// COMMIT may have reached the server before the connection ended), and
// nothing else is; signer signs a checkpoint and verifier verifies the
// ledger (verify-db's code). It returns how many failed appends were
// committed.
func checkFleetLedger(t *testing.T, fleet []*fleetInstance, signer, verifier *fleetInstance, ok map[int]int64, failed map[int]error) int {
	t.Helper()
	ctx := context.Background()
	var failures int64
	for _, in := range fleet {
		failures += in.failures.Load()
	}
	if len(failed) == 0 && failures == 0 {
		t.Fatal("no append and no statement failed: no connection was cut mid-batch")
	}
	for i, err := range failed {
		if !database.IsTransient(err) {
			t.Errorf("append of event %d failed with a permanent error: %v", i, err)
		}
	}
	msgs := ledgerMessages(t, verifier)
	where := map[string]int64{}
	for idx, m := range msgs {
		if prev, dup := where[m]; dup {
			t.Fatalf("%s recorded twice, at %d and %d", m, prev, idx)
		}
		where[m] = idx
	}
	for i, idx := range ok {
		if msgs[idx] != fleetMessage(i) {
			t.Fatalf("event %d: append returned index %d, which holds %q", i, idx, msgs[idx])
		}
	}
	committed := 0
	for i := range failed {
		if _, in := where[fleetMessage(i)]; in {
			committed++
		}
	}
	if len(msgs) != len(ok)+committed {
		t.Fatalf("%d records: %d appends succeeded, %d of the failed ones committed", len(msgs), len(ok), committed)
	}
	key, vkey := fleetSigner(t)
	if _, err := signer.l.Checkpoint(ctx, signer.db, key); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyDB(ctx, verifier.db, vkey, VerifyOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Size != int64(len(msgs)+1) {
		t.Fatalf("verified %d entries, want %d", rep.Size, len(msgs)+1)
	}
	return committed
}

// TestFleetPostgresRestart: PostgreSQL crashes and restarts (pg_ctl stop
// -m immediate, start) while three instances append. The appends in
// flight fail with transient errors (the gateway answers 4xx), nothing of
// a failed batch is half-committed, the instances go on on new
// connections, and the ledger verifies. The server is the test's own:
// the package's shared one is not restarted under other tests.
func TestFleetPostgresRestart(t *testing.T) {
	ctx := context.Background()
	srv, err := testpg.Start(ctx)
	if errors.Is(err, testpg.ErrNotInstalled) && !testpg.Enabled() && os.Getenv("SEALGATE_REQUIRE_TOOLS") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	url, err := srv.CreateDatabase(ctx, "restart")
	if err != nil {
		t.Fatal(err)
	}
	fleet := newFleet(t, url, 3, newClock(), newMemStore())
	const per = 300
	restarted := make(chan struct{})
	var restartErr error
	var once sync.Once
	after := afterDone(restarted, per)
	ok, failed := appendAll(t, fleet, 0, 8, func(done int64) bool {
		if done >= per {
			once.Do(func() {
				go func() {
					defer close(restarted)
					restartErr = srv.Restart(ctx)
				}()
			})
		}
		return after(done)
	})
	if restartErr != nil {
		t.Fatal(restartErr)
	}
	// Verified from a process started after the restart, as an auditor's
	// `sealgate audit verify-db` would be.
	verifier := newFleet(t, url, 1, newClock(), newMemStore())[0]
	committed := checkFleetLedger(t, fleet, fleet[0], verifier, ok, failed)
	t.Logf("%d appends succeeded, %d failed (%d of them committed)", len(ok), len(failed), committed)
}

// fleetSigner returns the ledger key// fleetSigner returns the ledger key every instance is given.
func fleetSigner(t *testing.T) (note.Signer, string) {
	t.Helper()
	skey, vkey, err := GenerateKey(strings.NewReader(strings.Repeat("k", 64)), "sealgate.test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}
