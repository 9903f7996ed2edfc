package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sealgate/sealgate/witness/cosig"
)

var cosignTime = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)

// fakeWitnesses cosigns what it is given with its keys, except for the
// witnesses marked down (the witness's own checks are tested in package
// witness, the protocol in package witness/client). It checks the proof
// the ledger offers from the size each witness cosigned last.
type fakeWitnesses struct {
	t       *testing.T
	signers []*cosig.Signer
	keys    []string
	mu      sync.Mutex
	down    map[int]bool
	roots   map[int64]tlog.Hash // sizes the witnesses saw
	reqs    []CosignRequest
}

func newFakeWitnesses(t *testing.T, names ...string) *fakeWitnesses {
	w := &fakeWitnesses{t: t, down: map[int]bool{}, roots: map[int64]tlog.Hash{}}
	for i, name := range names {
		skey, vkey, err := cosig.GenerateKey(rand.NewChaCha8([32]byte{byte(40 + i)}), name)
		if err != nil {
			t.Fatal(err)
		}
		s, err := cosig.NewSigner(skey, func() time.Time { return cosignTime })
		if err != nil {
			t.Fatal(err)
		}
		w.signers = append(w.signers, s)
		w.keys = append(w.keys, vkey)
	}
	return w
}

func (w *fakeWitnesses) setDown(i int, down bool) {
	w.mu.Lock()
	w.down[i] = down
	w.mu.Unlock()
}

func (w *fakeWitnesses) Cosign(ctx context.Context, req CosignRequest) []cosig.Cosigned {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reqs = append(w.reqs, req)
	_, err := note.Open(req.Note, nil)
	var unv *note.UnverifiedNoteError
	if !errors.As(err, &unv) {
		w.t.Errorf("request note: %v", err)
		return nil
	}
	text := unv.Note.Text
	cp := req.Checkpoint
	var out []cosig.Cosigned
	for i, s := range w.signers {
		id := cosig.KeyName(s.Name(), s.KeyHash())
		last := req.LastCosigned[id]
		if w.down[i] || last >= cp.Size {
			continue
		}
		proof, err := req.Prove(ctx, last)
		if err != nil {
			w.t.Errorf("proof from %d: %v", last, err)
			continue
		}
		if last > 0 {
			if err := tlog.CheckTree(proof, cp.Size, cp.Root, last, w.roots[last]); err != nil {
				w.t.Errorf("the proof from %d to %d does not verify: %v", last, cp.Size, err)
			}
		}
		signed, err := note.Sign(&note.Note{Text: text}, s)
		if err != nil {
			w.t.Fatal(err)
		}
		out = append(out, cosig.Cosigned{Witness: id, Name: s.Name(), Time: cosignTime, Line: string(signed[len(text)+1:])})
	}
	w.roots[cp.Size] = cp.Root
	return out
}

func (w *fakeWitnesses) requests() []CosignRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]CosignRequest(nil), w.reqs...)
}

func cosignedFixture(t *testing.T, w *fakeWitnesses, st *memStore) *fixture {
	return newFixture(t, func(o *Options) {
		o.Cosigner = w
		if st != nil {
			o.Store = st
		}
	})
}

