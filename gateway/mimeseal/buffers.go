package mimeseal

import "sync"

// Buffers recycles the large buffers of Rewrite (about 450 KiB per call:
// input, decode batch, base64 stage) between calls, which otherwise are
// most of the garbage of sealing a small message. Safe for concurrent use;
// a nil *Buffers allocates afresh every time. PartWriters must not retain
// the slices passed to Write (io.Writer's rule): they are reused.
type Buffers struct {
	pool sync.Pool
}

// NewBuffers returns an empty pool.
func NewBuffers() *Buffers { return &Buffers{} }

type walkerBuffers struct {
	in, batch, stage []byte
}

func (b *Buffers) get(inSize int) *walkerBuffers {
	if b != nil {
		if wb, ok := b.pool.Get().(*walkerBuffers); ok && len(wb.in) >= inSize {
			return wb
		}
	}
	return &walkerBuffers{in: make([]byte, inSize), batch: make([]byte, 0, batchCap), stage: make([]byte, 0, b64Stage)}
}

func (b *Buffers) put(wb *walkerBuffers) {
	if b != nil {
		b.pool.Put(wb)
	}
}
