package crypto

import (
	"bytes"
	"compress/zlib"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing"

	agetest "c2sp.org/CCTV/age"
	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
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

// TestDecryptAgeVectors runs decryptAge over the age test vectors
// (c2sp.org/CCTV/age) that are binary files, as file.age always is: each
// that age says decrypts must decrypt to the plaintext whose SHA-256 the
// vector gives; each that must fail must fail, having written no more than
// the vector's partial plaintext, when it gives one. Armored vectors are
// left out: the portal never reads an armored file.age.
func TestDecryptAgeVectors(t *testing.T) {
	entries, err := fs.ReadDir(agetest.Vectors, ".")
	if err != nil {
		t.Fatal(err)
	}
	ran := map[string]int{}
	for _, e := range entries {
		v := parseVector(t, e.Name())
		if v.armored {
			continue
		}
		ran[v.expect]++
		t.Run(e.Name(), func(t *testing.T) {
			for _, how := range decryptWays {
				t.Run(how.name, func(t *testing.T) { checkVector(t, v, how.fn) })
			}
		})
	}
	// The vectors this test depends on are there (a renamed field would
	// leave every vector out, or count every one a failure).
	if ran["success"] < 10 || ran["payload failure"] < 3 || ran["header failure"] < 20 || ran["no match"] < 5 {
		t.Fatalf("vectors run by expectation: %v", ran)
	}
}

// decryptWays are the ways the package reads an age file: written to a
// writer with the size unknown (the portal's download), read with Read
// with the size known (a spool file), written with the size known (a
// wrapped secret).
var decryptWays = []struct {
	name string
	fn   func(dst io.Writer, b []byte, ids ...age.Identity) (int64, error)
}{
	{"WriteTo", func(dst io.Writer, b []byte, ids ...age.Identity) (int64, error) {
		return decryptAge(dst, bytes.NewReader(b), ids...)
	}},
	{"Read, sized", func(dst io.Writer, b []byte, ids ...age.Identity) (int64, error) {
		r, err := openAge(bytes.NewReader(b), int64(len(b)), ids...)
		if err != nil {
			return 0, err
		}
		// One small Read at a time: what a chunk hands out is split.
		return io.CopyBuffer(dst, struct{ io.Reader }{r}, make([]byte, 1000))
	}},
	{"WriteTo, sized", func(dst io.Writer, b []byte, ids ...age.Identity) (int64, error) {
		r, err := openAge(bytes.NewReader(b), int64(len(b)), ids...)
		if err != nil {
			return 0, err
		}
		return r.WriteTo(dst)
	}},
	// A size that is wrong must not change what is accepted.
	{"WriteTo, size too small", func(dst io.Writer, b []byte, ids ...age.Identity) (int64, error) {
		r, err := openAge(bytes.NewReader(b), int64(len(b)/2), ids...)
		if err != nil {
			return 0, err
		}
		return r.WriteTo(dst)
	}},
	{"WriteTo, size too large", func(dst io.Writer, b []byte, ids ...age.Identity) (int64, error) {
		r, err := openAge(bytes.NewReader(b), int64(len(b)+1000), ids...)
		if err != nil {
			return 0, err
		}
		return r.WriteTo(dst)
	}},
}

// sealChunks makes an age file to id with the chunks given, each sealed
// as the last or not as told: what any sender can make, since the sender
// picks the file key. extra is a stanza put before id's.
func sealChunks(t *testing.T, id *age.X25519Identity, extra string, chunks []string, last []bool) []byte {
	t.Helper()
	fileKey := make([]byte, 16)
	rand.Read(fileKey)
	stanzas, err := id.Recipient().Wrap(fileKey)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawStdEncoding
	var f bytes.Buffer
	f.WriteString("age-encryption.org/v1\n" + extra)
	for _, st := range stanzas {
		f.WriteString("-> " + st.Type + " " + strings.Join(st.Args, " ") + "\n" + b64.EncodeToString(st.Body) + "\n")
	}
	f.WriteString("---")
	hk, _ := hkdf.Key(sha256.New, fileKey, nil, "header", 32)
	mac := hmac.New(sha256.New, hk)
	mac.Write(f.Bytes())
	f.WriteString(" " + b64.EncodeToString(mac.Sum(nil)) + "\n")
	nonce := make([]byte, ageNonceSize)
	rand.Read(nonce)
	f.Write(nonce)
	pk, _ := hkdf.Key(sha256.New, fileKey, nonce, "payload", chacha20poly1305.KeySize)
	aead, _ := chacha20poly1305.New(pk)
	for i, c := range chunks {
		var n [chacha20poly1305.NonceSize]byte
		binary.BigEndian.PutUint64(n[3:11], uint64(i))
		if last[i] {
			n[11] = 1
		}
		f.Write(aead.Seal(nil, n[:], []byte(c), nil))
	}
	return f.Bytes()
}

// TestDecryptAgeCrafted: files a sender can craft, each read every way
// (decryptWays) and by age.Decrypt, with the same outcome — a short chunk
// sealed as a middle one (refused), a header line of 20,000 bytes (an
// unknown stanza, accepted), a header over 2 MiB (refused).
func TestDecryptAgeCrafted(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	long := "-> future " + strings.Repeat("x", 20000) + "\n\n"
	huge := strings.Repeat("-> future x\n"+strings.Repeat("QUFB", 16)+"\n\n", 2<<20/70)
	files := map[string][]byte{
		"short middle chunk": sealChunks(t, id, "", []string{strings.Repeat("A", 100), "BBBB"}, []bool{false, true}),
		"long header line":   sealChunks(t, id, long, []string{"hello"}, []bool{true}),
		"header over 2 MiB":  sealChunks(t, id, huge, []string{"hello"}, []bool{true}),
		"well formed":        sealChunks(t, id, "", []string{strings.Repeat("A", ageChunkSize), "tail"}, []bool{false, true}),
	}
	for name, b := range files {
		sameAsAge(t, name, b, id)
	}
}

// sameAsAge reads b every way (decryptWays) and fails the test unless each
// writes what age.Decrypt gives, and fails when age does. It returns age's
// plaintext.
func sameAsAge(t *testing.T, label string, b []byte, id age.Identity) []byte {
	t.Helper()
	var want []byte
	r, wantErr := age.Decrypt(bytes.NewReader(b), id)
	if wantErr == nil {
		want, wantErr = io.ReadAll(r)
	}
	for _, how := range decryptWays {
		var got bytes.Buffer
		_, gotErr := how.fn(&got, b, id)
		if (gotErr == nil) != (wantErr == nil) || !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s, %s: %d bytes, error %v; age: %d bytes, %v", label, how.name, got.Len(), gotErr, len(want), wantErr)
		}
	}
	return want
}