// TestCosignedCheckpoint: a checkpoint returned, stored, proven and
// published carries the witnesses' cosignatures after the gateway's
// signature, and still verifies with the gateway's key alone; the next
// checkpoint is sent with a proof from the last cosigned size; a witness
// that was down cosigns the latest checkpoint at the checkpointer's next
// interval, and latest.note is published again with it.
func TestCosignedCheckpoint(t *testing.T) {
	w := newFakeWitnesses(t, "w1.example", "w2.example")
	st := newMemStore()
	f := cosignedFixture(t, w, st)
	both := WitnessPolicy{Keys: w.keys, Quorum: 2}
	f.appendN(10, event)
	cp := f.checkpoint()
	if got, err := CheckWitnesses(cp.Note, both); err != nil || len(got) != 2 || !got[0].Time.Equal(cosignTime) {
		t.Fatalf("first checkpoint: %+v %v\n%s", got, err, cp.Note)
	}
	if _, err := OpenCheckpoint(cp.Note, f.vkey); err != nil {
		t.Fatalf("the cosigned note does not verify with the gateway key: %v", err)
	}
	if pub, _ := st.get(CheckpointKey(cp.Size)); !bytes.Equal(pub, cp.Note) {
		t.Fatalf("published %s:\n%s", CheckpointKey(cp.Size), pub)
	}

	f.appendN(7, event)
	w.setDown(1, true)
	cp2 := f.checkpoint()
	reqs := w.requests()
	if r := reqs[len(reqs)-1]; r.LastCosigned[cosig.KeyName("w1.example", w.signers[0].KeyHash())] != cp.Size ||
		r.LedgerSize != cp2.Size+1 || bytes.Contains(r.Note, []byte("w1.example")) {
		t.Fatalf("second request: last %v, ledger size %d, note:\n%s", r.LastCosigned, r.LedgerSize, r.Note)
	}
	if got, err := CheckWitnesses(cp2.Note, both); !errors.Is(err, ErrNotWitnessed) || len(got) != 1 {
		t.Fatalf("one witness down: %+v %v", got, err)
	}

	// The checkpointer's interval asks the witness again.
	w.setDown(1, false)
	c := f.l.NewCheckpointer(f.db, f.signer, CheckpointerOptions{Interval: time.Hour})
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	c.RunDue(f.ctx, t0)
	c.RunDue(f.ctx, t0.Add(time.Hour))
	latest, err := f.l.LatestCheckpoint(f.ctx, f.db.Read())
	if err != nil || latest.Size != cp2.Size {
		t.Fatalf("latest %v %v", latest, err)
	}
	if got, err := CheckWitnesses(latest.Note, both); err != nil || len(got) != 2 {
		t.Fatalf("after the interval: %+v %v\n%s", got, err, latest.Note)
	}
	if pub, _ := st.get(LatestCheckpointKey); !bytes.Equal(pub, latest.Note) {
		t.Fatalf("latest.note was not published again:\n%s", pub)
	}
	if pub, _ := st.get(CheckpointKey(cp2.Size)); bytes.Equal(pub, latest.Note) {
		t.Fatal("a published <size>.note was rewritten")
	}

	p, err := f.l.Prove(f.ctx, f.db.Read(), 3, latest)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := CheckInclusion(f.vkey, p); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckWitnesses([]byte(p.Checkpoint), both); err != nil {
		t.Fatalf("the inclusion proof's checkpoint: %v", err)
	}
}

