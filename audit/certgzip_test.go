package audit

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestCertificateV4Bytes: a v4 certificate is two gzip members that zcat
// turns into a v3-shaped JSON document, and a change to any one byte of
// the file — the kept copy or the client's copy with names — fails
// verification.
func TestCertificateV4Bytes(t *testing.T) {
	f, c := certFixture(t)
	data, err := SignCertificate(c, f.signer)
	if err != nil {
		t.Fatal(err)
	}
	if !CertificateCompressed(data) || CertificateFileExt(data) != ".json.gz" {
		t.Fatalf("a new certificate is not compressed: % x", data[:8])
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(doc, []byte(`{"format": "`+CertificateFormat+`",`+"\n"+`"certificate": {`)) ||
		!bytes.Contains(doc, []byte("\n\"signature\": \"")) || !bytes.HasSuffix(doc, []byte("\n}\n")) {
		t.Fatalf("uncompressed, the certificate is not the JSON document:\n%s", doc)
	}
	// The uncompressed document is not a certificate: the signature is
	// over the compressed bytes.
	if _, _, err := VerifyCertificate(doc, f.vkey); err == nil {
		t.Error("the uncompressed v4 document verifies")
	}
	opening := bytes.Repeat([]byte{7}, openingSize)
	value := "見積書.pdf"
	client, err := CertificateWithNames(data, []Name{{Commitment: CommitName(opening, value), Value: value, Opening: opening}})
	if err != nil {
		t.Fatal(err)
	}
	if _, rep, err := VerifyCertificate(client, f.vkey); err != nil || rep.Names != 1 {
		t.Fatalf("the client's copy: %v %+v", err, rep)
	}
	for name, file := range map[string][]byte{"kept": data, "client": client} {
		if _, _, err := VerifyCertificate(file, f.vkey); err != nil {
			t.Fatalf("%s copy: %v", name, err)
		}
		for i := range file {
			for _, bit := range []byte{0x01, 0x80} {
				bad := bytes.Clone(file)
				bad[i] ^= bit
				if _, _, err := VerifyCertificate(bad, f.vkey); err == nil {
					t.Fatalf("%s copy: byte %d of %d changed (^%#x), the certificate still verifies", name, i, len(file), bit)
				}
			}
		}
		if _, _, err := VerifyCertificate(file[:len(file)-1], f.vkey); err == nil {
			t.Errorf("%s copy: truncated, the certificate still verifies", name)
		}
		if _, _, err := VerifyCertificate(append(bytes.Clone(file), 0), f.vkey); err == nil {
			t.Errorf("%s copy: with a byte appended, the certificate still verifies", name)
		}
	}
}

// TestCertificateV4Recompressed: the signature covers the compressed
// bytes, so the same content compressed again — or with another gzip
// header — is refused, as is a first member that names another format.
func TestCertificateV4Recompressed(t *testing.T) {
	f, c := certFixture(t)
	data, err := SignCertificate(c, f.signer)
	if err != nil {
		t.Fatal(err)
	}
	cz, err := openCompressed(data)
	if err != nil {
		t.Fatal(err)
	}
	rest := data[len(cz.member1):]
	head := append(append([]byte(certHead(CertificateFormat)), cz.raw...), certSigKey...)
	for name, level := range map[string]int{"fast": gzip.BestSpeed, "stored": gzip.NoCompression} {
		var m1 bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&m1, level)
		zw.Write(head)
		zw.Close()
		bad := append(m1.Bytes(), rest...)
		var ve *VerifyError
		if _, _, err := VerifyCertificate(bad, f.vkey); !errors.As(err, &ve) || !errors.Is(err, ErrTampered) {
			t.Errorf("recompressed %s: got %v, want a tampering error", name, err)
		}
	}
	var m1 bytes.Buffer
	zw := gzip.NewWriter(&m1)
	zw.Write(bytes.Replace(head, []byte(CertificateFormat), []byte(CertificateFormatV3), 1))
	zw.Close()
	if _, _, err := VerifyCertificate(append(m1.Bytes(), rest...), f.vkey); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), CertificateFormatV3) {
		t.Errorf("a first member of format v3: got %v, want ErrMalformed naming the format", err)
	}
	// A signature member compressed rather than stored.
	var m2 bytes.Buffer
	zw = gzip.NewWriter(&m2)
	tail, err := certTail(cz.sig, nil)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(tail)
	zw.Close()
	if _, _, err := VerifyCertificate(append(bytes.Clone(cz.member1), m2.Bytes()...), f.vkey); !errors.Is(err, ErrMalformed) {
		t.Errorf("a compressed signature member: got %v, want ErrMalformed", err)
	}
}

// TestStoredGzip: storedGzip is a gzip member any reader opens, across the
// 64 KiB limit of a stored block.
func TestStoredGzip(t *testing.T) {
	for _, n := range []int{0, 1, 0xffff, 0x10000, 3*0xffff + 5} {
		want := bytes.Repeat([]byte("証明"), n/6+1)[:n]
		zr, err := gzip.NewReader(bytes.NewReader(storedGzip(want)))
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: got %d bytes, %v", n, len(got), err)
		}
	}
}
