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
	"time"

	"filippo.io/age"

	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/internal/chunkpipe"
)

// sealer implements mimeseal.Sealer: each part to seal is hashed, encrypted
// to the transfer identities of every external recipient and stored, while
// the walker goes on reading. One goroutine hashes and encrypts, another
// feeds the object store.
type sealer struct {
	ctx        context.Context
	g          *Gateway
	transferID string
	nrcpt      int
	keys       []*crypto.TransferKey // one per external recipient, in order
	recipients []age.Recipient

	mu    sync.Mutex
	files []*sealedFile
	keysW []string // object keys written (for discard)
}

type sealedFile struct {
	index        int
	name         string
	contentType  string
	reason       string
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
			tk, err := crypto.NewTransferKey(s.g.Rand)
			if err != nil {
				return nil, temporary(err)
			}
			s.keys = append(s.keys, tk)
			s.recipients = append(s.recipients, tk.Recipient())
		}
	}
	f := &sealedFile{
		index:       a.Index,
		name:        mimeseal.SafeName(a),
		contentType: a.ContentType,
		reason:      a.Reason,
		key:         fmt.Sprintf("objects/%s/%d.age", s.transferID, a.Index),
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

// discard deletes every object this sealer stored.
func (s *sealer) discard() {
	s.mu.Lock()
	keys := append([]string(nil), s.keysW...)
	s.mu.Unlock()
	for _, k := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := s.g.Store.Delete(ctx, k); err != nil {
			s.g.Log.Warn("failed to delete the object of a refused message (it is encrypted to keys that were never stored)", "object", k, "error", err)
		}
		cancel()
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
func (p *partSealer) run(pr *chunkpipe.Reader) error {
	s := p.s
	cw, cr := chunkpipe.New(pipeDepth, pipeChunk)
	putErr := make(chan error, 1)
	go func() {
		_, err := s.g.Store.Put(s.ctx, p.f.key, cr)
		if err != nil {
			cr.CloseWithError(err)
		} else {
			cr.Close()
		}
		putErr <- err
	}()
	plain := &countingHash{h: sha256.New()}
	cipher := &countingHash{h: sha256.New()}
	ew, err := crypto.EncryptFile(io.MultiWriter(cipher, cw), s.recipients)
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
	p.f.size = plain.n
	p.f.sha256 = hex.EncodeToString(plain.h.Sum(nil))
	p.f.cipherSize = cipher.n
	p.f.cipherSHA256 = hex.EncodeToString(cipher.h.Sum(nil))
	return nil
}
