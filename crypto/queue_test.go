package crypto

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"filippo.io/age"
)

func newTestKeyring(t *testing.T) (*Keyring, string) {
	t.Helper()
	mk, err := GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKeyring(mk)
	if err != nil {
		t.Fatal(err)
	}
	return k, mk
}

// Transient secrets and spool files are sealed with the queue key: they
// open with this keyring (and with the queue identity derived from the
// master key), not with another gateway's, and data wrapped to the master
// key by earlier versions still opens.
func TestQueueKey(t *testing.T) {
	k, mk := newTestKeyring(t)
	other, _ := newTestKeyring(t)

	w, err := k.Current().WrapTransient([]byte("ABCDE-FGHJK-MNPQR-STVWX-YZ012"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(w, []byte("-> "+QueueStanzaType+" ")) || bytes.Contains(w, []byte("-> X25519")) {
		t.Fatalf("not a queue-key stanza:\n%s", w[:min(len(w), 200)])
	}
	if got, err := k.Unwrap(w); err != nil || string(got) != "ABCDE-FGHJK-MNPQR-STVWX-YZ012" {
		t.Fatalf("unwrap: %q, %v", got, err)
	}
	if _, err := other.Unwrap(w); err == nil {
		t.Fatal("another keyring opened the secret")
	}
	qid, err := QueueIdentity(mk)
	if err != nil {
		t.Fatal(err)
	}
	r, err := age.Decrypt(bytes.NewReader(w), qid)
	if err != nil {
		t.Fatalf("queue identity: %v", err)
	}
	if b, _ := io.ReadAll(r); string(b) != "ABCDE-FGHJK-MNPQR-STVWX-YZ012" {
		t.Fatalf("queue identity opened %q", b)
	}

	// A tampered stanza body fails to open.
	bad := bytes.Clone(w)
	i := bytes.Index(bad, []byte("\n---"))
	bad[i-1] ^= 1
	if _, err := k.Unwrap(bad); err == nil {
		t.Fatal("tampered stanza opened")
	}

	// Long-lived secrets stay age X25519 to the master key, and such data
	// (also spools of earlier versions) still opens.
	old, err := k.Current().Wrap([]byte("contract key"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(old, []byte("-> X25519 ")) {
		t.Fatal("Wrap no longer uses the master key")
	}
	if got, err := k.Unwrap(old); err != nil || string(got) != "contract key" {
		t.Fatalf("unwrap master-wrapped: %q, %v", got, err)
	}
	var oldSpool bytes.Buffer
	ow, _ := age.Encrypt(&oldSpool, k.Current().rcpt)
	io.WriteString(ow, "old spool")
	ow.Close()
	if r, err := k.SpoolReader(bytes.NewReader(oldSpool.Bytes())); err != nil {
		t.Fatalf("old spool: %v", err)
	} else if b, _ := io.ReadAll(r); string(b) != "old spool" {
		t.Fatalf("old spool read %q", b)
	}

	// A spool file round trip, streamed.
	var spool bytes.Buffer
	sw, err := k.Current().SpoolWriter(&spool)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("a message line\r\n", 10000)
	io.WriteString(sw, body)
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(spool.Bytes(), []byte("a message line")) {
		t.Fatal("spool in clear")
	}
	if _, err := other.SpoolReader(bytes.NewReader(spool.Bytes())); err == nil {
		t.Fatal("another keyring opened the spool")
	}
	sr, err := k.SpoolReader(bytes.NewReader(spool.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(sr); string(b) != body {
		t.Fatal("spool round trip changed the data")
	}
}
