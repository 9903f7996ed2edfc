package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sealgate/sealgate/witness/cosig"
)

const origin = "gw.corp.example/sealgate-ledger"

// memLog is a Merkle tree log in memory, signed with a note key named
// after its origin, as sealgate's ledger is.
type memLog struct {
	t      testing.TB
	signer note.Signer
	vkey   string
	hashes []tlog.Hash
	n      int64
}

func newMemLog(t testing.TB, seed byte) *memLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.NewChaCha8([32]byte{seed}), origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return &memLog{t: t, signer: s, vkey: vkey}
}

// fork returns a copy of l's first n records, signed with the same key
// (what a gateway operator rewriting history would hold).
func (l *memLog) fork(n int64) *memLog {
	f := &memLog{t: l.t, signer: l.signer, vkey: l.vkey}
	f.hashes = append([]tlog.Hash(nil), l.hashes[:tlog.StoredHashCount(n)]...)
	f.n = n
	return f
}

func (l *memLog) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = l.hashes[x]
		}
		return out, nil
	})
}

func (l *memLog) add(records ...string) {
	for _, r := range records {
		hs, err := tlog.StoredHashes(l.n, []byte(r), l.reader())
		if err != nil {
			l.t.Fatal(err)
		}
		l.hashes = append(l.hashes, hs...)
		l.n++
	}
}

func (l *memLog) checkpoint() []byte {
	root, err := tlog.TreeHash(l.n, l.reader())
	if err != nil {
		l.t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", origin, l.n, root)}, l.signer)
	if err != nil {
		l.t.Fatal(err)
	}
	return msg
}

func (l *memLog) request(old int64) []byte {
	var proof tlog.TreeProof
	if old > 0 && old < l.n {
		var err error
		if proof, err = tlog.ProveTree(l.n, old, l.reader()); err != nil {
			l.t.Fatal(err)
		}
	}
	return (&cosig.Request{OldSize: old, Proof: proof, Checkpoint: l.checkpoint()}).Marshal()
}

type fixture struct {
	t    *testing.T
	dir  string
	w    *Witness
	srv  *httptest.Server
	v    *cosig.Verifier
	now  time.Time
	logs *bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), now: time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)}
	vkey, err := GenerateKeyFiles(f.dir, "witness.client.example", rand.NewChaCha8([32]byte{7}))
	if err != nil {
		t.Fatal(err)
	}
	if f.v, err = cosig.NewVerifier(vkey); err != nil {
		t.Fatal(err)
	}
	f.open()
	return f
}

func (f *fixture) open() {
	f.t.Helper()
	w, err := Open(context.Background(), f.dir, Options{Now: func() time.Time { return f.now }})
	if err != nil {
		f.t.Fatal(err)
	}
	f.w = w
	f.srv = httptest.NewServer(w.Handler())
	f.t.Cleanup(func() { f.srv.Close(); w.Close() })
}

