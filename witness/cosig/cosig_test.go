package cosig

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var when = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)

func keys(t *testing.T, name string, seed byte) (*Signer, *Verifier) {
	t.Helper()
	skey, vkey, err := GenerateKey(rand.NewChaCha8([32]byte{seed}), name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(skey, func() time.Time { return when })
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if s.VerifierKey() != vkey || v.String() != vkey {
		t.Fatalf("verifier keys differ: %q %q %q", s.VerifierKey(), v.String(), vkey)
	}
	return s, v
}

const body = "sealgate.test/ledger\n3\nRcCI1Nk56ZcSmIEfIn0SleqtV7uvrlXNccFx595Iwl0=\n"

func logNote(t *testing.T) []byte {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.NewChaCha8([32]byte{9}), "sealgate.test/ledger")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: body}, ls)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestSignedMessage pins the cosignature/v1 format byte for byte: the key
// ID is SHA-256(name || "\n" || 0x04 || public key)[:4], the signature is
// a big-endian timestamp followed by an Ed25519 signature of
// "cosignature/v1\ntime <t>\n" and the checkpoint body.
func TestSignedMessage(t *testing.T) {
	s, v := keys(t, "witness.example/w1", 1)
	pub := s.key.Public().(ed25519.PublicKey)
	h := sha256.Sum256(append([]byte("witness.example/w1\n\x04"), pub...))
	if v.KeyHash() != binary.BigEndian.Uint32(h[:4]) {
		t.Fatalf("key ID %08x, want %x", v.KeyHash(), h[:4])
	}
	wantKey := "witness.example/w1+" + hex.EncodeToString(h[:4]) + "+" +
		base64.StdEncoding.EncodeToString(append([]byte{0x04}, pub...))
	if v.String() != wantKey {
		t.Fatalf("vkey %q, want %q", v.String(), wantKey)
	}
	sig, err := s.Sign([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != 72 || binary.BigEndian.Uint64(sig[:8]) != uint64(when.Unix()) {
		t.Fatalf("signature %d bytes, timestamp %d", len(sig), binary.BigEndian.Uint64(sig[:8]))
	}
	msg := "cosignature/v1\ntime " + "1775034000" + "\n" + body
	if when.Unix() != 1775034000 {
		t.Fatalf("test clock: %d", when.Unix())
	}
	if !ed25519.Verify(pub, []byte(msg), sig[8:]) {
		t.Fatal("the signature is not over cosignature/v1, time, body")
	}
	if !v.Verify([]byte(body), sig) {
		t.Fatal("Verify refused a good cosignature")
	}
	bad := bytes.Clone(sig)
	binary.BigEndian.PutUint64(bad[:8], uint64(when.Unix()+1))
	if v.Verify([]byte(body), bad) {
		t.Fatal("Verify accepted a cosignature with a changed timestamp")
	}
	if v.Verify([]byte(strings.Replace(body, "\n3\n", "\n4\n", 1)), sig) {
		t.Fatal("Verify accepted a cosignature of another checkpoint")
	}
}

// TestOpen: a checkpoint signed by the log and cosigned by two witnesses
// is an ordinary note; Open returns the cosignatures of the keys asked
// for, ignores the others, and fails on a cosignature that does not
// verify.
func TestOpen(t *testing.T) {
	s1, v1 := keys(t, "w1.example", 1)
	s2, v2 := keys(t, "w2.example", 2)
	_, v3 := keys(t, "w3.example", 3)
	msg := logNote(t)
	n, err := note.Open(msg, nil)
	var unv *note.UnverifiedNoteError
	if !errors.As(err, &unv) {
		t.Fatal(err)
	}
	n = unv.Note
	cosigned, err := note.Sign(&note.Note{Text: n.Text}, s1, s2)
	if err != nil {
		t.Fatal(err)
	}
	full := append(bytes.Clone(msg), cosigned[len(n.Text)+1:]...)
	got, err := Open(full, []*Verifier{v1, v2, v3})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Witness != v1.ID() || got[1].Witness != v2.ID() || !got[0].Time.Equal(when) {
		t.Fatalf("got %+v", got)
	}
	if !strings.HasPrefix(got[0].Line, "— w1.example ") || !strings.HasSuffix(got[0].Line, "\n") {
		t.Fatalf("line %q", got[0].Line)
	}
	if got, err := Open(full, []*Verifier{v3}); err != nil || len(got) != 0 {
		t.Fatalf("a witness that did not cosign: %v, %v", got, err)
	}
	altered := bytes.Replace(full, []byte("\n3\n"), []byte("\n4\n"), 1)
	var inv *note.InvalidSignatureError
	if _, err := Open(altered, []*Verifier{v1}); !errors.As(err, &inv) || inv.Name != "w1.example" {
		t.Fatalf("altered checkpoint: %v", err)
	}
}

func TestKeys(t *testing.T) {
	if _, _, err := GenerateKey(rand.NewChaCha8([32]byte{}), "bad name"); !errors.Is(err, ErrKey) {
		t.Fatalf("space in name: %v", err)
	}
	_, logV, err := note.GenerateKey(rand.NewChaCha8([32]byte{1}), "sealgate.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewVerifier(logV); !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), "log's key") {
		t.Fatalf("a log key as a witness key: %v", err)
	}
	_, v := keys(t, "w.example", 1)
	bad := v.String()[:len(v.String())-4] + "AAA="
	if _, err := NewVerifier(bad); !errors.Is(err, ErrKey) {
		t.Fatalf("altered key: %v", err)
	}
	if _, err := NewSigner("PRIVATE+KEY+w.example+00000000+"+base64.StdEncoding.EncodeToString(make([]byte, 33)), nil); !errors.Is(err, ErrKey) {
		t.Fatalf("secret key with a wrong key ID: %v", err)
	}
}

func TestRequest(t *testing.T) {
	cp := logNote(t)
	r := &Request{OldSize: 20852014, Proof: tlog.TreeProof{{1}, {2}}, Checkpoint: cp}
	b := r.Marshal()
	if !bytes.HasPrefix(b, []byte("old 20852014\nAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\nsealgate.test/ledger\n")) {
		t.Fatalf("body:\n%s", b)
	}
	got, err := ParseRequest(b)
	if err != nil || got.OldSize != r.OldSize || len(got.Proof) != 2 || got.Proof[1] != r.Proof[1] || !bytes.Equal(got.Checkpoint, cp) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	zero, err := ParseRequest((&Request{Checkpoint: cp}).Marshal())
	if err != nil || zero.OldSize != 0 || len(zero.Proof) != 0 {
		t.Fatalf("old 0: %+v %v", zero, err)
	}
	long := &Request{OldSize: 1, Checkpoint: cp}
	for range MaxProofLines + 1 {
		long.Proof = append(long.Proof, tlog.Hash{})
	}
	for name, body := range map[string][]byte{
		"64 proof lines": long.Marshal(),
		"leading zero":   []byte("old 01\n\n" + string(cp)),
		"negative":       []byte("old -1\n\n" + string(cp)),
		"no blank line":  []byte("old 1\n" + string(cp)),
		"not a hash":     []byte("old 1\nxyz\n\n" + string(cp)),
		"no old line":    []byte("new 1\n\n" + string(cp)),
	} {
		if _, err := ParseRequest(body); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseCheckpoint(t *testing.T) {
	c, err := ParseCheckpoint(body + "extension\n")
	if err != nil || c.Origin != "sealgate.test/ledger" || c.Size != 3 {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{"o\n03\n" + tlog.Hash{}.String() + "\n", "o\n3\n", "\n3\n" + tlog.Hash{}.String() + "\n", "o\n3\nnothash\n"} {
		if _, err := ParseCheckpoint(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
