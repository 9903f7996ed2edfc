package mimeseal

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// crlfReference normalises line endings one byte at a time.
func crlfReference(in []byte) []byte {
	var out []byte
	for i := 0; i < len(in); i++ {
		switch in[i] {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(in) && in[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, in[i])
		}
	}
	return out
}

type chunkReader struct {
	b []byte
	r *rand.Rand
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1+c.r.IntN(100))], c.b)
	c.b = c.b[n:]
	return n, nil
}

func checkCRLF(t *testing.T, in []byte) {
	want := crlfReference(in)
	readers := map[string]io.Reader{
		"plain":    NewCRLFReader(bytes.NewReader(in)),
		"half":     NewCRLFReader(iotest.HalfReader(bytes.NewReader(in))),
		"data err": NewCRLFReader(iotest.DataErrReader(bytes.NewReader(in))),
		"chunks":   NewCRLFReader(&chunkReader{in, rand.New(rand.NewPCG(uint64(len(in)), 5))}),
	}
	if len(in) < 4096 {
		readers["one byte"] = iotest.OneByteReader(NewCRLFReader(iotest.OneByteReader(bytes.NewReader(in))))
	}
	for name, r := range readers {
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: %q\nwant %q", name, got, want)
		}
	}
	var c crlfCheck
	if !c.ok(want) || c.cr {
		t.Fatalf("output not CRLF-clean")
	}
}

func TestCRLFReader(t *testing.T) {
	for _, s := range []string{"", "a", "\r", "\n", "\r\n", "\n\r", "a\rb\nc\r\nd", "\r\r\n\n", "x\r", "end\r\n", "\r\n\r\n.\r\n", "\n.\n"} {
		checkCRLF(t, []byte(s))
	}
	// chunk boundaries fall between CR and LF
	big := bytes.Repeat([]byte("0123456789abcdef\r\n"), 20000)
	checkCRLF(t, big)
	big[crlfChunk-1] = '\r'
	big[crlfChunk] = 'x'
	checkCRLF(t, big)
	checkCRLF(t, bytes.ReplaceAll(big, []byte("\r\n"), []byte("\n")))
	// clean input is passed through unchanged
	clean := bytes.Repeat([]byte("line\r\n"), 50000)
	got, _ := io.ReadAll(NewCRLFReader(bytes.NewReader(clean)))
	if !bytes.Equal(got, clean) {
		t.Fatal("clean input changed")
	}
}

func FuzzCRLF(f *testing.F) {
	for _, s := range []string{"a\rb\nc\r\nd", "\r\r\n\n", "\n.\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) { checkCRLF(t, in) })
}

func BenchmarkCRLFReader(b *testing.B) {
	src := bytes.Repeat(b64(bytes.Repeat([]byte{0xa5, 0x5a, 0x33}, 1<<20)), 8)
	b.SetBytes(int64(len(src)))
	buf := make([]byte, 64<<10)
	for b.Loop() {
		r := NewCRLFReader(bytes.NewReader(src))
		for {
			if _, err := r.Read(buf); err != nil {
				break
			}
		}
	}
}
