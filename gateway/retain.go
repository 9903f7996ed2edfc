package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// retainer keeps what the walker reads of a message (the normalized DATA), in memory, so that
// a message it finds malformed can be sealed whole from its first byte (mimeseal.SealWhole)
// instead of refused — up to limits.max_whole_seal. A larger message is not retained (nothing
// more is copied once it is over): if its structure turns out broken, it is refused as over
// that limit (errTooLargeToSealWhole). Keeping a large message on disk instead, encrypted,
// would cost every large message a second encryption and write of all its bytes (measured:
// +60 % to +130 % time to 250 for a 64 MiB BDAT message) for the rare broken one.
type retainer struct {
	g      *Gateway
	chunks []*[retainChunk]byte // full chunks, then the one being filled
	last   int                  // bytes used in the last chunk
	n      int                  // bytes retained
	max    int
	over   bool // the message is larger than max: nothing is retained
}

// errTooLargeToSealWhole: the message cannot be parsed and is larger than limits.max_whole_seal.
var errTooLargeToSealWhole = errors.New("the message cannot be parsed and is too large to be sealed whole")

// retainChunk is the unit of retained memory, recycled through a pool: a large message is
// retained without growing (and copying, and faulting in) one contiguous buffer.
const retainChunk = 64 << 10

func (g *Gateway) newRetainer() *retainer {
	return &retainer{g: g, max: int(g.Config.Limits.MaxWholeSeal), last: retainChunk}
}

func (r *retainer) Write(p []byte) (int, error) {
	n := len(p)
	if r.over {
		return n, nil
	}
	if r.n+len(p) > r.max {
		r.release()
		r.over = true
		return n, nil
	}
	r.n += n
	for len(p) > 0 {
		if r.last == retainChunk {
			c, ok := r.g.rules.retainBufs.Get().(*[retainChunk]byte)
			if !ok {
				c = new([retainChunk]byte)
			}
			r.chunks, r.last = append(r.chunks, c), 0
		}
		k := copy(r.chunks[len(r.chunks)-1][r.last:], p)
		r.last += k
		p = p[k:]
	}
	return n, nil
}

// replay returns everything written, from the first byte.
func (r *retainer) replay() (io.Reader, error) {
	if r.over {
		return nil, fmt.Errorf("%w (limit %d bytes)", errTooLargeToSealWhole, r.max)
	}
	rs := make([]io.Reader, len(r.chunks))
	for i, c := range r.chunks {
		end := retainChunk
		if i == len(r.chunks)-1 {
			end = r.last
		}
		rs[i] = bytes.NewReader(c[:end])
	}
	return io.MultiReader(rs...), nil
}

// release gives the memory back (after the message is done with).
func (r *retainer) release() {
	for _, c := range r.chunks {
		r.g.rules.retainBufs.Put(c)
	}
	r.chunks, r.last, r.n = nil, retainChunk, 0
}