// TestVerifyWithWitnesses: bundles, the database and certificates verify
// with a k-of-n witness policy, and fail — naming why — when the
// checkpoint lacks cosignatures or carries one that does not verify.
func TestVerifyWithWitnesses(t *testing.T) {
	w := newFakeWitnesses(t, "w1.example", "w2.example", "w3.example")
	w.setDown(2, true) // w3 never cosigns
	f := cosignedFixture(t, w, nil)
	f.appendN(20, event)
	first := f.checkpoint()
	bundle := f.export(ExportOptions{Contract: "ACME-2026"})
	verify := func(b []byte, p WitnessPolicy) (*VerifyReport, error) {
		return VerifyBundle(bytes.NewReader(b), f.vkey, VerifyOptions{Witnesses: p}, nil)
	}
	rep, err := verify(bundle, WitnessPolicy{Keys: w.keys, Quorum: 2})
	if err != nil || len(rep.Witnesses) != 2 || rep.Witnesses[0].Name != "w1.example" {
		t.Fatalf("2 of 3: %+v %v", rep, err)
	}
	_, err = verify(bundle, WitnessPolicy{Keys: w.keys})
	var we *WitnessError
	if !errors.As(err, &we) || we.Have != 2 || we.Need != 3 || len(we.Missing) != 1 || !strings.HasPrefix(we.Missing[0], "w3.example+") ||
		!strings.Contains(we.Message(), "w3.example") || !strings.Contains(we.Message(), "証人") {
		t.Fatalf("3 of 3: %v", err)
	}
	if _, err := verify(bundle, WitnessPolicy{Keys: w.keys[:2], Quorum: 3}); !errors.Is(err, ErrBadKey) {
		t.Fatalf("quorum above the keys: %v", err)
	}
	if _, err := verify(bundle, WitnessPolicy{Keys: []string{f.vkey}}); !errors.Is(err, ErrBadKey) {
		t.Fatalf("the gateway key as a witness key: %v", err)
	}
	// w1's cosignature of the first checkpoint pasted over its
	// cosignature of the export's checkpoint.
	w1line := func(n []byte) string {
		for _, l := range strings.SplitAfter(string(n), "\n") {
			if strings.HasPrefix(l, "— w1.example ") {
				return strings.TrimSuffix(l, "\n")
			}
		}
		t.Fatalf("no w1 line in\n%s", n)
		return ""
	}
	exportCP, err := f.l.LatestCheckpoint(f.ctx, f.db.Read())
	if err != nil {
		t.Fatal(err)
	}
	swapped := bytes.Replace(bundle, []byte(w1line(exportCP.Note)), []byte(w1line(first.Note)), 1)
	if bytes.Equal(swapped, bundle) {
		t.Fatal("nothing swapped")
	}
	if _, err := verify(swapped, WitnessPolicy{Keys: w.keys[:1]}); !errors.As(err, &we) || !strings.HasPrefix(we.Altered, "w1.example+") {
		t.Fatalf("a copied cosignature: %v", err)
	}
	if _, err := VerifyBundle(bytes.NewReader(swapped), f.vkey, VerifyOptions{}, nil); err != nil {
		t.Fatalf("without witnesses the swap is invisible (the gateway's signature covers the body only): %v", err)
	}

	// The database: the newest checkpoint with the quorum.
	dbRep, err := f.verifyDB(VerifyOptions{Witnesses: WitnessPolicy{Keys: w.keys, Quorum: 2}})
	if err != nil || dbRep.Witnessed == nil || dbRep.Witnessed.Size != exportCP.Size || len(dbRep.Witnesses) != 2 || dbRep.Unwitnessed != dbRep.Size-exportCP.Size || dbRep.Unwitnessed != 2 {
		t.Fatalf("verify-db 2 of 3: %+v %v", dbRep, err)
	}
	w.setDown(1, true)
	f.appendN(3, event)
	f.checkpoint()
	dbRep, err = f.verifyDB(VerifyOptions{Witnesses: WitnessPolicy{Keys: w.keys, Quorum: 2}})
	if err != nil || dbRep.Witnessed.Size != exportCP.Size || dbRep.Unwitnessed != 6 {
		t.Fatalf("verify-db after a checkpoint with one witness: %+v %v", dbRep, err)
	}
	if _, err := f.verifyDB(VerifyOptions{Witnesses: WitnessPolicy{Keys: w.keys}}); !errors.As(err, &we) || !strings.Contains(we.Reason, "no checkpoint in the database") {
		t.Fatalf("verify-db 3 of 3: %v", err)
	}
	// A cosignature row copied from another checkpoint.
	latest, _ := f.l.LatestCheckpoint(f.ctx, f.db.Read())
	raw := f.raw(false)
	var line string
	if err := raw.QueryRow(`SELECT line FROM ledger_cosignatures WHERE size = ? AND witness LIKE 'w2.example+%'`, first.Size).Scan(&line); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`INSERT INTO ledger_cosignatures(size, witness, line, cosigned_at, received_at) VALUES (?, ?, ?, 0, 0)`,
		latest.Size, cosig.KeyName("w2.example", w.signers[1].KeyHash()), line); err != nil {
		t.Fatal(err)
	}
	if _, err := f.verifyDB(VerifyOptions{Witnesses: WitnessPolicy{Keys: w.keys, Quorum: 1}}); !errors.As(err, &we) || we.Altered == "" {
		t.Fatalf("verify-db with a copied cosignature: %v", err)
	}
}

