package audit

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/database"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestCheckpointShape(t *testing.T) {
	f := newFixture(t)
	empty := f.checkpoint()
	if empty.Size != 0 {
		t.Fatalf("empty ledger checkpoint size %d", empty.Size)
	}
	f.appendN(7, event)
	cp := f.checkpoint()
	opened, err := OpenCheckpoint(cp.Note, f.vkey)
	if err != nil {
		t.Fatal(err)
	}
	root, err := tlog.TreeHash(8, txHashReader{f.ctx, f.db.Read()})
	if err != nil {
		t.Fatal(err)
	}
	body := testOrigin + "\n8\n" + root.String() + "\n\n— sealgate.test "
	if !strings.HasPrefix(string(cp.Note), body) || opened.Size != 8 || opened.Root != root {
		t.Fatalf("checkpoint note:\n%s", cp.Note)
	}
	latest, err := f.l.LatestCheckpoint(f.ctx, f.db.Read())
	if err != nil || !bytes.Equal(latest.Note, cp.Note) {
		t.Fatal(latest, err)
	}
	at, err := f.l.CheckpointAt(f.ctx, f.db.Read(), 0)
	if err != nil || !bytes.Equal(at.Note, empty.Note) {
		t.Fatal(at, err)
	}
}

func TestConsistencyAcrossCheckpoints(t *testing.T) {
	f := newFixture(t)
	f.appendN(20, event)
	old := f.checkpoint()
	f.appendN(33, event)
	cur := f.checkpoint()

	proof, err := f.l.ProveConsistency(f.ctx, f.db.Read(), old, cur)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckConsistency(f.vkey, old.Note, cur.Note, proof); err != nil {
		t.Fatal(err)
	}
	if err := CheckConsistency(f.vkey, cur.Note, old.Note, proof); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("reversed: %v", err)
	}

	// A forged older checkpoint: same body, signed by another key.
	skey, _, _ := GenerateKey(rand.Reader, "sealgate.test")
	other, _ := NewSigner(skey)
	body := checkpointBody(testOrigin, old.Size, old.Root)
	forged, _ := note.Sign(&note.Note{Text: body}, other)
	if err := CheckConsistency(f.vkey, forged, cur.Note, proof); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("forged older checkpoint (other key): %v", err)
	}
	// A forged older checkpoint signed with the right key (the key holder
	// lying about history): inconsistent.
	bad := old.Root
	bad[0] ^= 0xff
	lie, _ := note.Sign(&note.Note{Text: checkpointBody(testOrigin, old.Size, bad)}, f.signer)
	if err := CheckConsistency(f.vkey, lie, cur.Note, proof); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("forged older checkpoint (same key): %v", err)
	}
	// Its note text altered: bad signature.
	altered := bytes.Replace(old.Note, []byte("\n20\n"), []byte("\n19\n"), 1)
	if err := CheckConsistency(f.vkey, altered, cur.Note, proof); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("altered older checkpoint: %v", err)
	}

	// In a bundle: exported with the old checkpoint as previous.
	b := f.export(ExportOptions{Contract: "ACME-2026", Previous: old.Note})
	rep, err := f.verifyBundle(b, VerifyOptions{Previous: old.Note})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Previous) != 2 || rep.Previous[0].Size != 20 {
		t.Fatalf("report %+v", rep)
	}
	// The bundle's previous checkpoint replaced with the lie.
	tb := parseBundle(t, b)
	tb.Previous.Checkpoint = string(lie)
	if _, err := f.verifyBundle(tb.bytes(t), VerifyOptions{}); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("bundle with a lying previous checkpoint: %v", err)
	}
	// The auditor's own copy disagrees with the bundle's previous.
	if _, err := f.verifyBundle(b, VerifyOptions{Previous: lie}); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("auditor's checkpoint differs: %v", err)
	}
	// A selection without a proof for the auditor's checkpoint says so.
	plain := f.export(ExportOptions{Contract: "ACME-2026"})
	if _, err := f.verifyBundle(plain, VerifyOptions{Previous: old.Note}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("selection without consistency proof: %v", err)
	}
	// A complete bundle answers any previous checkpoint by itself.
	full := f.export(ExportOptions{})
	if _, err := f.verifyBundle(full, VerifyOptions{Previous: old.Note}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.verifyBundle(full, VerifyOptions{Previous: lie}); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("complete bundle vs lying checkpoint: %v", err)
	}
	// VerifyDB against an external checkpoint.
	if _, err := f.verifyDB(VerifyOptions{Previous: old.Note}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.verifyDB(VerifyOptions{Previous: lie}); !errors.Is(err, ErrTampered) {
		t.Fatalf("VerifyDB vs lying checkpoint: %v", err)
	}
}

