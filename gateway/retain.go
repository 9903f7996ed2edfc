package gateway

import (
	"bytes"
	"fmt"
	"io"
)

// retainer keeps what the walker reads of a message (the normalized DATA), so that a message
// it finds malformed can be sealed whole from its first byte (mimeseal.SealWhole) instead of
// refused: in memory up to retainMemory, beyond that in a temporary spool file encrypted with
// the queue key (never in clear on disk), removed when the message is done. It is never
// fsynced: it is only read back by the session that wrote it.
type retainer struct {
	g    *Gateway
	m    *received
	mem  []byte
	file *spoolFile // the spill, once mem is full
	err  error
}

// retainMemory is how much of a message is retained in memory before the rest goes to an
// encrypted temporary file.
const retainMemory = 1 << 20

func (g *Gateway) newRetainer(m *received) *retainer {
	r := &retainer{g: g, m: m}
	if b, ok := g.rules.retainBufs.Get().(*[]byte); ok {
		r.mem = (*b)[:0]
	}
	return r
}

func (r *retainer) Write(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.file == nil && len(r.mem)+len(p) <= retainMemory {
		r.mem = append(r.mem, p...)
		return len(p), nil
	}
	if r.file == nil {
		f, err := r.g.spool.create(r.m.id+".whole.age", r.m.epoch)
		if err != nil {
			r.err = err
			return 0, err
		}
		r.file = f
		if _, err := f.Write(r.mem); err != nil {
			r.err = err
			return 0, err
		}
	}
	n, err := r.file.Write(p)
	if err != nil {
		r.err = err
	}
	return n, err
}

// replay returns everything written so far, from the first byte. The retainer takes no more
// writes after it.
func (r *retainer) replay() (io.ReadCloser, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.file == nil {
		return io.NopCloser(bytes.NewReader(r.mem)), nil
	}
	if err := r.file.w.Close(); err != nil { // the last encrypted chunk
		return nil, classifyIO(fmt.Errorf("failed to finish the retained message: %w", err))
	}
	return r.g.spool.openTemp(r.file)
}

// discard drops what was retained.
func (r *retainer) discard() {
	if r.mem != nil {
		b := r.mem[:0]
		r.g.rules.retainBufs.Put(&b)
	}
	r.mem = nil
	if r.file != nil {
		r.file.Abort()
		r.file = nil
	}
}
