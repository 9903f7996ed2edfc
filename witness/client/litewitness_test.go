package client

import (
	"context"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/internal/testlitewitness"
)

// buildLitewitness builds torchwood's litewitness, or skips (fails under
// SEALGATE_REQUIRE_TOOLS=1).
func buildLitewitness(t *testing.T) testlitewitness.Binaries {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := testlitewitness.Build(ctx, t.TempDir())
	if err != nil {
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
			t.Fatal(err)
		}
		t.Skipf("%v; set SEALGATE_REQUIRE_TOOLS=1 to fail instead", err)
	}
	return bin
}

// TestLitewitness runs the client against litewitness (filippo.io/torchwood,
// an independent implementation of tlog-witness) and sealgate's witness
// side by side: both cosign every checkpoint (2 of 2 verify), both refuse
// a forged history signed with the gateway's key, and litewitness going
// down and coming back is alerted and caught up.
func TestLitewitness(t *testing.T) {
	bin := buildLitewitness(t)
	ctx := context.Background()
	signer, vkey := newSigner(t)
	var out logBuf
	lw, err := testlitewitness.Start(ctx, testlitewitness.Options{Bin: bin, Dir: t.TempDir(), Name: "litewitness.client.example",
		Origin: origin, LogKey: vkey, Rand: rand.NewChaCha8([32]byte{21}), Log: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lw.Close)
	if lw.LoggedKey != lw.Key {
		t.Fatalf("litewitness's verifier key %q, computed here %q", lw.LoggedKey, lw.Key)
	}
	sw := startWitness(t, "sealgate-witness.client.example", 22, vkey, time.Now)
	var al alerts
	c := newClient(t, &al, nil, Witness{Name: "litewitness", URL: lw.URL, Key: lw.Key}, Witness{URL: sw.url(), Key: sw.key})
	g := newGateway(t, signer, vkey, c)
	var last *audit.SignedCheckpoint
	for round := 1; round <= 3; round++ {
		g.add(7*round, "real")
		last = g.checkpoint()
		got, err := audit.CheckWitnesses(last.Note, policy(2, lw.Key, sw.key))
		if err != nil || len(got) != 2 {
			t.Fatalf("round %d: %+v %v\n%s\nlitewitness:\n%s", round, got, err, last.Note, out.String())
		}
	}
	if !strings.Contains(string(last.Note), "\n— litewitness.client.example ") {
		t.Fatalf("no litewitness line:\n%s", last.Note)
	}

	forged := newGateway(t, signer, vkey, c)
	forged.add(60, "forged")
	fcp := forged.checkpoint()
	if got, err := audit.CheckWitnesses(fcp.Note, policy(1, lw.Key, sw.key)); err == nil || len(got) != 0 {
		t.Fatalf("a witness cosigned the forged history: %+v %v", got, err)
	}
	refused := map[string]string{}
	for _, a := range al.list() {
		if a.Problem == Refused {
			refused[a.Witness] = a.Detail
		}
	}
	if !strings.HasPrefix(refused["litewitness"], "422") || !strings.HasPrefix(refused["sealgate-witness.client.example"], "422") {
		t.Fatalf("refusals %+v", refused)
	}

	lw.Stop()
	g.add(3, "real")
	cp := g.checkpoint()
	if got, err := audit.CheckWitnesses(cp.Note, policy(1, lw.Key, sw.key)); err != nil || len(got) != 1 {
		t.Fatalf("with litewitness down: %+v %v", got, err)
	}
	// The refusal of the forged checkpoint counted as its first failure.
	if st := c.Status(); st[0].ConsecutiveFailures != 2 || !strings.Contains(st[0].LastError, "unreachable") || st[1].ConsecutiveFailures != 0 {
		t.Fatalf("status %+v", st)
	}
	if err := lw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.l.CosignLatest(ctx, g.db); err != nil {
		t.Fatal(err)
	}
	latest, err := g.l.LatestCheckpoint(ctx, g.db.Read())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := audit.CheckWitnesses(latest.Note, policy(2, lw.Key, sw.key)); err != nil || len(got) != 2 {
		t.Fatalf("after litewitness came back: %+v %v", got, err)
	}
	a := al.list()
	if a[len(a)-1].Problem != Recovered || a[len(a)-2].Problem != Down || a[len(a)-2].Witness != "litewitness" {
		t.Fatalf("alerts %+v", a)
	}
}
