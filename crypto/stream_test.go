package crypto

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"

	"filippo.io/age"
)

// TestDecryptablePrefix checks DecryptablePrefix against the age library
// itself: for files of sizes around the chunk boundaries, cut at every
// interesting offset, the plaintext age yields before it reports the cut
// (and that it is the file's beginning) is exactly what DecryptablePrefix
// says.
func TestDecryptablePrefix(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	const c = ageChunkSize
	for _, size := range []int64{0, 1, c - 1, c, c + 1, 2 * c, 3*c + 17} {
		plain := make([]byte, size)
		rand.Read(plain)
		var ct bytes.Buffer
		w, err := age.Encrypt(&ct, id.Recipient())
		if err != nil {
			t.Fatal(err)
		}
		w.Write(plain)
		w.Close()
		cipher := ct.Bytes()
		total := int64(len(cipher))
		header := total - agePayloadSize(size)
		if header <= 0 || cipher[header-1] != '\n' || !bytes.Contains(cipher[:header], []byte("\n--- ")) {
			t.Fatalf("size %d: payload size %d of %d", size, agePayloadSize(size), total)
		}
		cuts := map[int64]bool{0: true, 1: true, total - 1: true, total: true, total + 5: true}
		for k := int64(0); k <= size/c+1; k++ {
			end := header + ageNonceSize + k*(c+ageTagSize)
			for _, d := range []int64{-1, 0, 1} {
				if n := end + d; n >= 0 && n <= total {
					cuts[n] = true
				}
			}
		}
		for n := range cuts {
			got := int64(0)
			if r, err := age.Decrypt(bytes.NewReader(cipher[:min(n, total)]), id); err == nil {
				out, _ := io.ReadAll(r)
				if !bytes.Equal(out, plain[:len(out)]) {
					t.Fatalf("size %d, cut %d: age yields bytes that are not the file's beginning", size, n)
				}
				got = int64(len(out))
			}
			if want := DecryptablePrefix(size, total, n); want != got {
				t.Errorf("size %d (file.age %d, header %d), first %d bytes: DecryptablePrefix = %d, age decrypts %d", size, total, header, n, want, got)
			}
		}
	}
	// Sizes that are not an age file's claim nothing.
	for _, tc := range [][3]int64{{100, 100, 50}, {100, 10, 10}, {-1, 500, 500}} {
		if got := DecryptablePrefix(tc[0], tc[1], tc[2]); got != 0 {
			t.Errorf("DecryptablePrefix%v = %d, want 0", tc, got)
		}
	}
}
