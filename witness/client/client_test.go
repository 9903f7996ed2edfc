package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/witness"
	"github.com/sealgate/sealgate/witness/cosig"
)

const origin = "gw.corp.example/sealgate-ledger"

var start = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)

// gateway is a ledger in its own database, signed with signer.
type gateway struct {
	t      *testing.T
	ctx    context.Context
	db     *database.DB
	l      *audit.Ledger
	signer note.Signer
	vkey   string
	n      int
}

func newSigner(t *testing.T) (note.Signer, string) {
	t.Helper()
	skey, vkey, err := audit.GenerateKey(rand.NewChaCha8([32]byte{1}), origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := audit.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

// newGateway opens a ledger signed with signer (the same key for a forged
// history) that has its checkpoints cosigned by c (nil: none).
func newGateway(t *testing.T, signer note.Signer, vkey string, c audit.Cosigner) *gateway {
	t.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, filepath.Join(t.TempDir(), "sealgate.db"), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := start
	var mu sync.Mutex
	l, err := audit.New(audit.Options{Origin: origin, Cosigner: c, Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Millisecond)
		return now
	}})
	if err != nil {
		t.Fatal(err)
	}
	return &gateway{t: t, ctx: ctx, db: db, l: l, signer: signer, vkey: vkey}
}

