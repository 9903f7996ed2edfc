package crypto

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/agecli"
)

func newKeyring(t *testing.T) *Keyring {
	t.Helper()
	mk, err := GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKeyring("# comment\n" + mk + "\n")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestHierarchyRoundTrip(t *testing.T) {
	k := newKeyring(t)
	kekRecipient, kekWrapped, err := k.Current().NewContractKey()
	if err != nil {
		t.Fatal(err)
	}
	tk, err := NewTransferKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, err := tk.KeyFile()
	if err != nil {
		t.Fatal(err)
	}
	wrappedKeyFile, err := WrapKeyFile(kekRecipient, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(wrappedKeyFile, []byte("AGE-SECRET-KEY")) || bytes.Contains(keyFile, []byte("AGE-SECRET-KEY")) {
		t.Fatal("identity visible in key file")
	}

	plain := make([]byte, 3<<20+17)
	rand.Read(plain)
	var file bytes.Buffer
	w, err := EncryptFile(&file, []*TransferKey{tk})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	ck, err := k.OpenContractKey(kekWrapped)
	if err != nil {
		t.Fatal(err)
	}
	kf, err := ck.UnwrapKeyFile(wrappedKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := NormalizePassphrase(strings.ToLower(strings.ReplaceAll(tk.Passphrase, "-", " ")))
	if !ok || p != tk.Passphrase {
		t.Fatalf("normalize: %q %v", p, ok)
	}
	id, err := OpenKeyFile(kf, p)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := DecryptFile(&out, bytes.NewReader(file.Bytes()), id); err != nil {
		t.Fatal(err)
	}
	got := out.Bytes()
	if sha256.Sum256(got) != sha256.Sum256(plain) {
		t.Fatal("round trip mismatch")
	}

	other, _ := NewPassphrase(rand.Reader)
	if _, err := OpenKeyFile(kf, other); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := ck.UnwrapKeyFile(nil); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("destroyed key: %v", err)
	}
	// Another KEK cannot open the wrapped key file.
	_, otherWrapped, _ := k.Current().NewContractKey()
	ock, _ := k.OpenContractKey(otherWrapped)
	if _, err := ock.UnwrapKeyFile(wrappedKeyFile); err == nil {
		t.Fatal("another contract key opened the key file")
	}
}

func TestPassphrase(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		p, err := NewPassphrase(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 29 || strings.Count(p, "-") != 4 {
			t.Fatalf("bad shape %q", p)
		}
		if strings.ContainsAny(p, "ILOU") {
			t.Fatalf("ambiguous symbol in %q", p)
		}
		if seen[p] {
			t.Fatal("repeated passphrase")
		}
		seen[p] = true
		n, ok := NormalizePassphrase(p)
		if !ok || n != p {
			t.Fatalf("canonical form not stable: %q → %q", p, n)
		}
	}
	if PassphraseBits < 100 {
		t.Fatalf("passphrase entropy %d bits < 100", PassphraseBits)
	}
	for in, want := range map[string]string{
		"abcde fghjk mnpqr stvwx yz012": "ABCDE-FGHJK-MNPQR-STVWX-YZ012",
		"ABCDEFGHJKMNPQRSTVWXYZ0OI":     "ABCDE-FGHJK-MNPQR-STVWX-YZ001",
		"ＡＢＣＤＥ－ＦＧＨＪＫ－MNPQR-STVWX-YZ012": "ABCDE-FGHJK-MNPQR-STVWX-YZ012",
	} {
		got, ok := NormalizePassphrase(in)
		if !ok || got != want {
			t.Errorf("NormalizePassphrase(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "short", "ABCDE-FGHJK-MNPQR-STVWX-YZ0123", "ABCDE-FGHJK-MNPQR-STVWX-YZ01U", "ABCDE-FGHJK-MNPQR-STVWX-YZ01!"} {
		if _, ok := NormalizePassphrase(bad); ok {
			t.Errorf("NormalizePassphrase(%q) accepted", bad)
		}
	}
}

func TestSpoolRoundTrip(t *testing.T) {
	k := newKeyring(t)
	var buf bytes.Buffer
	w, err := k.Current().SpoolWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "secret message body")
	w.Close()
	if bytes.Contains(buf.Bytes(), []byte("secret")) {
		t.Fatal("spool not encrypted")
	}
	r, err := k.SpoolReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	if string(b) != "secret message body" {
		t.Fatalf("got %q", b)
	}
}

// TestStockAgeCLI proves the recipient can decrypt without any vendor tool:
// age -d -i key.age file.age, typing the passphrase at age's prompt.
func TestStockAgeCLI(t *testing.T) {
	if _, err := agecli.Path(); err != nil {
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	tk, err := NewTransferKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewTransferKey(rand.Reader)
	kf, _ := tk.KeyFile()
	plain := make([]byte, 1<<20+3)
	rand.Read(plain)
	var file bytes.Buffer
	w, _ := EncryptFile(&file, []*TransferKey{other, tk})
	w.Write(plain)
	w.Close()
	os.WriteFile(filepath.Join(dir, "key.age"), kf, 0o600)
	os.WriteFile(filepath.Join(dir, "file.age"), file.Bytes(), 0o600)
	out := filepath.Join(dir, "file")
	if err := agecli.DecryptWithKeyFile(context.Background(), filepath.Join(dir, "key.age"), filepath.Join(dir, "file.age"), out, tk.Passphrase); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, plain) {
		t.Fatal("stock age produced different bytes")
	}
	// And the wrong passphrase fails.
	if err := agecli.DecryptWithKeyFile(context.Background(), filepath.Join(dir, "key.age"), filepath.Join(dir, "file.age"), out+"2", other.Passphrase); err == nil {
		t.Fatal("stock age accepted a wrong passphrase")
	}
}
