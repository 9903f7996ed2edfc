package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

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

// fakeTicker is driven by the test.
type fakeTicker struct {
	c       chan time.Time
	d       time.Duration
	stopped chan struct{}
}

func TestCheckpointer(t *testing.T) {
	ms := newMemStore()
	f := newFixture(t, func(o *Options) { o.Store = ms })
	ft := &fakeTicker{c: make(chan time.Time), stopped: make(chan struct{})}
	results := make(chan *SignedCheckpoint, 16)
	cpr := f.l.NewCheckpointer(f.db, f.signer, CheckpointerOptions{
		Every:    10,
		Interval: 5 * time.Minute,
		NewTicker: func(d time.Duration) (<-chan time.Time, func()) {
			ft.d = d
			return ft.c, func() { close(ft.stopped) }
		},
		OnCheckpoint: func(cp *SignedCheckpoint, err error) {
			if err != nil {
				t.Errorf("checkpoint: %v", err)
			}
			results <- cp
		},
	})
	type decision struct {
		pending int64
		due     bool
	}
	decisions := make(chan decision, 64)
	cpr.evaluated = func(p int64, due bool) { decisions <- decision{p, due} }
	// waitDecision waits until the checkpointer has looked at the ledger
	// with the given number of pending entries.
	waitDecision := func(pending int64, due bool) {
		t.Helper()
		for {
			select {
			case d := <-decisions:
				switch {
				case d.pending != pending:
				case d.due == due:
					return
				case d.due: // a checkpoint where none was due
					t.Fatalf("%d pending: a checkpoint was due", pending)
				} // else a stale look (an append's wake-up) before the tick: keep waiting
			case <-time.After(10 * time.Second):
				t.Fatalf("checkpointer never saw %d pending entries", pending)
			}
		}
	}
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error)
	go func() { done <- cpr.Run(ctx) }()
	waitDecision(0, false)

	next := func(what string) *SignedCheckpoint {
		t.Helper()
		select {
		case cp := <-results:
			if cp == nil {
				t.Fatalf("%s: no checkpoint", what)
			}
			return cp
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no checkpoint signed", what)
		}
		return nil
	}
	none := func(what string) {
		t.Helper()
		select {
		case cp := <-results:
			t.Fatalf("%s: unexpected checkpoint %v", what, cp)
		default:
		}
	}

	// Count policy: 9 events are not enough, the 10th triggers.
	f.appendN(9, event)
	waitDecision(9, false)
	none("9 events")
	f.appendN(1, event)
	waitDecision(10, true)
	cp := next("10 events")
	if cp.Size != 10 {
		t.Fatalf("checkpoint size %d", cp.Size)
	}
	// Time policy: 3 events, then the interval elapses (fake clock).
	f.appendN(3, event)
	waitDecision(3, false)
	f.clock.Set(f.clock.Now().Add(5 * time.Minute))
	ft.c <- f.clock.Now()
	waitDecision(3, true)
	cp = next("interval")
	if cp.Size != 14 || ft.d != 5*time.Minute { // 10 + the first checkpoint's event + 3
		t.Fatalf("checkpoint size %d, interval %v", cp.Size, ft.d)
	}
	// A tick with nothing new (only the checkpoint's own event) signs
	// nothing.
	ft.c <- f.clock.Now()
	waitDecision(0, false)
	none("idle tick")

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

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-ft.stopped
	if _, err := f.verifyDB(VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}
