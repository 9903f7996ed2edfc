package portal

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"runtime"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// TestHoldBackKeepsTail checks both ways into holdBack (Write, as for a
// chunk pipe's WriteTo, and ReadFrom, as io.Copy uses for the decrypting
// reader): before flush, at least the last keep bytes are held and the rest
// went out in order (all but one buffer of it, through ReadFrom); after
// flush, all of it.
func TestHoldBackKeepsTail(t *testing.T) {
	const keep = 64 << 10
	for _, size := range []int{0, 1, keep - 1, keep, keep + 1, holdBackChunk, holdBackChunk + keep, 3*holdBackChunk + 7, 1<<20 + 12345} {
		data := make([]byte, size)
		rand.Read(data)
		for _, way := range []string{"ReadFrom", "Write", "ReadFrom one byte at a time", "Write then ReadFrom"} {
			var out bytes.Buffer
			hb := &holdBack{w: &out, keep: keep}
			var err error
			switch way {
			case "ReadFrom":
				_, err = hb.ReadFrom(bytes.NewReader(data))
			case "Write":
				for p := data; len(p) > 0; p = p[min(len(p), 32<<10):] {
					_, err = hb.Write(p[:min(len(p), 32<<10)])
				}
			case "ReadFrom one byte at a time":
				_, err = hb.ReadFrom(iotest.OneByteReader(bytes.NewReader(data)))
			case "Write then ReadFrom":
				k := min(size, 1000)
				hb.Write(data[:k])
				_, err = hb.ReadFrom(bytes.NewReader(data[k:]))
			}
			if err != nil {
				t.Fatalf("%d bytes, %s: %v", size, way, err)
			}
			// Write holds exactly the last keep bytes; ReadFrom whole
			// buffers, so at least keep and less than keep + one buffer.
			most := max(0, size-keep)
			least := most
			if way != "Write" {
				least = max(0, size-keep-holdBackChunk+1)
			}
			if n := out.Len(); n < least || n > most || !bytes.Equal(out.Bytes(), data[:n]) {
				t.Fatalf("%d bytes, %s: %d bytes out before flush, want the first %d to %d", size, way, n, least, most)
			}
			if hb.started != (out.Len() > 0) {
				t.Fatalf("%d bytes, %s: started = %v with %d bytes out", size, way, hb.started, out.Len())
			}
			if err := hb.flush(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("%d bytes, %s: %d bytes out after flush, want all %d", size, way, out.Len(), size)
			}
		}
	}
}

