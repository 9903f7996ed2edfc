// Package chunkpipe is a buffered in-memory pipe that lets two stages of a
// streaming pipeline run on different cores: the writer fills fixed-size
// chunks and hands them over a bounded channel, so it can run ahead of the
// reader by at most depth chunks. Memory is bounded by (depth+2)·chunkSize.
//
// io.Pipe hands over every Write synchronously, which makes the producer and
// consumer take turns instead of running side by side.
package chunkpipe

import (
	"errors"
	"io"
	"sync"
)

type shared struct {
	ch      chan []byte
	free    chan []byte
	done    chan struct{} // closed when the reader gives up
	once    sync.Once
	mu      sync.Mutex
	rerr    error // error the reader closed with
	werr    error // error the writer closed with (io.EOF for a clean close)
	closing sync.Once
}

// Writer is the write half. It is not safe for concurrent use.
type Writer struct {
	s    *shared
	cur  []byte
	made int // chunks allocated so far (at most depth+2)
	size int
}

// firstChunk caps the size of a pipe's first chunk: chunks are allocated
// as the writer needs them, so a small message (the usual case) costs one
// small buffer, not depth+2 large zeroed ones.
const firstChunk = 32 << 10

// Reader is the read half. It is not safe for concurrent use.
type Reader struct {
	s   *shared
	cur []byte
	off int
	buf []byte
}

// New returns a pipe of depth chunks of chunkSize bytes.
func New(depth, chunkSize int) (*Writer, *Reader) {
	if depth < 1 {
		depth = 1
	}
	s := &shared{
		ch:   make(chan []byte, depth),
		free: make(chan []byte, depth+2),
		done: make(chan struct{}),
	}
	return &Writer{s: s, size: chunkSize}, &Reader{s: s}
}

// ErrClosedPipe is returned by Write after the reader closed without error.
var ErrClosedPipe = errors.New("chunkpipe: read side closed")

// Write copies p into chunks; it blocks while depth chunks are waiting.
func (w *Writer) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if w.cur == nil {
			if err := w.next(); err != nil {
				return n, err
			}
		}
		k := copy(w.cur[len(w.cur):cap(w.cur)], p)
		w.cur = w.cur[:len(w.cur)+k]
		p = p[k:]
		n += k
		if len(w.cur) == cap(w.cur) {
			if err := w.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// ReadFrom reads r straight into the pipe's chunks, saving the copy through
// io.Copy's buffer, until r returns io.EOF (which it does not pass on: the
// pipe stays open, the caller closes it). Like Write, it hands a chunk over
// when it is full.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if w.cur == nil {
			if err := w.next(); err != nil {
				return total, err
			}
		}
		n, err := r.Read(w.cur[len(w.cur):cap(w.cur)])
		w.cur = w.cur[:len(w.cur)+n]
		total += int64(n)
		if len(w.cur) == cap(w.cur) {
			if ferr := w.flush(); ferr != nil {
				return total, ferr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// next takes a free chunk, allocates one while fewer than depth+2 exist,
// or waits for the reader to give one back.
func (w *Writer) next() error {
	select {
	case b := <-w.s.free:
		w.cur = b[:0]
		return nil
	default:
	}
	if w.made < cap(w.s.free) {
		size := w.size
		if w.made == 0 {
			size = min(size, firstChunk)
		}
		w.made++
		w.cur = make([]byte, 0, size)
		return nil
	}
	select {
	case b := <-w.s.free:
		w.cur = b[:0]
		return nil
	case <-w.s.done:
		return w.s.readErr()
	}
}

func (w *Writer) flush() error {
	if len(w.cur) == 0 {
		return nil
	}
	select {
	case w.s.ch <- w.cur:
		w.cur = nil
		return nil
	case <-w.s.done:
		return w.s.readErr()
	}
}

// Flush hands what has been written of the current chunk to the reader
// without waiting for the chunk to fill (before CloseWithError(err), which
// drops it, when the reader should still get those bytes).
func (w *Writer) Flush() error { return w.flush() }

// Close flushes and signals EOF to the reader.
func (w *Writer) Close() error { return w.CloseWithError(nil) }

// CloseWithError flushes what was written and makes the reader return err
// (io.EOF when err is nil) once it has read everything before it.
func (w *Writer) CloseWithError(err error) error {
	var ferr error
	if err == nil {
		ferr = w.flush()
		err = io.EOF
	}
	w.s.closing.Do(func() {
		w.s.mu.Lock()
		w.s.werr = err
		w.s.mu.Unlock()
		close(w.s.ch)
	})
	return ferr
}

func (s *shared) readErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rerr != nil {
		return s.rerr
	}
	return ErrClosedPipe
}

// next recycles the current chunk and waits for the next one; at the end it
// returns the writer's error (io.EOF after Close).
func (r *Reader) next() error {
	if r.cur != nil {
		r.recycle()
	}
	b, ok := <-r.s.ch
	if !ok {
		r.s.mu.Lock()
		defer r.s.mu.Unlock()
		return r.s.werr
	}
	r.cur, r.off = b, 0
	return nil
}

// Read reads from the current chunk, waiting for the next one as needed.
func (r *Reader) Read(p []byte) (int, error) {
	for r.off >= len(r.cur) {
		if err := r.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.cur[r.off:])
	r.off += n
	return n, nil
}

// WriteTo hands whole chunks to w, saving a copy.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if r.off < len(r.cur) {
			n, err := w.Write(r.cur[r.off:])
			total += int64(n)
			r.off += n
			if err != nil {
				return total, err
			}
		}
		if err := r.next(); err != nil {
			if err == io.EOF {
				err = nil
			}
			return total, err
		}
	}
}

func (r *Reader) recycle() {
	select {
	case r.s.free <- r.cur[:0]:
	default:
	}
	r.cur, r.off = nil, 0
}

// CloseWithError tells the writer to stop: its pending and later Writes
// return err (ErrClosedPipe when nil).
func (r *Reader) CloseWithError(err error) error {
	r.s.once.Do(func() {
		r.s.mu.Lock()
		r.s.rerr = err
		r.s.mu.Unlock()
		close(r.s.done)
	})
	return nil
}

// Close is CloseWithError(nil).
func (r *Reader) Close() error { return r.CloseWithError(nil) }
