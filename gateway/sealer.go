package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/internal/chunkpipe"
	"github.com/sealgate/sealgate/transfer"
)

// sealer implements mimeseal.Sealer: each part to seal is hashed, encrypted
// to the transfer identities of every external recipient and stored, while
// the walker goes on reading. One goroutine hashes the plaintext and
// encrypts it, another hashes the ciphertext and feeds the object store.
type sealer struct {
	ctx        context.Context
	g          *Gateway
	transferID string
	nrcpt      int
	keys       []*crypto.TransferKey // one per external recipient, in order
	// registered holds, per external recipient, the public key the
	// recipient registered (package pubkey), or nil. file.age is encrypted
	// to transfer identities only; a registered key only protects the
	// recipient's key.age in place of a passphrase (no passphrase is
	// generated for that recipient), so that erasing key.age destroys the
	// recipient's access for them too.
	registered []*crypto.PublicKey

	mu    sync.Mutex
	files []*sealedFile
	keysW []string // object keys written (for discard)
}

type sealedFile struct {
	index        int
	name         string
	contentType  string
	reason       string
	scanned      bool // scanned for malware, nothing found
	key          string
	size         int64
	sha256       string
	cipherSize   int64
	cipherSHA256 string
}

func newSealer(ctx context.Context, g *Gateway, transferID string, nrcpt int) *sealer {
	return &sealer{ctx: ctx, g: g, transferID: transferID, nrcpt: nrcpt}
}

// Begin implements mimeseal.Sealer.
func (s *sealer) Begin(a mimeseal.Attachment) (mimeseal.PartWriter, error) {
	if s.keys == nil {
		for i := 0; i < s.nrcpt; i++ {
			var tk *crypto.TransferKey
			var err error
			if i < len(s.registered) && s.registered[i] != nil {
				tk, err = crypto.NewTransferKeyFor(s.registered[i])
			} else {
				tk, err = crypto.NewTransferKey(s.g.Rand)
			}
			if err != nil {
				return nil, temporary(err)
			}
			s.keys = append(s.keys, tk)
		}
	}
	f := &sealedFile{
		index:       a.Index,
		name:        mimeseal.SafeName(a),
		contentType: a.ContentType,
		reason:      a.Reason,
		key:         fmt.Sprintf("%s%s/%d.age", transfer.SealedPrefix, s.transferID, a.Index),
	}
	pw, pr := chunkpipe.New(pipeDepth, pipeChunk)
	p := &partSealer{s: s, f: f, in: pw, done: make(chan error, 1)}
	go func() {
		err := p.run(pr)
		if err != nil {
			pr.CloseWithError(err)
		}
		p.done <- err
	}()
	return p, nil
}

// settle records what the walk learnt about each sealed file by its end: the rule that
// decided it (a part decided on its content is named only then) and whether it was scanned.
func (s *sealer) settle(atts []mimeseal.Attachment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.files {
		if f.index < len(atts) {
			f.reason, f.scanned = atts[f.index].Reason, atts[f.index].Scanned
		}
	}
}

// discard deletes every object this sealer stored. A deletion that fails
// is retried by the scheduler (discards, RetryDiscards).
func (s *sealer) discard() {
	s.mu.Lock()
	keys := append([]string(nil), s.keysW...)
	s.mu.Unlock()
	var failed []string
	for _, k := range keys {
		if err := s.g.deleteObject(context.Background(), k); err != nil {
			s.g.Log.Warn("failed to delete the object of a refused message, will retry (it is encrypted to keys that were never stored)", "object", k, "error", err)
			failed = append(failed, k)
		}
	}
	if len(failed) > 0 {
		s.g.discards.add(failed, s.g.Now())
	}
}

type partSealer struct {
	s    *sealer
	f    *sealedFile
	in   *chunkpipe.Writer
	done chan error
	end  bool
}

func (p *partSealer) Write(b []byte) (int, error) { return p.in.Write(b) }

// Close ends the part and waits until its object is durable.
func (p *partSealer) Close() error {
	if p.end {
		return errors.New("gateway: part closed twice")
	}
	p.end = true
	p.in.Close()
	if err := <-p.done; err != nil {
		return err
	}
	p.s.mu.Lock()
	p.s.files = append(p.s.files, p.f)
	p.s.mu.Unlock()
	return nil
}

// Abort stops the part; nothing of it remains in storage.
func (p *partSealer) Abort(err error) {
	if p.end {
		return
	}
	p.end = true
	if err == nil {
		err = errors.New("part aborted")
	}
	p.in.CloseWithError(err)
	<-p.done
}

type countingHash struct {
	h hash.Hash
	n int64
}

func (c *countingHash) Write(b []byte) (int, error) {
	c.h.Write(b)
	c.n += int64(len(b))
	return len(b), nil
}

// run hashes and encrypts the plaintext from pr and streams the ciphertext
// to the store.
//
// The ciphertext is hashed as the store reads it, on the store's goroutine:
// the hash is then of exactly what the store consumed, and it is off this
// goroutine, which already hashes and encrypts the plaintext (SHA-256 costs
// more than age's ChaCha20-Poly1305), so the two hashes run on both cores.
func (p *partSealer) run(pr *chunkpipe.Reader) error {
	s := p.s
	cw, cr := chunkpipe.New(pipeDepth, pipeChunk)
	cipher := &hashingReader{r: cr, h: sha256.New()}
	putErr := make(chan error, 1)
	go func() {
		_, err := s.g.Store.Put(s.ctx, p.f.key, cipher)
		if err != nil {
			cr.CloseWithError(err)
		} else {
			cr.Close()
		}
		putErr <- err
	}()
	plain := &countingHash{h: sha256.New()}
	sent := &countingWriter{w: cw}
	ew, err := crypto.EncryptFile(sent, s.keys)
	if err == nil {
		_, err = pr.WriteTo(io.MultiWriter(plain, ew))
		if err == nil {
			err = ew.Close()
		}
	}
	if err != nil {
		cw.CloseWithError(err)
		if perr := <-putErr; perr != nil && !errors.Is(perr, err) {
			err = perr // the store's error explains (e.g. unavailable)
		}
		return err
	}
	cw.Close()
	if err := <-putErr; err != nil {
		return fmt.Errorf("failed to store sealed file: %w", err)
	}
	s.mu.Lock()
	s.keysW = append(s.keysW, p.f.key)
	s.mu.Unlock()
	if cipher.n != sent.n {
		// A store must read to EOF; one that did not stored a prefix.
		return fmt.Errorf("failed to store sealed file: the store read %d of %d bytes", cipher.n, sent.n)
	}
	p.f.size = plain.n
	p.f.sha256 = hex.EncodeToString(plain.h.Sum(nil))
	p.f.cipherSize = cipher.n
	p.f.cipherSHA256 = hex.EncodeToString(cipher.h.Sum(nil))
	return nil
}

// hashingReader hashes and counts what is read through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (h *hashingReader) Read(b []byte) (int, error) {
	n, err := h.r.Read(b)
	h.h.Write(b[:n])
	h.n += int64(n)
	return n, err
}

// countingWriter counts what is written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
