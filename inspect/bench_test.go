package inspect

import (
	"fmt"
	"testing"
)

// benchInputs builds parts of the given size in the shapes the inspectors treat differently:
// no container (sniffing only), a PDF (scanned whole for /Encrypt), a stored ZIP entry (passed
// over by its size), a ZIP entry with a data descriptor (searched for its end), and an OLE
// compound file (every 64-byte block looked at).
func benchInputs(size int) map[string][]byte {
	data := randomBytes(size)
	pdf := append([]byte("%PDF-1.7\n"), data[9:]...)
	zipStored := func(flags uint16) []byte {
		h := []byte("PK\x03\x04")
		h = append(h, le16b(20)...)
		h = append(h, le16b(flags)...)
		h = append(h, le16b(0)...)            // stored
		h = append(h, 0, 0, 0, 0, 0, 0, 0, 0) // time, date, crc
		csize := uint32(size - 100)
		if flags&8 != 0 {
			csize = 0
		}
		h = append(h, le32b(csize)...)
		h = append(h, le32b(csize)...)
		h = append(h, le16b(5)...)
		h = append(h, le16b(0)...)
		h = append(h, "a.bin"...)
		body := data[:size-100-len(h)]
		out := append(h, body...)
		return append(out, make([]byte, size-len(out))...)
	}
	cfbData := buildCFB([]cfbStream{{"WordDocument", data[:size-8192]}})
	return map[string][]byte{
		"random":     data,
		"pdf":        pdf,
		"zip-stored": zipStored(0),
		"zip-desc":   zipStored(8),
		"cfb":        cfbData,
	}
}

func BenchmarkInspect(b *testing.B) {
	for _, size := range []int{20 << 10, 100 << 20} {
		inputs := benchInputs(size)
		for _, kind := range []string{"random", "pdf", "zip-stored", "zip-desc", "cfb"} {
			data := inputs[kind]
			b.Run(fmt.Sprintf("%s/%s", sizeName(size), kind), func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				in := New()
				for b.Loop() {
					in.Reset()
					for p := data; len(p) > 0; {
						n := min(64<<10, len(p)) // mimeseal's sealed-part writes are ≥ 64 KiB
						in.Write(p[:n])
						p = p[n:]
					}
					in.Close()
				}
			})
		}
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKB", n/1000)
}

// FuzzInspect: an Inspector never panics, and its result does not depend on how the bytes are
// split into writes.
func FuzzInspect(f *testing.F) {
	f.Add([]byte("PK\x03\x04\x14\x00\x09\x00"), uint16(3))
	f.Add(buildRar4([]rarFile{{"a", []byte("x"), true}}, false), uint16(5))
	f.Add(buildRar5([]rarFile{{"a", []byte("x"), true}}, false), uint16(2))
	f.Add(buildCFB([]cfbStream{{"EncryptionInfo", []byte("x")}}), uint16(100))
	f.Add([]byte("%PDF-1.4\ntrailer<</Encrypt 5 0 R>>\n%%EOF"), uint16(7))
	f.Add(append(append([]byte(nil), sig7z...), make([]byte, 40)...), uint16(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16) {
		one := New()
		one.Write(data)
		one.Close()
		split := New()
		c := int(chunk%512) + 1
		for p := data; len(p) > 0; {
			n := min(c, len(p))
			split.Write(p[:n])
			p = p[n:]
		}
		split.Close()
		if one.Result() != split.Result() {
			t.Fatalf("one write %+v, writes of %d %+v", one.Result(), c, split.Result())
		}
	})
}
