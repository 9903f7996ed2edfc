package linktoken

import (
	"bytes"
	"crypto/rand"
	"testing"
)

func TestNewIsValidAndHashIgnoresCase(t *testing.T) {
	tok, err := New(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if !Valid(tok) {
		t.Fatalf("a new token %q is not valid", tok)
	}
	up := []byte(tok)
	for i, c := range up {
		if c >= 'a' && c <= 'z' {
			up[i] = c - 'a' + 'A'
		}
	}
	if !bytes.Equal(Hash(tok), Hash(string(up))) {
		t.Fatal("the hash depends on the case of the token")
	}
	if other, _ := New(rand.Reader); other == tok {
		t.Fatal("two tokens are equal")
	}
}

func TestValidRefusesGarbage(t *testing.T) {
	for _, s := range []string{"", "short", "abcdefghijklmnopqrstuvwxyz234567x", "abcdefghijklmnopqrstuvwxyz23456!", "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "abcdefghijklmnopqrstuvwxyz234501"} {
		if Valid(s) {
			t.Errorf("Valid(%q) = true", s)
		}
	}
}