func TestVerifyDBRefusesOtherKey(t *testing.T) {
	f := newFixture(t)
	f.appendN(5, event)
	f.checkpoint()
	_, vkey, _ := GenerateKey(rand.Reader, "sealgate.test")
	if _, err := VerifyDB(f.ctx, f.db, vkey, VerifyOptions{}, nil); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("VerifyDB with another gateway's key: %v", err)
	}
}

func TestPublishCheckpoints(t *testing.T) {
	ms := newMemStore()
	st := &lockingStore{memStore: ms, locked: map[string]time.Time{}}
	f := newFixture(t, func(o *Options) { o.Store = st; o.Retention = 24 * time.Hour })
	f.appendN(3, event)
	cp := f.checkpoint()
	if got, ok := ms.get("ledger/checkpoints/3.note"); !ok || !bytes.Equal(got, cp.Note) {
		t.Fatalf("3.note = %q", got)
	}
	if got, _ := ms.get(LatestCheckpointKey); !bytes.Equal(got, cp.Note) {
		t.Fatalf("latest.note = %q", got)
	}
	if _, ok := st.locked["ledger/checkpoints/3.note"]; !ok {
		t.Fatal("numbered checkpoint not written with Object Lock")
	}
	if _, ok := st.locked[LatestCheckpointKey]; ok {
		t.Fatal("latest.note must stay overwritable")
	}

	// Storage down: the checkpoint is still signed and recorded, the error
	// says publishing failed, and the next Publish catches up.
	ms.mu.Lock()
	ms.fail = true
	ms.mu.Unlock()
	f.appendN(2, event)
	cp2, err := f.l.Checkpoint(f.ctx, f.db, f.signer)
	if !errors.Is(err, ErrPublish) || cp2 == nil || cp2.Size != 6 {
		t.Fatalf("checkpoint with storage down: %v, %v", cp2, err)
	}
	ms.mu.Lock()
	ms.fail = false
	ms.mu.Unlock()
	if err := f.l.Publish(f.ctx, f.db); err != nil {
		t.Fatal(err)
	}
	if got, _ := ms.get("ledger/checkpoints/6.note"); !bytes.Equal(got, cp2.Note) {
		t.Fatal("6.note not published on retry")
	}
	if got, _ := ms.get(LatestCheckpointKey); !bytes.Equal(got, cp2.Note) {
		t.Fatal("latest.note not updated on retry")
	}
	// latest.note never goes backwards (another instance published newer).
	newer := append([]byte(nil), cp2.Note...)
	newer = bytes.Replace(newer, []byte("\n6\n"), []byte("\n99\n"), 1)
	ms.Put(f.ctx, LatestCheckpointKey, bytes.NewReader(newer))
	f.appendN(1, event)
	f.checkpoint()
	if got, _ := ms.get(LatestCheckpointKey); !bytes.Equal(got, newer) {
		t.Fatal("latest.note was moved backwards")
	}
}