func (f *fixture) post(body []byte) (int, string, string) {
	f.t.Helper()
	resp, err := http.Post(f.srv.URL+"/add-checkpoint", "text/plain", bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Content-Type")
}

// cosigned checks that lines are a valid cosignature of l's checkpoint by
// the witness.
func (f *fixture) cosigned(l *memLog, lines string) {
	f.t.Helper()
	got, err := cosig.Open(append(l.checkpoint(), lines...), []*cosig.Verifier{f.v})
	if err != nil || len(got) != 1 || !got[0].Time.Equal(f.now) {
		f.t.Fatalf("cosignature %q: %+v, %v", lines, got, err)
	}
}

func (f *fixture) state() Log {
	f.t.Helper()
	logs, err := f.w.Logs(context.Background())
	if err != nil || len(logs) != 1 {
		f.t.Fatalf("logs: %+v, %v", logs, err)
	}
	return logs[0]
}

func TestKeyFiles(t *testing.T) {
	f := newFixture(t)
	fi, err := os.Stat(filepath.Join(f.dir, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	pub, _ := os.ReadFile(filepath.Join(f.dir, PubFile))
	if strings.TrimSpace(string(pub)) != f.w.VerifierKey() || f.w.Name() != "witness.client.example" {
		t.Fatalf("witness.pub %q, key %q", pub, f.w.VerifierKey())
	}
	if _, err := GenerateKeyFiles(f.dir, "other", rand.NewChaCha8([32]byte{8})); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("a second init replaced the key: %v", err)
	}
}

// TestAddCheckpoint walks the protocol: unknown log, first checkpoint,
// a stale old size (409 with the size), the next checkpoint with its
// consistency proof; and the state survives a restart.
func TestAddCheckpoint(t *testing.T) {
	f := newFixture(t)
	l := newMemLog(t, 1)
	l.add("a", "b", "c")
	if code, body, _ := f.post(l.request(0)); code != http.StatusNotFound {
		t.Fatalf("unknown log: %d %s", code, body)
	}
	if got, err := f.w.AddLog(context.Background(), "", l.vkey); err != nil || got != origin {
		t.Fatalf("AddLog: %q, %v", got, err)
	}
	code, body, _ := f.post(l.request(0))
	if code != http.StatusOK {
		t.Fatalf("first checkpoint: %d %s", code, body)
	}
	f.cosigned(l, body)
	if st := f.state(); st.Size != 3 || st.Updated.IsZero() {
		t.Fatalf("state %+v", st)
	}

	l.add("d", "e")
	code, body, ctype := f.post(l.request(0))
	if code != http.StatusConflict || body != "3\n" || ctype != "text/x.tlog.size" {
		t.Fatalf("stale old size: %d %q %q", code, body, ctype)
	}
	code, body, _ = f.post(l.request(3))
	if code != http.StatusOK {
		t.Fatalf("with proof from 3: %d %s", code, body)
	}
	f.cosigned(l, body)
	// The same checkpoint again: cosigned again.
	if code, body, _ = f.post(l.request(5)); code != http.StatusOK {
		t.Fatalf("same size, same root: %d %s", code, body)
	}

	f.srv.Close()
	f.w.Close()
	f.open()
	if st := f.state(); st.Size != 5 || st.Refused != 0 || len(st.Keys) != 1 {
		t.Fatalf("after restart: %+v", st)
	}
	if code, body, _ := f.post(l.request(3)); code != http.StatusConflict || body != "5\n" {
		t.Fatalf("after restart, old 3: %d %q", code, body)
	}
}

// TestRefusesFork: a history rewritten after entry 2 and signed with the
// log's own key is refused — with a consistency proof (422), or as a
// different tree of the cosigned size (409) — and kept as evidence; the
// witness's state does not move.
func TestRefusesFork(t *testing.T) {
	f := newFixture(t)
	l := newMemLog(t, 1)
	f.w.AddLog(context.Background(), "", l.vkey)
	l.add("a", "b", "c", "d")
	if code, body, _ := f.post(l.request(0)); code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	forged := l.fork(2)
	forged.add("C", "D", "E")
	code, body, _ := f.post(forged.request(4))
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "not a prefix") {
		t.Fatalf("forged history with a proof from 4: %d %s", code, body)
	}
	same := l.fork(2)
	same.add("C", "D")
	code, body, _ = f.post(same.request(4))
	if code != http.StatusConflict || body != "4\n" {
		t.Fatalf("forged tree of the cosigned size: %d %q", code, body)
	}
	st := f.state()
	if st.Size != 4 || st.Refused != 2 {
		t.Fatalf("state after forks: %+v", st)
	}
	ref, err := f.w.Refused(context.Background(), origin)
	if err != nil || len(ref) != 2 || ref[0].Size != 5 || ref[0].OldSize != 4 || !strings.Contains(ref[0].Checkpoint, "\n5\n") {
		t.Fatalf("evidence: %+v, %v", ref, err)
	}
	// The genuine history goes on.
	l.add("e")
	if code, body, _ := f.post(l.request(4)); code != http.StatusOK {
		t.Fatalf("genuine checkpoint after the forks: %d %s", code, body)
	}
}

func TestRejects(t *testing.T) {
	f := newFixture(t)
	l := newMemLog(t, 1)
	f.w.AddLog(context.Background(), "", l.vkey)
	l.add("a", "b")
	other := newMemLog(t, 2) // same origin, another key
	other.add("a", "b")
	if code, body, _ := f.post(other.request(0)); code != http.StatusForbidden {
		t.Fatalf("signed by another key: %d %s", code, body)
	}
	if code, body, _ := f.post(l.request(3)); code != http.StatusBadRequest {
		t.Fatalf("old size above the checkpoint's: %d %s", code, body)
	}
	if code, body, _ := f.post([]byte("old 0\n" + string(l.checkpoint()))); code != http.StatusBadRequest {
		t.Fatalf("no blank line: %d %s", code, body)
	}
	withProof := (&cosig.Request{OldSize: 0, Proof: tlog.TreeProof{{1}}, Checkpoint: l.checkpoint()}).Marshal()
	if code, body, _ := f.post(withProof); code != http.StatusBadRequest {
		t.Fatalf("proof from size 0: %d %s", code, body)
	}
	resp, err := http.Post(f.srv.URL+"/add-checkpoint", "text/plain", bytes.NewReader(make([]byte, MaxRequestBytes+1)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("oversized request: %d", resp.StatusCode)
	}
	if st := f.state(); st.Size != 0 {
		t.Fatalf("state moved: %+v", st)
	}
	if _, err := f.w.AddLog(context.Background(), "", "not a key"); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("AddLog with a bad key: %v", err)
	}
}

// TestNoRollbackRace: requests with the same old size sent at once get
// one cosignature; the others learn the new size (the check and the
// update are one transaction).
func TestNoRollbackRace(t *testing.T) {
	f := newFixture(t)
	l := newMemLog(t, 1)
	f.w.AddLog(context.Background(), "", l.vkey)
	l.add("a")
	if code, _, _ := f.post(l.request(0)); code != http.StatusOK {
		t.Fatal(code)
	}
	var bodies [][]byte
	for i := range 8 {
		l.add(fmt.Sprint(i))
		bodies = append(bodies, l.request(1))
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for _, b := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, _ := f.post(b)
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[http.StatusOK] != 1 || codes[http.StatusConflict] != 7 {
		t.Fatalf("codes %v", codes)
	}
}

// TestRefusedBounded: the evidence a witness keeps of refused checkpoints
// is bounded: a checkpoint refused again (a gateway retrying at each
// interval) is kept once, and a log's key holder sending fork after fork
// cannot fill the witness's disk — the first MaxRefused are kept, every
// one is still refused.
func TestRefusedBounded(t *testing.T) {
	f := newFixture(t)
	l := newMemLog(t, 1)
	f.w.AddLog(context.Background(), "", l.vkey)
	l.add("a", "b", "c", "d")
	if code, body, _ := f.post(l.request(0)); code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	forged := l.fork(2)
	forged.add("C", "D", "E")
	for range 3 {
		if code, _, _ := f.post(forged.request(4)); code != http.StatusUnprocessableEntity {
			t.Fatalf("forged history: %d", code)
		}
	}
	if st := f.state(); st.Refused != 1 {
		t.Fatalf("the same refused checkpoint three times: %d kept", st.Refused)
	}
	for i := range MaxRefused + 5 {
		fk := l.fork(2)
		fk.add("C", "D", fmt.Sprintf("E%d", i))
		if code, _, _ := f.post(fk.request(4)); code != http.StatusUnprocessableEntity {
			t.Fatalf("fork %d: %d", i, code)
		}
	}
	if st := f.state(); st.Refused != MaxRefused || st.Size != 4 {
		t.Fatalf("after %d forks: %+v (want %d kept)", MaxRefused+6, st, MaxRefused)
	}
	ref, err := f.w.Refused(context.Background(), origin)
	if err != nil || len(ref) != MaxRefused || !strings.Contains(ref[0].Checkpoint, "\n5\n") {
		t.Fatalf("evidence: %d, %v", len(ref), err)
	}
}
