package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
)

// TestWitnessCLI: init prints the verifier key and writes the key files,
// add-log accepts a ledger key from a file, logs lists it; a second init
// keeps the key; a missing LOGKEY is a usage error.
func TestWitnessCLI(t *testing.T) {
	var out, errb bytes.Buffer
	e := &env{Stdout: &out, Stderr: &errb, Rand: rand.Reader, Now: func() time.Time { return time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC) }}
	run := func(args ...string) error {
		out.Reset()
		errb.Reset()
		return cmdWitness(context.Background(), e, args)
	}
	dir := filepath.Join(t.TempDir(), "w")
	if err := run("init", "--dir", dir, "--name", "witness.client.example"); err != nil {
		t.Fatal(err, errb.String())
	}
	wkey := strings.TrimSpace(out.String())
	pub, _ := os.ReadFile(filepath.Join(dir, "witness.pub"))
	if !strings.HasPrefix(wkey, "witness.client.example+") || strings.TrimSpace(string(pub)) != wkey {
		t.Fatalf("init printed %q, witness.pub %q", wkey, pub)
	}
	if st, err := os.Stat(filepath.Join(dir, "witness.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("witness.key: %v %v", st, err)
	}
	if err := run("init", "--dir", dir, "--name", "witness.client.example"); err == nil {
		t.Fatal("a second init replaced the key")
	}
	_, lkey, err := audit.GenerateKey(rand.Reader, "gw.corp.example/sealgate-ledger")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ledger.pub"), []byte(lkey+"\n"), 0o644)
	var ue usageError
	if err := run("add-log", "--dir", dir); !errors.As(err, &ue) {
		t.Fatalf("add-log without LOGKEY: %v", err)
	}
	if err := run("add-log", "--dir", dir, "@"+filepath.Join(dir, "ledger.pub")); err != nil || !strings.Contains(out.String(), "gw.corp.example/sealgate-ledger") {
		t.Fatalf("add-log: %v %s%s", err, out.String(), errb.String())
	}
	if err := run("logs", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, wkey) || !strings.Contains(s, lkey) || !strings.Contains(s, "nothing yet") || !strings.Contains(s, "refused:     0") {
		t.Fatalf("logs:\n%s", s)
	}
}