// TestCheckpointer: the count policy signs at the 10th event, the time
// policy once the interval has passed with something appended, and an
// interval with nothing new signs nothing. The test calls RunDue as the
// scheduler would, at the times it would.
func TestCheckpointer(t *testing.T) {
	ms := newMemStore()
	f := newFixture(t, func(o *Options) { o.Store = ms })
	var results []*SignedCheckpoint
	cpr := f.l.NewCheckpointer(f.db, f.signer, CheckpointerOptions{
		Every:    10,
		Interval: 5 * time.Minute,
		OnCheckpoint: func(cp *SignedCheckpoint, err error) {
			if err != nil {
				t.Errorf("checkpoint: %v", err)
			}
			results = append(results, cp)
		},
	})
	var pending []int64
	cpr.evaluated = func(p int64, due bool) { pending = append(pending, p) }
	run := func(what string, now time.Time, wantPending int64, wantSize int64) time.Time {
		t.Helper()
		results, pending = nil, nil
		next := cpr.RunDue(f.ctx, now)
		if len(pending) != 1 || pending[0] != wantPending {
			t.Fatalf("%s: looked at %v pending entries, want %d", what, pending, wantPending)
		}
		switch {
		case wantSize < 0 && len(results) != 0:
			t.Fatalf("%s: unexpected checkpoint %v", what, results[0])
		case wantSize >= 0 && (len(results) != 1 || results[0] == nil || results[0].Size != wantSize):
			t.Fatalf("%s: checkpoints %v, want one of size %d", what, results, wantSize)
		}
		return next
	}

	start := f.clock.Now()
	if next := run("start", start, 0, -1); !next.Equal(start.Add(5 * time.Minute)) {
		t.Fatalf("next interval ends at %v, started %v", next, start)
	}
	// Count policy: 9 events are not enough, the 10th triggers.
	f.appendN(9, event)
	run("9 events", f.clock.Now(), 9, -1)
	f.appendN(1, event)
	run("10 events", f.clock.Now(), 10, 10)
	// Time policy: 3 events, then the interval elapses.
	f.appendN(3, event)
	run("3 events", f.clock.Now(), 3, -1)
	f.clock.Set(f.clock.Now().Add(5 * time.Minute))
	tick := f.clock.Now()
	if next := run("interval", tick, 3, 14); !next.Equal(tick.Add(5 * time.Minute)) { // 10 + the first checkpoint's event + 3
		t.Fatalf("next interval ends at %v, want %v", next, tick.Add(5*time.Minute))
	}
	// An interval with nothing new (only the checkpoint's own event)
	// signs nothing.
	f.clock.Set(f.clock.Now().Add(5 * time.Minute))
	run("idle interval", f.clock.Now(), 0, -1)

	// Published under ledger/.
	for _, key := range []string{"ledger/checkpoints/10.note", "ledger/checkpoints/14.note", LatestCheckpointKey} {
		if _, ok := ms.get(key); !ok {
			t.Errorf("%s not published", key)
		}
	}
	for _, key := range ms.puts {
		if !strings.HasPrefix(key, "ledger/") {
			t.Errorf("wrote outside ledger/: %s", key)
		}
	}

	if _, err := f.verifyDB(VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// The Checkpointer is woken every Every/16 appends committed through its
// Ledger (one wake is a query of the ledger's size, and on PostgreSQL its
// job's lock), not at every commit; with a small Every, at every commit.
func TestCheckpointerWakeStep(t *testing.T) {
	for _, c := range []struct {
		every, appends int64
		wakes          int
	}{
		{every: 1600, appends: 99, wakes: 0},
		{every: 1600, appends: 100, wakes: 1},
		{every: 1600, appends: 350, wakes: 3},
		{every: 10, appends: 5, wakes: 5},
		{every: 0, appends: 50, wakes: 0}, // no count policy: the interval's timer
	} {
		f := newFixture(t)
		cp := f.l.NewCheckpointer(f.db, f.signer, CheckpointerOptions{Every: c.every})
		wakes := 0
		for i := range c.appends {
			if err := f.db.Write(f.ctx, func(tx *database.Tx) error {
				_, err := f.l.Append(f.ctx, tx, event(int(i)))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-cp.Appended():
				wakes++
			default:
			}
		}
		if wakes != c.wakes {
			t.Errorf("every %d, %d appends one per commit: woken %d times, want %d", c.every, c.appends, wakes, c.wakes)
		}
	}
}