// TestHoldBackReadError: a read error stops ReadFrom with that error and
// the tail stays held.
func TestHoldBackReadError(t *testing.T) {
	boom := errors.New("storage failed")
	data := make([]byte, 500<<10)
	var out bytes.Buffer
	hb := &holdBack{w: &out, keep: 64 << 10}
	_, err := hb.ReadFrom(io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if out.Len() > len(data)-64<<10 {
		t.Fatalf("%d bytes out, more than all but the held tail", out.Len())
	}
}

// TestHashAhead: the reader returns the data unchanged, the hash covers
// all of it once the reader is at its end and stop returned, and stop
// ends a download that stopped part-way.
func TestHashAhead(t *testing.T) {
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	h := sha256.New()
	src, stop := hashAhead(io.NopCloser(bytes.NewReader(data)), h)
	got, err := io.ReadAll(src)
	stop()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want %d", len(got), err, len(data))
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("hash does not cover the data")
	}

	src, stop = hashAhead(io.NopCloser(bytes.NewReader(data)), sha256.New())
	if _, err := io.ReadFull(src, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	stop() // returns although the goroutine had more to read
	stop()
}

// failAfter accepts n bytes, then fails every write with err (a client
// that went away).
type failAfter struct {
	n   int
	err error
	got bytes.Buffer
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.got.Len()+len(p) > f.n {
		k := f.n - f.got.Len()
		f.got.Write(p[:k])
		return k, f.err
	}
	return f.got.Write(p)
}

// TestWriteBehind: every byte produce writes reaches holdBack, in order,
// with the tail held for flush; produce's own error is returned with the
// tail still held; a write error of the connection is returned and stops
// produce's later writes.
func TestWriteBehind(t *testing.T) {
	data := make([]byte, 5<<20+3)
	rand.Read(data)
	produce := func(dst io.Writer) error {
		_, err := io.Copy(dst, bytes.NewReader(data))
		return err
	}

	var out bytes.Buffer
	hb := &holdBack{w: &out, keep: 64 << 10}
	if err := writeBehind(hb, produce); err != nil {
		t.Fatal(err)
	}
	if out.Len() > len(data)-64<<10 || !bytes.Equal(out.Bytes(), data[:out.Len()]) {
		t.Fatalf("%d bytes out before flush", out.Len())
	}
	if err := hb.flush(); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("after flush: %d bytes out (%v), want all %d", out.Len(), err, len(data))
	}

	boom := errors.New("decryption failed")
	out.Reset()
	hb = &holdBack{w: &out, keep: 64 << 10}
	err := writeBehind(hb, func(dst io.Writer) error {
		if _, err := dst.Write(data[:1<<20]); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if out.Len() > 1<<20-64<<10 {
		t.Fatalf("%d bytes out after a failure at 1 MiB: the held tail went out", out.Len())
	}

	gone := errors.New("connection reset by peer")
	client := &failAfter{n: 300 << 10, err: gone}
	hb = &holdBack{w: client, keep: 64 << 10}
	var produced int64
	err = writeBehind(hb, func(dst io.Writer) error {
		n, err := io.Copy(dst, bytes.NewReader(data))
		produced = n
		return err
	})
	if !errors.Is(err, gone) {
		t.Fatalf("err = %v, want the connection's %v", err, gone)
	}
	if produced == int64(len(data)) {
		t.Fatal("produce wrote everything although the connection had failed")
	}
	if !bytes.Equal(client.got.Bytes(), data[:client.got.Len()]) {
		t.Fatal("the connection got bytes out of order")
	}
}

// recordingWriter notes whether it was written to after a point.
type recordingWriter struct {
	mu    sync.Mutex
	after bool // set by mark: any later write is recorded
	late  int
}

func (r *recordingWriter) Write(p []byte) (int, error) {
	time.Sleep(time.Millisecond) // a slow connection: the pipe fills
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.after {
		r.late++
	}
	return len(p), nil
}

func (r *recordingWriter) mark() {
	r.mu.Lock()
	r.after = true
	r.mu.Unlock()
}

// TestWriteBehindPanic: a panic in produce goes on up only once the writer
// goroutine has stopped: nothing is written to the response after it, and
// the goroutine is gone.
func TestWriteBehindPanic(t *testing.T) {
	before := runtime.NumGoroutine()
	w := &recordingWriter{}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the panic was swallowed")
			}
			w.mark()
		}()
		hb := &holdBack{w: w, keep: 64 << 10}
		writeBehind(hb, func(dst io.Writer) error {
			dst.Write(make([]byte, 2<<20))
			panic("a bug in the transform")
		})
	}()
	time.Sleep(100 * time.Millisecond)
	w.mu.Lock()
	late := w.late
	w.mu.Unlock()
	if late > 0 || runtime.NumGoroutine() > before {
		t.Fatalf("after the panic: %d writes to the response, goroutines %d -> %d", late, before, runtime.NumGoroutine())
	}
}

// TestWriteBehindFailureSendsWhatWasProduced: when produce fails, what it
// wrote before still reaches holdBack, as it did when produce wrote to
// holdBack itself: all but the held tail is released.
func TestWriteBehindFailureSendsWhatWasProduced(t *testing.T) {
	data := make([]byte, 1<<20+100<<10)
	rand.Read(data)
	boom := errors.New("storage failed")
	var out bytes.Buffer
	hb := &holdBack{w: &out, keep: 64 << 10}
	err := writeBehind(hb, func(dst io.Writer) error { dst.Write(data); return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if out.Len()+len(hb.buf) != len(data) || out.Len() > len(data)-64<<10 || !bytes.Equal(out.Bytes(), data[:out.Len()]) {
		t.Fatalf("%d bytes released and %d held of %d written before the failure; want all of them, the last 64 KiB held", out.Len(), len(hb.buf), len(data))
	}
}

// TestSmallResponseAllocations: a 1 KiB response through writeBehind and
// holdBack allocates well under 100 KiB (it was 418 KiB when holdBack
// made its three 128 KiB buffers up front).
func TestSmallResponseAllocations(t *testing.T) {
	data := make([]byte, 1024)
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	hb := &holdBack{w: io.Discard, keep: 64 << 10}
	if err := writeBehind(hb, func(dst io.Writer) error { _, err := io.Copy(dst, bytes.NewReader(data)); return err }); err != nil {
		t.Fatal(err)
	}
	hb.flush()
	runtime.ReadMemStats(&b)
	if n := b.TotalAlloc - a.TotalAlloc; n > 100<<10 {
		t.Fatalf("a 1 KiB response allocated %d KiB", n>>10)
	}
}