// add appends n events whose content depends on tag (two gateways with
// different tags write different histories).
func (g *gateway) add(n int, tag string) {
	g.t.Helper()
	err := g.db.Write(g.ctx, func(tx *database.Tx) error {
		for range n {
			g.n++
			if _, err := g.l.Append(g.ctx, tx, audit.Event{Type: audit.TypeLogin, Actor: fmt.Sprintf("%s-%d", tag, g.n)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		g.t.Fatal(err)
	}
}

func (g *gateway) checkpoint() *audit.SignedCheckpoint {
	g.t.Helper()
	cp, err := g.l.Checkpoint(g.ctx, g.db, g.signer)
	if err != nil {
		g.t.Fatal(err)
	}
	return cp
}

// sealgateWitness is a `sealgate witness` on a loopback port that can be
// stopped and started again on the same port.
type sealgateWitness struct {
	t    *testing.T
	w    *witness.Witness
	key  string
	addr string
	mu   sync.Mutex
	srv  *http.Server
}

func startWitness(t *testing.T, name string, seed byte, logKey string, now func() time.Time) *sealgateWitness {
	t.Helper()
	dir := t.TempDir()
	key, err := witness.GenerateKeyFiles(dir, name, rand.NewChaCha8([32]byte{seed}))
	if err != nil {
		t.Fatal(err)
	}
	w, err := witness.Open(context.Background(), dir, witness.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddLog(context.Background(), "", logKey); err != nil {
		t.Fatal(err)
	}
	sw := &sealgateWitness{t: t, w: w, key: key}
	sw.up()
	t.Cleanup(func() { sw.down(); w.Close() })
	return sw
}

func (s *sealgateWitness) up() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.srv = &http.Server{Handler: s.w.Handler()}
	go s.srv.Serve(ln)
}

func (s *sealgateWitness) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

func (s *sealgateWitness) url() string { return "http://" + s.addr }

func (s *sealgateWitness) size(t *testing.T) int64 {
	t.Helper()
	logs, err := s.w.Logs(context.Background())
	if err != nil || len(logs) != 1 {
		t.Fatalf("%+v %v", logs, err)
	}
	return logs[0].Size
}

// alerts collects what the client raises.
type alerts struct {
	mu  sync.Mutex
	got []Alert
}

func (a *alerts) add(_ context.Context, x Alert) {
	a.mu.Lock()
	a.got = append(a.got, x)
	a.mu.Unlock()
}

func (a *alerts) list() []Alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Alert(nil), a.got...)
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newClient(t *testing.T, a *alerts, log io.Writer, ws ...Witness) *Client {
	t.Helper()
	if log == nil {
		log = io.Discard
	}
	c, err := New(Options{Witnesses: ws, Timeout: 5 * time.Second, Now: time.Now, Alert: a.add,
		Log: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func policy(k int, keys ...string) audit.WitnessPolicy {
	return audit.WitnessPolicy{Keys: keys, Quorum: k}
}

// TestCosignsEveryCheckpoint: every checkpoint gets both witnesses'
// cosignatures, each with a proof from the size that witness cosigned
// last; the checkpoint the ledger returns, stores and exports carries
// them, and verifies 2 of 2.
func TestCosignsEveryCheckpoint(t *testing.T) {
	signer, vkey := newSigner(t)
	w1 := startWitness(t, "w1.client.example", 11, vkey, time.Now)
	w2 := startWitness(t, "w2.client.example", 12, vkey, time.Now)
	var al alerts
	c := newClient(t, &al, nil, Witness{URL: w1.url(), Key: w1.key}, Witness{Name: "second", URL: w2.url(), Key: w2.key})
	g := newGateway(t, signer, vkey, c)
	for round := 1; round <= 3; round++ {
		g.add(5*round, "real")
		cp := g.checkpoint()
		got, err := audit.CheckWitnesses(cp.Note, policy(2, w1.key, w2.key))
		if err != nil {
			t.Fatalf("round %d: %v\n%s", round, err, cp.Note)
		}
		if len(got) != 2 || w1.size(t) != cp.Size || w2.size(t) != cp.Size {
			t.Fatalf("round %d: %d cosignatures, witnesses at %d and %d, checkpoint %d", round, len(got), w1.size(t), w2.size(t), cp.Size)
		}
		if _, err := audit.OpenCheckpoint(cp.Note, vkey); err != nil {
			t.Fatalf("the cosigned checkpoint no longer verifies with the gateway key: %v", err)
		}
		stored, err := g.l.LatestCheckpoint(g.ctx, g.db.Read())
		if err != nil || !bytes.Equal(stored.Note, cp.Note) {
			t.Fatalf("stored checkpoint differs: %v\n%s", err, stored.Note)
		}
	}
	st := c.Status()
	if len(st) != 2 || st[0].Name != "w1.client.example" || st[1].Name != "second" || st[0].LastSuccess.IsZero() ||
		st[0].ConsecutiveFailures != 0 || st[1].LastSize == 0 {
		t.Fatalf("status %+v", st)
	}
	if a := al.list(); len(a) != 0 {
		t.Fatalf("alerts %+v", a)
	}

	var bundle bytes.Buffer
	if err := g.l.Export(g.ctx, g.db, audit.ExportOptions{Format: audit.FormatJSON, Signer: signer}, &bundle, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.VerifyBundle(bytes.NewReader(bundle.Bytes()), vkey, audit.VerifyOptions{Witnesses: policy(2, w1.key, w2.key)}, nil)
	if err != nil || len(rep.Witnesses) != 2 {
		t.Fatalf("bundle with 2 of 2: %+v %v", rep, err)
	}
	dbRep, err := audit.VerifyDB(g.ctx, g.db, vkey, audit.VerifyOptions{Witnesses: policy(2, w1.key, w2.key)}, nil)
	if err != nil || dbRep.Witnessed == nil || dbRep.Witnessed.Size != rep.Checkpoint.Size {
		t.Fatalf("verify-db with 2 of 2: %+v %v", dbRep, err)
	}
}

// TestConflict: a witness that has cosigned a later size than the ledger
// recorded (another process asked it) answers 409 with its size; the
// client proves from there.
func TestConflict(t *testing.T) {
	signer, vkey := newSigner(t)
	w1 := startWitness(t, "w1.client.example", 11, vkey, time.Now)
	var al alerts
	c := newClient(t, &al, nil, Witness{URL: w1.url(), Key: w1.key})
	g := newGateway(t, signer, vkey, c)
	g.add(3, "real")
	first := g.checkpoint()
	g.add(4, "real")
	// A process without witnesses signs the next checkpoint.
	plain := newGatewayOn(t, g, nil)
	second, err := plain.Checkpoint(g.ctx, g.db, signer)
	if err != nil {
		t.Fatal(err)
	}
	// The client is told the witness never cosigned: old 0 gets a 409
	// naming the first checkpoint's size, then a proof from it works.
	var asked []int64
	got := c.Cosign(g.ctx, audit.CosignRequest{
		Checkpoint: second, Note: second.Note, LastCosigned: map[string]int64{}, LedgerSize: second.Size + 1,
		Prove: func(ctx context.Context, old int64) (tlog.TreeProof, error) {
			asked = append(asked, old)
			if old == 0 {
				return nil, nil
			}
			return g.l.ProveConsistency(ctx, g.db.Read(), first, second)
		},
	})
	if len(got) != 1 || w1.size(t) != second.Size || fmt.Sprint(asked) != fmt.Sprintf("[0 %d]", first.Size) {
		t.Fatalf("cosignatures %+v, witness at %d, proofs asked from %v", got, w1.size(t), asked)
	}
	if a := al.list(); len(a) != 0 {
		t.Fatalf("alerts %+v", a)
	}
}

// TestForkRefused: a history rewritten after the cosigned checkpoint and
// signed with the gateway's own key is refused by the witness (409 with
// its size, then 422 for the proof from it); the client raises the alert;
// the forged checkpoint carries no cosignature and fails verification with
// the witness key, naming why. A ledger rolled back behind the cosigned
// size is refused too.
func TestForkRefused(t *testing.T) {
	signer, vkey := newSigner(t)
	w1 := startWitness(t, "w1.client.example", 11, vkey, time.Now)
	var al alerts
	var log logBuf
	c := newClient(t, &al, &log, Witness{URL: w1.url(), Key: w1.key})
	real := newGateway(t, signer, vkey, c)
	real.add(10, "real")
	cp := real.checkpoint()

	forged := newGateway(t, signer, vkey, c)
	forged.add(15, "forged")
	fcp := forged.checkpoint()
	if w1.size(t) != cp.Size {
		t.Fatalf("the witness moved to %d", w1.size(t))
	}
	a := al.list()
	if len(a) != 1 || a[0].Problem != Refused || !strings.Contains(a[0].Detail, "422") {
		t.Fatalf("alerts %+v", a)
	}
	if !strings.Contains(log.String(), "level=ERROR") || !strings.Contains(log.String(), "REFUSED") {
		t.Fatalf("log:\n%s", log.String())
	}
	if st := c.Status(); st[0].Refusals != 1 || st[0].ConsecutiveFailures != 1 {
		t.Fatalf("status %+v", st)
	}
	ref, err := w1.w.Refused(context.Background(), origin)
	if err != nil || len(ref) != 1 || ref[0].Size != fcp.Size {
		t.Fatalf("the witness kept no evidence: %+v %v", ref, err)
	}
	// The forged checkpoint verifies with the gateway's key, not with the
	// witness's.
	if _, err := audit.OpenCheckpoint(fcp.Note, vkey); err != nil {
		t.Fatal(err)
	}
	var we *audit.WitnessError
	_, err = audit.CheckWitnesses(fcp.Note, policy(1, w1.key))
	if !errors.As(err, &we) || !errors.Is(err, audit.ErrNotWitnessed) || we.Have != 0 || len(we.Missing) != 1 ||
		!strings.Contains(we.Message(), "rewritten") || !strings.Contains(we.Message(), "書き換え") {
		t.Fatalf("forged checkpoint: %v", err)
	}
	// Copying the genuine cosignature onto the forged checkpoint does
	// not help: it does not verify.
	realSig := cp.Note[len(cp.Note)-len(lastLine(cp.Note)):]
	_, err = audit.CheckWitnesses(append(bytes.Clone(fcp.Note), realSig...), policy(1, w1.key))
	if !errors.As(err, &we) || we.Altered == "" || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("copied cosignature: %v", err)
	}
	var bundle bytes.Buffer
	if err := forged.l.Export(forged.ctx, forged.db, audit.ExportOptions{Format: audit.FormatJSON, Signer: signer}, &bundle, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyBundle(bytes.NewReader(bundle.Bytes()), vkey, audit.VerifyOptions{}, nil); err != nil {
		t.Fatalf("the forged bundle verifies with the gateway key alone: %v", err)
	}
	if _, err := audit.VerifyBundle(bytes.NewReader(bundle.Bytes()), vkey, audit.VerifyOptions{Witnesses: policy(1, w1.key)}, nil); !errors.Is(err, audit.ErrNotWitnessed) {
		t.Fatalf("forged bundle with the witness key: %v", err)
	}
	if _, err := audit.VerifyDB(forged.ctx, forged.db, vkey, audit.VerifyOptions{Witnesses: policy(1, w1.key)}, nil); !errors.Is(err, audit.ErrNotWitnessed) {
		t.Fatalf("forged database with the witness key: %v", err)
	}

	rolled := newGateway(t, signer, vkey, c)
	rolled.add(4, "real")
	rolled.checkpoint()
	a = al.list()
	if last := a[len(a)-1]; last.Problem != Refused || !strings.Contains(last.Detail, "rolled back") {
		t.Fatalf("rolled back ledger: %+v", a)
	}
}

// newGatewayOn is another process's ledger on g's database.
func newGatewayOn(t *testing.T, g *gateway, c audit.Cosigner) *audit.Ledger {
	t.Helper()
	l, err := audit.New(audit.Options{Origin: origin, Cosigner: c})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func lastLine(b []byte) []byte {
	i := bytes.LastIndexByte(b[:len(b)-1], '\n')
	return b[i+1:]
}

// TestWitnessDown: a witness that does not answer is alerted once when it
// goes down and once when it is back; checkpoints go on without it, and
// the interval retry has it cosign the latest checkpoint.
func TestWitnessDown(t *testing.T) {
	signer, vkey := newSigner(t)
	w1 := startWitness(t, "w1.client.example", 11, vkey, time.Now)
	w2 := startWitness(t, "w2.client.example", 12, vkey, time.Now)
	var al alerts
	c := newClient(t, &al, nil, Witness{URL: w1.url(), Key: w1.key}, Witness{URL: w2.url(), Key: w2.key})
	g := newGateway(t, signer, vkey, c)
	g.add(3, "real")
	g.checkpoint()
	w2.down()
	for range 2 {
		g.add(2, "real")
		cp := g.checkpoint()
		if got, err := audit.CheckWitnesses(cp.Note, policy(1, w1.key, w2.key)); err != nil || len(got) != 1 {
			t.Fatalf("with one witness down: %+v %v", got, err)
		}
	}
	st := c.Status()
	if st[1].ConsecutiveFailures != 2 || st[1].Failures != 2 || st[1].LastError == "" || st[0].ConsecutiveFailures != 0 {
		t.Fatalf("status %+v", st)
	}
	a := al.list()
	if len(a) != 1 || a[0].Problem != Down || a[0].Key != st[1].Key || !strings.Contains(a[0].Detail, "unreachable") {
		t.Fatalf("alerts %+v", a)
	}
	w2.up()
	if err := g.l.CosignLatest(g.ctx, g.db); err != nil {
		t.Fatal(err)
	}
	latest, err := g.l.LatestCheckpoint(g.ctx, g.db.Read())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := audit.CheckWitnesses(latest.Note, policy(2, w1.key, w2.key)); err != nil || len(got) != 2 {
		t.Fatalf("after the witness came back: %+v %v", got, err)
	}
	a = al.list()
	if len(a) != 2 || a[1].Problem != Recovered || c.Status()[1].ConsecutiveFailures != 0 {
		t.Fatalf("alerts %+v", a)
	}
}

// TestBadAnswers: a cosignature by another key, or stamped far from the
// clock, is not accepted.
func TestBadAnswers(t *testing.T) {
	signer, vkey := newSigner(t)
	skewed := startWitness(t, "w1.client.example", 11, vkey, func() time.Time { return time.Now().Add(time.Hour) })
	other := startWitness(t, "w1.client.example", 13, vkey, time.Now) // same name, another key
	var al alerts
	c := newClient(t, &al, nil, Witness{Name: "skewed", URL: skewed.url(), Key: skewed.key}, Witness{Name: "impostor", URL: other.url(), Key: startWitness(t, "w9.example", 14, vkey, time.Now).key})
	g := newGateway(t, signer, vkey, c)
	g.add(3, "real")
	cp := g.checkpoint()
	if strings.Count(string(cp.Note), "\n— ") != 1 {
		t.Fatalf("accepted a bad cosignature:\n%s", cp.Note)
	}
	st := c.Status()
	if !strings.Contains(st[0].LastError, "off this clock") || !strings.Contains(st[1].LastError, "no cosignature by the witness key") {
		t.Fatalf("status %+v", st)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, vkey := newSigner(t)
	_, wkey, _ := cosig.GenerateKey(rand.NewChaCha8([32]byte{3}), "w.example")
	wv, err := cosig.NewVerifier(wkey)
	if err != nil {
		t.Fatal(err)
	}
	alias, err := cosig.VerifierKey("alias.example", wv.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	for name, ws := range map[string][]Witness{
		"one key under two names": {{URL: "http://a", Key: wkey}, {URL: "http://b", Key: alias}},
		"log key":                 {{URL: "http://127.0.0.1:1", Key: vkey}},
		"no URL":                  {{URL: "127.0.0.1:1", Key: wkey}},
		"same key":                {{URL: "http://a", Key: wkey}, {URL: "http://b", Key: wkey}},
	} {
		if _, err := New(Options{Witnesses: ws}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestNoRedirects: the protocol has no redirects. A witness (or whatever
// answers at its URL) that redirects does not make the gateway post to
// another address — one on its internal network — and read the answer
// into its logs; it counts as a failure.
func TestNoRedirects(t *testing.T) {
	signer, vkey := newSigner(t)
	real := startWitness(t, "w1.client.example", 11, vkey, time.Now)
	var hits sync.Map
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.URL.Path, true)
		// Forward to the real witness, as an internal service reached
		// this way would answer.
		body, _ := io.ReadAll(r.Body)
		resp, err := http.Post(real.url()+"/add-checkpoint", "text/plain", bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer target.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/internal", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	var al alerts
	c := newClient(t, &al, nil, Witness{Name: "w1", URL: redirector.URL, Key: real.key})
	g := newGateway(t, signer, vkey, c)
	g.add(3, "real")
	cp := g.checkpoint()
	if _, hit := hits.Load("/internal"); hit {
		t.Fatal("the client followed the witness's redirect and posted to another address")
	}
	if strings.Count(string(cp.Note), "\n— ") != 1 { // the gateway's own signature only
		t.Fatalf("cosigned through a redirect:\n%s", cp.Note)
	}
	if st := c.Status(); st[0].ConsecutiveFailures != 1 || !strings.Contains(st[0].LastError, "307") {
		t.Fatalf("status %+v", st)
	}
}
