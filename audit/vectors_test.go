package audit

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the test vectors under testdata/vectors")

// Test vectors of the formats an auditor receives: a signed checkpoint, a
// ledger bundle (JSON export) and a destruction certificate, made from a
// fixed ledger with a fixed signing key and clock. A change to any of
// these formats shows as a diff of these files; `go test ./audit -run
// TestVectors -update` rewrites them after a deliberate change. Each
// committed vector must also verify with the committed public key.

func TestVectors(t *testing.T) {
	seed := [32]byte{'s', 'e', 'a', 'l', 'g', 'a', 't', 'e'}
	f := newGoldenFixture(t, rand.NewChaCha8(seed))
	f, c := certFixtureOn(t, f, true)
	cert, err := SignCertificate(c, f.signer)
	if err != nil {
		t.Fatal(err)
	}
	cp := f.checkpoint()
	bundle := f.export(ExportOptions{Contract: "C-2026-001"})
	// A checkpoint cosigned by two witnesses (cosignature/v1), signed with
	// the same ledger key.
	w := newFakeWitnesses(t, "witness.client.example", "litewitness.client.example")
	wf := newGoldenFixture(t, rand.NewChaCha8(seed), func(o *Options) { o.Cosigner = w })
	wf.appendN(5, event)
	cosigned := wf.checkpoint()
	vectors := map[string][]byte{
		"verifier.pub":             []byte(f.vkey + "\n"),
		"checkpoint.note":          cp.Note,
		"certificate.json.gz":      cert,
		"bundle.json":              bundle,
		"checkpoint-cosigned.note": cosigned.Note,
		"witnesses.pub":            []byte(strings.Join(w.keys, "\n") + "\n"),
	}
	dir := filepath.Join("testdata", "vectors")
	for name, got := range vectors {
		path := filepath.Join(dir, name)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create the vectors)", err)
		}
		if strings.HasSuffix(name, ".gz") {
			// Compressed: the compressor's output may change with the Go
			// release; the format is the uncompressed document and the
			// signature member's shape.
			got, want = vectorContent(t, got), vectorContent(t, want)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the committed vector: the format changed (run with -update if that was meant, and review the diff)", name)
		}
	}
	if t.Failed() || *update {
		return
	}
	// The committed vectors verify with the committed key.
	vkey := strings.TrimSpace(string(read(t, dir, "verifier.pub")))
	if c, _, err := VerifyCertificate(read(t, dir, "certificate.json.gz"), vkey); err != nil || c.Format != CertificateFormat {
		t.Errorf("certificate.json.gz: %v", err)
	}
	if _, err := OpenCheckpoint(read(t, dir, "checkpoint.note"), vkey); err != nil {
		t.Errorf("checkpoint.note: %v", err)
	}
	if _, err := VerifyBundle(bytes.NewReader(read(t, dir, "bundle.json")), vkey, VerifyOptions{}, nil); err != nil {
		t.Errorf("bundle.json: %v", err)
	}
	if _, err := OpenCheckpoint(read(t, dir, "checkpoint-cosigned.note"), vkey); err != nil {
		t.Errorf("checkpoint-cosigned.note: %v", err)
	}
	wkeys := strings.Fields(string(read(t, dir, "witnesses.pub")))
	if got, err := CheckWitnesses(read(t, dir, "checkpoint-cosigned.note"), WitnessPolicy{Keys: wkeys, Quorum: 2}); err != nil || len(got) != 2 {
		t.Errorf("checkpoint-cosigned.note with witnesses.pub: %v %v", got, err)
	}
}

// TestCertificateV1Vector: a certificate issued by the first version
// (format v1, before master key rotation and completeness counts) still
// verifies.
func TestCertificateV1Vector(t *testing.T) {
	dir := filepath.Join("testdata", "vectors")
	vkey := strings.TrimSpace(string(read(t, dir, "certificate-v1.pub")))
	c, rep, err := VerifyCertificate(read(t, dir, "certificate-v1.json"), vkey)
	if err != nil {
		t.Fatal(err)
	}
	if c.Format != certificateFormatV1 || rep.Files != 1 || rep.Downloaded != 1 {
		t.Fatalf("v1 vector: format %q, report %+v", c.Format, rep)
	}
}

// TestCertificateV2Vector: a certificate of format v2 (one inclusion
// proof per event) still verifies, and altered in one proof hash fails.
func TestCertificateV2Vector(t *testing.T) {
	dir := filepath.Join("testdata", "vectors")
	vkey := strings.TrimSpace(string(read(t, dir, "certificate-v2.pub")))
	data := read(t, dir, "certificate-v2.json")
	c, rep, err := VerifyCertificate(data, vkey)
	if err != nil {
		t.Fatal(err)
	}
	if c.Format != CertificateFormatV2 || len(c.Hashes) != 0 || rep.Proofs == 0 || len(c.Proofs[0].Proof) == 0 {
		t.Fatalf("v2 vector: format %q, report %+v", c.Format, rep)
	}
}

// TestCertificateV3Vector: a certificate of format v3 (one multi-proof,
// uncompressed JSON) still verifies.
func TestCertificateV3Vector(t *testing.T) {
	dir := filepath.Join("testdata", "vectors")
	vkey := strings.TrimSpace(string(read(t, dir, "certificate-v3.pub")))
	c, rep, err := VerifyCertificate(read(t, dir, "certificate-v3.json"), vkey)
	if err != nil {
		t.Fatal(err)
	}
	if c.Format != CertificateFormatV3 || len(c.Hashes) == 0 || rep.Proofs == 0 || len(c.Proofs[0].Proof) != 0 {
		t.Fatalf("v3 vector: format %q, report %+v", c.Format, rep)
	}
}

// vectorContent is a v4 certificate's uncompressed first member and its
// signature member, which storedGzip writes the same in every release.
func vectorContent(t *testing.T, data []byte) []byte {
	t.Helper()
	cz, err := openCompressed(data)
	if err != nil {
		t.Fatal(err)
	}
	// The note's title, origin and id; not the hash of the compressed
	// member, nor the signature over it.
	signed := strings.Join(strings.SplitN(cz.sig, "\n", 4)[:3], "\n")
	return append(append(append([]byte(cz.format+"\n"), cz.raw...), signed...), data[len(cz.member1):len(cz.member1)+10]...)
}

func read(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
