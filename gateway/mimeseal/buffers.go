package mimeseal

import (
	"bufio"
	"sync"

	"github.com/sealgate/sealgate/inspect"
)

// Buffers recycles the large buffers of Rewrite (about 520 KiB per call:
// input, decode batch, base64 stage, skeleton record; and the kept text part
// being inspected, up to Limits.MaxTextBytes) between calls, which otherwise are
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
	skel             []byte // the skeleton's raw record
	held             []byte // grows as needed
	hdr              []byte // the raw header being read; grows as needed
	qpws, qpeqws     []byte
	hbr              *bufio.Reader // header parser's reader
	ins              inspector     // reset for each text part
	facts            *inspect.Inspector
	heldDec          []byte // the decoded content of a part whose keeping depends on it; grows as needed
	heldRaw          []byte // its raw body
}

func (b *Buffers) get(inSize int) *walkerBuffers {
	if b != nil {
		if wb, ok := b.pool.Get().(*walkerBuffers); ok && len(wb.in) >= inSize {
			return wb
		}
	}
	return &walkerBuffers{
		in: make([]byte, inSize), batch: make([]byte, 0, batchCap), stage: make([]byte, 0, b64Stage),
		skel: make([]byte, 5, 5+maxRawRecord), qpws: make([]byte, 0, qpMaxWS), qpeqws: make([]byte, 0, qpMaxWS),
		hbr: bufio.NewReaderSize(nil, 4096),
	}
}

func (b *Buffers) put(wb *walkerBuffers) {
	if b != nil {
		b.pool.Put(wb)
	}
}