// TestCertificateWitnessed: a certificate carries the cosigned checkpoint
// and verifies with the witnesses' keys; one made without witnesses
// verifies with the gateway's key only.
func TestCertificateWitnessed(t *testing.T) {
	w := newFakeWitnesses(t, "w1.example", "w2.example")
	f, c := certFixtureOn(t, cosignedFixture(t, w, nil), false)
	data, err := SignCertificate(c, f.signer)
	if err != nil {
		t.Fatal(err)
	}
	_, rep, err := VerifyCertificateWitnessed(data, f.vkey, WitnessPolicy{Keys: w.keys, Quorum: 2})
	if err != nil || len(rep.Witnesses) != 2 {
		t.Fatalf("%+v %v", rep, err)
	}
	plain, pc := certFixtureOn(t, newFixture(t), false)
	pdata, err := SignCertificate(pc, plain.signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyCertificate(pdata, plain.vkey); err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyCertificateWitnessed(pdata, plain.vkey, WitnessPolicy{Keys: w.keys, Quorum: 1}); !errors.Is(err, ErrNotWitnessed) {
		t.Fatalf("certificate without cosignatures: %v", err)
	}
}

// TestWitnessPolicyOneKeyTwoNames: a cosignature/v1 signature does not
// cover the witness's name, so one witness's cosignature can be relabelled
// with another name whose vkey holds the same public key. A policy that
// lists one key under two names must not count that witness twice.
func TestWitnessPolicyOneKeyTwoNames(t *testing.T) {
	w := newFakeWitnesses(t, "w1.example", "w2.example")
	w.setDown(1, true) // only w1 cosigns
	f := cosignedFixture(t, w, nil)
	f.appendN(5, event)
	f.checkpoint()
	bundle := f.export(ExportOptions{Contract: "ACME-2026"})

	v1, err := cosig.NewVerifier(w.keys[0])
	if err != nil {
		t.Fatal(err)
	}
	alias, err := cosig.VerifierKey("alias.example", v1.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	va, err := cosig.NewVerifier(alias)
	if err != nil {
		t.Fatal(err)
	}
	// w1's line, relabelled: the alias's name and key ID, w1's timestamp
	// and signature.
	cp, err := f.l.LatestCheckpoint(f.ctx, f.db.Read())
	if err != nil {
		t.Fatal(err)
	}
	var w1 string
	for _, l := range strings.SplitAfter(string(cp.Note), "\n") {
		if strings.HasPrefix(l, "— w1.example ") {
			w1 = l
		}
	}
	if w1 == "" {
		t.Fatalf("no w1 line in\n%s", cp.Note)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(strings.TrimPrefix(w1, "— w1.example ")))
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(sig[:4], va.KeyHash())
	forged := w1 + "— alias.example " + base64.StdEncoding.EncodeToString(sig) + "\n"
	// In the bundle the note is a JSON string: its newlines are \n.
	esc := func(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", `\n`)) }
	bundle2 := bytes.Replace(bundle, esc(w1), esc(forged), 1)
	if bytes.Equal(bundle2, bundle) {
		t.Fatal("nothing added")
	}
	p := WitnessPolicy{Keys: []string{w.keys[0], alias}, Quorum: 2}
	if _, err := VerifyBundle(bytes.NewReader(bundle2), f.vkey, VerifyOptions{Witnesses: p}, nil); !errors.Is(err, ErrBadKey) {
		t.Fatalf("one witness's cosignature counted twice (its key under two names): %v", err)
	}
	if _, err := CheckWitnesses([]byte(strings.Replace(string(cp.Note), w1, forged, 1)), p); !errors.Is(err, ErrBadKey) {
		t.Fatalf("CheckWitnesses: one witness counted twice: %v", err)
	}
	if _, err := f.verifyDB(VerifyOptions{Witnesses: p}); !errors.Is(err, ErrBadKey) {
		t.Fatalf("verify-db: a policy with one key under two names: %v", err)
	}
}