// checkVector decrypts v one way and checks the outcome the vector gives.
func checkVector(t *testing.T, v *ageVector, decrypt func(io.Writer, []byte, ...age.Identity) (int64, error)) {
	var out bytes.Buffer
	n, err := decrypt(&out, v.file, v.identities...)
	if n != int64(out.Len()) {
		t.Fatalf("reported %d bytes, wrote %d", n, out.Len())
	}
	if v.expect == "success" {
		if err != nil {
			t.Fatalf("expected success: %v", err)
		}
		if sha256.Sum256(out.Bytes()) != v.payload {
			t.Fatal("plaintext does not match the vector's")
		}
		return
	}
	if err == nil {
		t.Fatalf("expected %s, got success", v.expect)
	}
	if v.expect != "payload failure" && out.Len() != 0 {
		t.Fatalf("%s, but %d bytes written", v.expect, out.Len())
	}
	if v.expect == "payload failure" && v.hasPayload && sha256.Sum256(out.Bytes()) != v.payload {
		t.Fatalf("partial plaintext (%d bytes) does not match the vector's", out.Len())
	}
}

type ageVector struct {
	expect     string
	payload    [32]byte
	hasPayload bool
	identities []age.Identity
	armored    bool
	file       []byte
}

// parseVector reads one test vector: "name: value" lines, an empty line,
// then the file (zlib-compressed when "compressed: zlib").
func parseVector(t *testing.T, name string) *ageVector {
	t.Helper()
	data, err := fs.ReadFile(agetest.Vectors, name)
	if err != nil {
		t.Fatal(err)
	}
	v := &ageVector{}
	compressed := false
	for {
		line, rest, ok := bytes.Cut(data, []byte("\n"))
		if !ok {
			t.Fatalf("%s: no end of the vector's fields", name)
		}
		data = rest
		if len(line) == 0 {
			break
		}
		k, val, _ := strings.Cut(string(line), ": ")
		switch k {
		case "expect":
			v.expect = val
		case "payload":
			h, err := hex.DecodeString(val)
			if err != nil || len(h) != 32 {
				t.Fatalf("%s: payload %q", name, val)
			}
			copy(v.payload[:], h)
			v.hasPayload = true
		case "identity":
			id, err := age.ParseX25519Identity(val)
			if err != nil {
				// Other kinds (hybrid) are parsed by age.ParseIdentities.
				ids, perr := age.ParseIdentities(strings.NewReader(val))
				if perr != nil {
					t.Fatalf("%s: identity: %v", name, err)
				}
				v.identities = append(v.identities, ids...)
				continue
			}
			v.identities = append(v.identities, id)
		case "passphrase":
			id, err := age.NewScryptIdentity(val)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			v.identities = append(v.identities, id)
		case "armored":
			v.armored = val == "yes"
		case "compressed":
			if val != "zlib" {
				t.Fatalf("%s: compressed: %s", name, val)
			}
			compressed = true
		}
	}
	v.file = data
	if compressed {
		zr, err := zlib.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v.file, err = io.ReadAll(zr); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if v.expect == "" {
		t.Fatalf("%s: no expectation", name)
	}
	return v
}

// TestDecryptAgeMatchesAge compares decryptAge with age.Decrypt on files
// of sizes around the chunk boundaries, intact and damaged (a flipped bit
// in each part of the file, cut short, with bytes appended): the same
// plaintext written, and an error from both or from neither.
func TestDecryptAgeMatchesAge(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	other, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 1, ageChunkSize - 1, ageChunkSize, ageChunkSize + 1, 2 * ageChunkSize, 3*ageChunkSize + 100} {
		plain := make([]byte, size)
		rand.Read(plain)
		var file bytes.Buffer
		w, err := age.Encrypt(&file, other.Recipient(), id.Recipient())
		if err != nil {
			t.Fatal(err)
		}
		w.Write(plain)
		w.Close()
		good := file.Bytes()
		payload := len(good) - int(agePayloadSize(int64(size)))
		damaged := map[string][]byte{"intact": good}
		for _, off := range []int{10, payload - 5, payload + 3, payload + ageNonceSize + 2, len(good) - 1,
			payload + ageNonceSize + ageChunkSize + ageTagSize - 1} {
			if off < len(good) {
				b := bytes.Clone(good)
				b[off] ^= 0x40
				damaged[fmt.Sprintf("bit at %d", off)] = b
			}
		}
		for _, cut := range []int{payload - 1, payload + 8, payload + ageNonceSize, len(good) - ageTagSize, len(good) - 1,
			payload + ageNonceSize + ageChunkSize + ageTagSize} {
			if cut > 0 && cut < len(good) {
				damaged[fmt.Sprintf("cut at %d", cut)] = good[:cut]
			}
		}
		damaged["one byte appended"] = append(bytes.Clone(good), 0)
		damaged["a chunk appended"] = append(bytes.Clone(good), make([]byte, ageChunkSize+ageTagSize)...)
		for name, b := range damaged {
			want := sameAsAge(t, fmt.Sprintf("%d bytes, %s", size, name), b, id)
			if name == "intact" && !bytes.Equal(want, plain) {
				t.Fatalf("%d bytes: age's plaintext differs", size)
			}
		}
	}
}

