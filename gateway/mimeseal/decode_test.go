package mimeseal

import (
	"bytes"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"mime/quotedprintable"
	"testing"
)

// b64 encodes p in lines of 76 characters with CRLF, as mailers do.
func b64(p []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(p)
	var b bytes.Buffer
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	return b.Bytes()
}

type sinkPW struct{ bytes.Buffer }

func (*sinkPW) Close() error { return nil }
func (*sinkPW) Abort(error)  {}
func newBatch(pw PartWriter) *batcher {
	return &batcher{pw: pw, buf: make([]byte, 0, batchCap)}
}

// feed writes in to d in random pieces.
func feed(d decoder, in []byte, r *rand.Rand) error {
	for len(in) > 0 {
		n := 1 + r.IntN(min(len(in), 1+r.IntN(5000)))
		if err := d.write(in[:n]); err != nil {
			return err
		}
		in = in[n:]
	}
	return d.close()
}

func decodeB64(t testing.TB, in []byte, seed uint64) ([]byte, error) {
	pw := &sinkPW{}
	b := newBatch(pw)
	d := &b64Decoder{stage: make([]byte, 0, b64Stage)}
	d.reset(b)
	err := feed(d, in, rand.New(rand.NewPCG(seed, 1)))
	if err == nil {
		err = b.flush()
	}
	return pw.Bytes(), err
}

func TestBase64Decoder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 4, 57, 58, 1000, b64Stage*3/4 - 1, b64Stage * 3 / 4, b64Stage*3/4 + 1, 1 << 20} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		enc := b64(p)
		got, err := decodeB64(t, enc, uint64(n))
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("n=%d: err %v, equal %v", n, err, bytes.Equal(got, p))
		}
		// white space (spaces, tabs, bare CR) anywhere is skipped
		ws := bytes.ReplaceAll(enc, []byte("A"), []byte("A \t"))
		ws = bytes.ReplaceAll(ws, []byte("B"), []byte("\rB"))
		if got, err := decodeB64(t, ws, 7); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("n=%d with white space: err %v", n, err)
		}
		// missing padding is tolerated
		unpadded := bytes.TrimRight(enc, "=")
		if got, err := decodeB64(t, unpadded, 9); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("n=%d unpadded: err %v", n, err)
		}
	}
	// decoding stops at padding
	got, err := decodeB64(t, []byte("QUJD\r\nRA==\r\nthis is ignored ***\r\n"), 1)
	if err != nil || string(got) != "ABCD" {
		t.Errorf("stop at padding: %q %v", got, err)
	}
	for _, bad := range []string{"QUJD*RA==", "QUJD\r\nR", "QUJ-", "QU_D", "QUJD\x00"} {
		if _, err := decodeB64(t, []byte(bad), 3); KindOf(err) != Malformed {
			t.Errorf("%q: err %v, want Malformed", bad, err)
		}
	}
}

func TestQuotedPrintableDecoder(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	decode := func(in []byte) []byte {
		pw := &sinkPW{}
		b := newBatch(pw)
		d := &qpDecoder{}
		d.reset(b)
		if err := feed(d, in, r); err != nil {
			t.Fatal(err)
		}
		b.flush()
		return pw.Bytes()
	}
	// Valid input: same as the standard library.
	for i := 0; i < 200; i++ {
		p := make([]byte, r.IntN(3000))
		for j := range p {
			switch r.IntN(6) {
			case 0:
				p[j] = byte(r.Uint32())
			case 1:
				p[j] = " \t\r\n="[r.IntN(5)]
			default:
				p[j] = byte('a' + r.IntN(26))
			}
		}
		var enc bytes.Buffer
		w := quotedprintable.NewWriter(&enc)
		w.Write(p)
		w.Close()
		want, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(enc.Bytes())))
		if err != nil {
			t.Fatal(err)
		}
		if got := decode(enc.Bytes()); !bytes.Equal(got, want) {
			t.Fatalf("differs from mime/quotedprintable:\n%q\n%q", got, want)
		}
	}
	for in, want := range map[string]string{
		"a=3Db=3db":            "a=b=b",
		"soft=\r\nbreak":       "softbreak",
		"soft= \t\r\nbreak":    "softbreak",
		"trailing  \r\nnext\t": "trailing\r\nnext",
		"broken =ZZ and =4":    "broken =ZZ and =4",
		"=\r\n=":               "",
		"lone = sign":          "lone = sign",
		"bare\nlf":             "bare\nlf",
		"x=":                   "x",
	} {
		if got := string(decode([]byte(in))); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func FuzzBase64Decoder(f *testing.F) {
	f.Add([]byte("QUJDRA=="), uint64(1))
	f.Add([]byte("QU JD\r\nRA"), uint64(2))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		got, err := decodeB64(t, in, seed)
		// Reference: strip white space, stop at '=', decode leniently without padding.
		s := stripSpace(append([]byte(nil), in...))
		if i := bytes.IndexByte(s, '='); i >= 0 {
			s = s[:i]
		}
		want, werr := base64.RawStdEncoding.DecodeString(string(s))
		if (err != nil) != (werr != nil) {
			t.Fatalf("err %v, reference %v", err, werr)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("got %q want %q", got, want)
		}
	})
}