// TestDecryptAgeWrongIdentity: a file not encrypted to the identity gives
// age's NoIdentityMatchError and writes nothing.
func TestDecryptAgeWrongIdentity(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	var file bytes.Buffer
	w, _ := age.Encrypt(&file, other.Recipient())
	w.Write([]byte("secret"))
	w.Close()
	var out bytes.Buffer
	_, err := decryptAge(&out, &file, id)
	var nm *age.NoIdentityMatchError
	if !errors.As(err, &nm) || out.Len() != 0 {
		t.Fatalf("wrong identity: %v, %d bytes", err, out.Len())
	}
}

// BenchmarkDecryptFile decrypts 64 MiB, with age's reader and with
// decryptAge, reporting the bytes allocated per MiB of plaintext.
func BenchmarkDecryptFile(b *testing.B) {
	id, _ := age.GenerateX25519Identity()
	plain := make([]byte, 64<<20)
	var file bytes.Buffer
	w, _ := age.Encrypt(&file, id.Recipient())
	w.Write(plain)
	w.Close()
	b.Run("age.Decrypt", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			r, err := age.Decrypt(bytes.NewReader(file.Bytes()), id)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decryptAge", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			if _, err := decryptAge(io.Discard, bytes.NewReader(file.Bytes()), id); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUnwrap unwraps a 32-byte secret wrapped to the master key, as
// delivering a notice does for its link token and passphrase: the bytes
// allocated per unwrap are age's header work and the secret's buffers.
func BenchmarkUnwrap(b *testing.B) {
	mk, err := GenerateMasterKey()
	if err != nil {
		b.Fatal(err)
	}
	k, err := NewKeyring(mk)
	if err != nil {
		b.Fatal(err)
	}
	wrapped, err := k.Current().Wrap(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Unwrap(wrapped); err != nil {
			b.Fatal(err)
		}
	}
}
